"""Enhance a coded video: an enhancer .bin, or any H.264/HEVC file (MP4, MKV, Annex-B).

    enhancer-enhance clip.mp4 enhanced.mp4                  # the bundled model for its codec
    enhancer-enhance clip.bin enhanced.y4m --side-by-side   # decoded | enhanced
    enhancer-enhance clip.264 frames/ --quality 30 --frames 10   # a folder of PNGs

The model is told the stream's quality: a .bin's header, x264's or x265's SEI
("crf=28.0"), else the mean P-frame QP taken as the CRF (good to about +-5; --quality
overrides); an x265 CRF counts 2 lower on the x264 model's scale. Output: .mp4 (x264,
near-lossless), .mkv with --lossless (FFV1), .y4m, or a path without extension
for a folder of PNG frames. Ctrl-C or SIGTERM leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys

from enhancer.cli import (
    ArgumentParser,
    add_sampling_arguments,
    run_cli,
    sampling_overrides,
    scale_or_default,
    steps_or_default,
)
from enhancer.pipeline.stream import enhance_file


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="enhancer-enhance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="an enhancer .bin, or an H.264/HEVC file (.mp4, .mkv, "
                        ".264, .265, ...)")
    parser.add_argument("output", help=".mp4, .mkv (with --lossless), .y4m, or a new folder "
                        "for PNG frames")
    parser.add_argument("--enhancer", default=None, metavar="NAME|PATH",
                        help="a bundled model name or a checkpoint (default: the bundled model "
                        "that serves the stream's codec and quality)")
    parser.add_argument("--quality", type=int, default=None, metavar="CRF",
                        help="the CRF an H.264/HEVC file was encoded with (default: read from "
                        "the stream)")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="enhance only the first N frames")
    parser.add_argument("--side-by-side", action="store_true",
                        help="write decoded | enhanced, side by side")
    parser.add_argument("--lossless", action="store_true",
                        help="lossless FFV1 in .mkv instead of near-lossless H.264")
    parser.add_argument("--steps", type=steps_or_default, default=None,
                        help="denoiser calls per frame (default: the checkpoint's)")
    parser.add_argument("--residual-scale", type=scale_or_default, default=None,
                        help="s in [0, 1]: enhanced = decoded + s * residual (default: the "
                        "checkpoint's)")
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds the start noise (default 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    sampling = sampling_overrides(args) | {"steps": args.steps,
                                           "residual_scale": args.residual_scale}
    report = enhance_file(
        args.input, args.output, enhancer=args.enhancer, quality=args.quality,
        frames=args.frames, side_by_side=args.side_by_side, lossless=args.lossless,
        seed=args.seed, sampling=sampling, device=args.device, progress=not args.no_progress,
    )
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
