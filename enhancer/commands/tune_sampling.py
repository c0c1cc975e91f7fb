"""Choose an enhancer's default sampling (steps, gamma, eta, t_start, noise, residual scale)
on validation clips.

    python tools/tune_sampling.py enhancer/weights/x264_temporal_tiny.pt \\
        --val ../shared/data/video/mdn/friday.mp4 ../shared/data/video/sam2/04_coffee.mp4 \\
        --quality 26 32 36 --frames 6 --crop 512x384 --write

Each clip is coded once per --quality; every candidate (--steps x --gammas x --t-starts
x --residual-scales, shared start noise) enhances the same decodes. The chosen one keeps
LPIPS and DISTS below the decode, the PSNR drop within --max-psnr-drop and temporal
consistency within --max-temporal-ratio of the decode on every clip and rate, with the
lowest mean LPIPS (see enhancer/eval/tuning.py). --write stores it in the checkpoint
("sampling"), where every tool reads its defaults from. The sweep goes to --out (JSON) and
a table is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from enhancer.cli import parse_size, run_cli
from enhancer.codecs import load_codec
from enhancer.eval.sequences import find_sequences
from enhancer.eval.sources import FrameSource
from enhancer.eval.tuning import (
    DEFAULT_GAMMAS,
    DEFAULT_RESIDUAL_SCALES,
    DEFAULT_T_STARTS,
    Sweep,
    candidate_grid,
    code_clip,
    results_table,
    write_sweep,
)
from enhancer.pipeline.checkpoint import load_enhancer, resolve_enhancer_path, store_sampling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="enhancer checkpoint or bundled model name")
    parser.add_argument("--val", nargs="+", required=True, help="validation clips (never the test set)")
    parser.add_argument("--quality", type=int, nargs="+", default=None,
                        help="rate points (default: the checkpoint's; x264 CRFs for x264)")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip")
    parser.add_argument("--crop", type=parse_size, default=None, help="centre crop WxH")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--gammas", type=float, nargs="+", default=list(DEFAULT_GAMMAS))
    parser.add_argument("--t-starts", type=float, nargs="+", default=list(DEFAULT_T_STARTS))
    parser.add_argument("--residual-scales", type=float, nargs="+",
                        default=list(DEFAULT_RESIDUAL_SCALES),
                        help="output blends s in [0, 1] to try (enhanced = decoded + s * "
                             "residual), e.g. 1 0.75 0.5 (default: 1 only)")
    parser.add_argument("--max-psnr-drop", type=float, default=1.0, help="dB")
    parser.add_argument("--max-temporal-ratio", type=float, default=1.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="sweep JSON (default: tune_<name>.json)")
    parser.add_argument("--write", action="store_true", help="store the choice in the checkpoint")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error(f"--frames must be >= 2 (temporal consistency needs two), got {args.frames}")

    path = resolve_enhancer_path(args.checkpoint)
    enhancer = load_enhancer(path, device=args.device)
    qualities = args.quality or [enhancer.codec.quality]
    codec = enhancer.codec
    if codec.learned and qualities != [codec.quality]:
        raise ValueError(f"{path.name} holds {codec.name} q{codec.quality} weights only; tune it "
                         f"at --quality {codec.quality}")
    candidates = candidate_grid(args.steps, args.gammas, args.t_starts, args.residual_scales)

    clips = []
    for value in args.val:
        (sequence,) = find_sequences(value) if Path(value).is_file() else (None,)
        if sequence is None:
            raise FileNotFoundError(f"validation clip {value!r} is not a file")
        with FrameSource(sequence, args.crop) as source:
            frames = [f.to(args.device) for f in source.frames(args.frames)]
        for quality in qualities:  # a conventional codec at another CRF is another setting
            coder = codec if quality == codec.quality else load_codec(codec.name, quality,
                                                                      device=args.device)
            clips.append(code_clip(coder, f"{sequence.name} q{quality}", frames))

    sweep = Sweep(enhancer, clips, args.device, args.seed, args.max_psnr_drop,
                  args.max_temporal_ratio)
    chosen, results = sweep.tune(candidates)
    print(results_table(results, chosen))
    # Which start noise flickers less: the chosen settings with the other start noise.
    other = "fresh" if chosen.sampling.noise == "shared" else "shared"
    alternative = sweep.evaluate(chosen.sampling.override(noise=other))
    print("\n" + results_table([chosen, alternative], chosen))

    settings = {"checkpoint": str(path), "val": args.val, "qualities": qualities,
                "frames": args.frames, "crop": list(args.crop) if args.crop else None,
                "grid": {"steps": args.steps, "gammas": args.gammas, "t_starts": args.t_starts,
                         "residual_scales": args.residual_scales},
                "max_psnr_drop": args.max_psnr_drop,
                "max_temporal_ratio": args.max_temporal_ratio, "seed": args.seed}
    out = Path(args.out or f"tune_{path.stem}.json")
    write_sweep(out, chosen, results + [alternative], settings)
    verdict = "meets every limit" if chosen.admissible else "MISSES some limits (least violating)"
    print(f"\nchosen: {chosen.sampling.label()} ({verdict}); sweep written to {out}")
    if args.write:
        provenance = settings | {"meets_all_limits": chosen.admissible,
                                 "lpips_ratio": chosen.lpips_ratio}
        store_sampling(path, chosen.sampling, provenance)
        print(f"stored in {path} as its default sampling")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
