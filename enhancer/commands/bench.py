"""Seconds per frame and peak memory: decode alone vs decode + K-step enhancement.

    python tools/bench.py                                  # tiny preset, 480p and 1080p
    python tools/bench.py --checkpoints x264_temporal_tiny # a model at its default steps
    python tools/bench.py --presets tiny cdc --json        # one JSON object per line
    python tools/bench.py --bf16                           # bfloat16 denoiser (AVX512-BF16 CPUs)
    python tools/bench.py --device cuda --fp16             # GPU, half precision
    python tools/bench.py --codec dcvc-rt --quality 21     # DCVC-RT's decode as the baseline

Ratios are to the --codec decode of the same frame (a P-frame for video codecs), measured
in the same process.
Preset weights are random (timing only); checkpoints run at their own sampling steps.
"""

from __future__ import annotations

import argparse
import json
import sys

from enhancer.cli import ArgumentParser, run_cli
from enhancer.pipeline.bench import RESOLUTIONS, benchmark, row_dict


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["tiny"],
                        help="U-Net presets with random weights (cdc is slow on a CPU)")
    parser.add_argument("--checkpoints", nargs="*", default=[],
                        help="enhancer checkpoints or bundled names, at their default steps")
    parser.add_argument("--resolutions", nargs="+", default=["480p", "1080p"], choices=list(RESOLUTIONS))
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps (default: 10 for presets, a checkpoint's own)")
    parser.add_argument("--codec", default="ssf")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="float16 denoiser (CUDA)")
    precision.add_argument("--bf16", action="store_true",
                           help="bfloat16 denoiser (CPUs with AVX512-BF16/AMX, recent GPUs)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--signal", action="store_true",
                        help="also time reading and applying a signalled strength map per frame, "
                        "and the hold (sampling.hold)")
    args = parser.parse_args(argv)
    for name, value in (("--repeats", args.repeats), ("--steps", args.steps)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1, got {value}")  # /0 in the timing

    if not args.json:
        print(f"{'preset':18} {'res':6} {'steps':>5} {'tiled':>5} {'decode s':>9} "
              f"{'dec+enh s':>10} {'ratio':>7} {'peak MB':>8}  device, baseline decode")

    def report(row) -> None:
        if args.json:
            print(json.dumps(row_dict(row)), flush=True)
        else:
            print(f"{row.preset:18} {row.resolution:6} {row.steps:5d} {row.tiled!s:>5} "
                  f"{row.decode_s:9.3f} {row.enhance_s:10.2f} {row.ratio:7.1f} "
                  f"{row.peak_mem_mb:8.0f}  {row.device} {row.dtype}, {row.codec}"
                  + (f"; strength map {row.map_s * 1000:.1f} ms = {100 * row.map_share:.2f} % "
                     f"of the enhancement, hold {row.hold_s * 1000:.1f} ms = "
                     f"{100 * row.hold_share:.2f} %" if row.map_s is not None else ""),
                  flush=True)

    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    benchmark(tuple(args.presets), tuple(args.resolutions), args.steps, args.codec, args.quality,
              args.device, precision, args.repeats, checkpoints=tuple(args.checkpoints),
              report=report, signal=args.signal)
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
