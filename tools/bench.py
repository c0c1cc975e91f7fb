"""Seconds per frame and peak memory: decode alone vs decode + K-step enhancement.

    python tools/bench.py                                  # tiny and cdc, 480p and 1080p (tiled)
    python tools/bench.py --presets tiny --json            # one JSON object per line
    python tools/bench.py --device cuda --fp16             # GPU, half precision

Ratios are to the decode, measured in the same process. Weights are random: timing only.
"""

from __future__ import annotations

import argparse
import json
import sys

from enhancer.cli import run_cli
from enhancer.pipeline.bench import RESOLUTIONS, benchmark, row_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "cdc"])
    parser.add_argument("--resolutions", nargs="+", default=["480p", "1080p"], choices=list(RESOLUTIONS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--codec", default="ssf")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    if not args.json:
        print(f"{'preset':6} {'res':6} {'steps':>5} {'tiled':>5} {'decode s':>9} "
              f"{'dec+enh s':>10} {'ratio':>7} {'peak MB':>8}  device")

    def report(row) -> None:
        if args.json:
            print(json.dumps(row_dict(row)), flush=True)
        else:
            print(f"{row.preset:6} {row.resolution:6} {row.steps:5d} {row.tiled!s:>5} "
                  f"{row.decode_s:9.3f} {row.enhance_s:10.2f} {row.ratio:7.1f} "
                  f"{row.peak_mem_mb:8.0f}  {row.device} {row.dtype}", flush=True)

    benchmark(tuple(args.presets), tuple(args.resolutions), args.steps, args.codec, args.quality,
              args.device, args.fp16, args.repeats, report=report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
