"""Choose an enhancer's default sampling (steps, gamma, eta, t_start, noise, residual scale)
on validation clips.

    enhancer-tune --enhancer enhancer/weights/x264_temporal_tiny.pt \\
        --val ../shared/data/video/mdn/friday.mp4 ../shared/data/video/sam2/04_coffee.mp4 \\
        --quality 26 32 36 --frames 6 --crop 512x384 --out tune_x264 --write

Each clip is coded once per --quality; every candidate (--steps x --gamma x --t-start
x --residual-scale x --hold, shared start noise) enhances the same decodes. The chosen one keeps
LPIPS and DISTS below the decode, the PSNR drop within --max-psnr-drop and temporal
consistency within --max-temporal-ratio of the decode on every clip and rate, with the
lowest mean LPIPS (see enhancer/eval/tuning.py). --write stores it in the checkpoint
("sampling"), where every tool reads its defaults from; a bundled model's file is only
rewritten with --force, after a backup into --out. The sweep goes to --out/sweep.json and a
table is printed. Clips of the held-out test set are refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from enhancer.cli import ArgumentParser, parse_size, ranged_float, run_cli
from enhancer.codecs import load_codec
from enhancer.eval.sequences import find_sequences
from enhancer.eval.sources import FrameSource
from enhancer.eval.specs import resolve_enhancer_name
from enhancer.eval.tuning import (
    DEFAULT_GAMMAS,
    DEFAULT_HOLDS,
    DEFAULT_RESIDUAL_SCALES,
    DEFAULT_T_STARTS,
    Sweep,
    candidate_grid,
    check_validation_clip,
    code_clip,
    results_table,
    write_sweep,
)
from enhancer.pipeline.checkpoint import BUNDLED_DIR, load_enhancer, store_sampling

SWEEP_NAME = "sweep.json"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enhancer", required=True,
                        help="enhancer checkpoint or bundled model name (x264_temporal_tiny)")
    parser.add_argument("--val", nargs="+", required=True,
                        help="validation clips (the held-out test set is refused)")
    parser.add_argument("--quality", type=int, nargs="+", default=None,
                        help="rate points (default: the checkpoint's; x264 CRFs for x264)")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip")
    parser.add_argument("--crop", type=parse_size, default=None, help="centre crop WxH")
    grid = parser.add_argument_group("the grid of candidates (every combination is tried)")
    grid.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    grid.add_argument("--gamma", type=ranged_float("--gamma", 0.0, 1.5), nargs="+",
                      default=list(DEFAULT_GAMMAS), help="start-noise scales in [0, 1.5]")
    grid.add_argument("--t-start", type=ranged_float("--t-start", 0.0, 1.0, low_open=True),
                      nargs="+", default=list(DEFAULT_T_STARTS), help="start times in (0, 1]")
    grid.add_argument("--residual-scale", type=ranged_float("--residual-scale", 0.0, 1.0),
                      nargs="+", default=list(DEFAULT_RESIDUAL_SCALES),
                      help="output blends s in [0, 1] to try (enhanced = decoded + s * "
                           "residual), e.g. 1 0.75 0.5 (default: 1 only)")
    grid.add_argument("--hold", type=ranged_float("--hold", 0.0, 1.0), nargs="+",
                      default=list(DEFAULT_HOLDS),
                      help="holds to try (the previous residual kept where the decode "
                           "changed less than this per pixel), e.g. 0 0.01 (default: 0 only)")
    parser.add_argument("--max-psnr-drop", type=ranged_float("--max-psnr-drop", 0.0, 100.0),
                        default=1.0, help="dB")
    parser.add_argument("--max-temporal-ratio",
                        type=ranged_float("--max-temporal-ratio", 0.0, 100.0), default=1.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None,
                        help=f"output folder for {SWEEP_NAME} (default: tune_<name>)")
    parser.add_argument("--write", action="store_true", help="store the choice in the checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="with --write: also rewrite a bundled model's file (a backup of "
                             "it goes to --out first)")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error(f"--frames must be >= 2 (temporal consistency needs two), got {args.frames}")

    path = resolve_enhancer_name(args.enhancer)
    out_dir = Path(args.out or f"tune_{path.stem}")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; --out is a folder (the sweep goes "
                                 f"to {SWEEP_NAME} inside it)")
    bundled = path.resolve().parent == BUNDLED_DIR.resolve()
    if args.write and bundled and not args.force:
        raise ValueError(f"--write would rewrite the bundled model {path}; copy it and tune the "
                         "copy, or add --force (a backup goes to --out first)")
    val_paths = [check_validation_clip(value) for value in args.val]
    enhancer = load_enhancer(path, device=args.device)
    qualities = args.quality or [enhancer.codec.quality]
    codec = enhancer.codec
    if codec.learned and qualities != [codec.quality]:
        raise ValueError(f"{path.name} holds {codec.name} q{codec.quality} weights only; tune it "
                         f"at --quality {codec.quality}")
    candidates = candidate_grid(args.steps, args.gamma, args.t_start, args.residual_scale,
                                args.hold)

    clips = []
    for value in val_paths:
        (sequence,) = find_sequences(value)
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
                "grid": {"steps": args.steps, "gammas": args.gamma, "t_starts": args.t_start,
                         "residual_scales": args.residual_scale, "holds": args.hold},
                "max_psnr_drop": args.max_psnr_drop,
                "max_temporal_ratio": args.max_temporal_ratio, "seed": args.seed}
    sweep_path = out_dir / SWEEP_NAME
    write_sweep(sweep_path, chosen, results + [alternative], settings)
    verdict = "meets every limit" if chosen.admissible else "MISSES some limits (least violating)"
    print(f"\nchosen: {chosen.sampling.label()} ({verdict}); sweep written to {sweep_path}")
    if args.write:
        if bundled:
            backup = out_dir / f"{path.stem}.before-tune{path.suffix}"
            shutil.copy2(path, backup)
            print(f"backup of the bundled file: {backup} (copy it back to undo)")
        provenance = settings | {"meets_all_limits": chosen.admissible,
                                 "lpips_ratio": chosen.lpips_ratio}
        store_sampling(path, chosen.sampling, provenance)
        print(f"stored in {path} as its default sampling")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
