"""Evaluate an image codec, our residual model and the CDC baseline on Kodak and DIV2K.

    enhancer-eval-images --kodak data/kodak --div2k data/DIV2K_valid_HR \\
        --codec bmshj2018-hyperprior --quality 1 --checkpoint 'bmshj-{quality}.pth.tar' \\
        --enhancer hyperprior_residual_q1 cdc_baseline_q1 --steps 4 10

Every --enhancer runs at every --steps ('default': each checkpoint's own); a CDC baseline
(an enhancer that samples the image, not the residual) always adds its whole output.

DIV2K is resized as in CDC (short side 768, centre crop 768x768). Writes results.json/.csv,
summary.json (averages, BD-rates vs the decoded images), plots and crops per data set.
Rerunning with the same --out resumes.
"""

from __future__ import annotations

import argparse
import sys
import time

from enhancer.cli import (
    STARTED,
    ArgumentParser,
    add_residual_scale_argument,
    add_sampling_arguments,
    parse_size,
    run_cli,
    sampling_overrides,
    steps_or_default,
)
from enhancer.codecs import available_codecs
from enhancer.eval.images import IMAGE_METRIC_CHOICES, evaluate_images
from enhancer.eval.registry import expand_metrics
from enhancer.eval.report import format_duration
from enhancer.eval.specs import load_enhancer_spec


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", help="folder of the 24 Kodak PNGs")
    parser.add_argument("--div2k", help="folder of DIV2K images (resized as in CDC)")
    parser.add_argument("--codec", choices=available_codecs(), required=True)
    parser.add_argument("--quality", type=int, nargs="+", required=True)
    parser.add_argument("--checkpoint", default=None,
                        help="codec weights; '{quality}' is filled in; 'random' for untrained")
    parser.add_argument("--enhancer", nargs="+", default=[],
                        help="enhancer checkpoints or bundled names (ours, or a CDC baseline); "
                             "none: codec rows only")
    parser.add_argument("--steps", type=steps_or_default, nargs="+", default=[None],
                        help="sampling steps for every enhancer; 'default' is each "
                             "checkpoint's own (the default)")
    add_residual_scale_argument(parser, "; a CDC baseline always uses 1.0")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--crop", type=parse_size, default=None, help="centre crop WxH")
    parser.add_argument("--metrics", nargs="+", choices=IMAGE_METRIC_CHOICES, default=["full"],
                        help="metrics, or a set: 'fast' (PSNR, SSIM, MS-SSIM, LPIPS-Alex), "
                             "'full' (fast + LPIPS-VGG, DISTS and HaarPSI; the default); fid/kid "
                             "(opt-in): FID/256 and KID/256 over every image's 256x256 patches")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="Inception-v3 FID weights for fid/kid (default: torch hub's cache)")
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="eval_images",
                        help="output folder (one subfolder per data set)")
    args = parser.parse_args(argv)

    datasets = {name: folder for name, folder in (("kodak", args.kodak), ("div2k", args.div2k))
                if folder is not None}
    if not datasets:
        parser.error("give --kodak DIR and/or --div2k DIR")
    specs = []
    for name in args.enhancer:
        spec = load_enhancer_spec(name, args.codec, args.steps, args.residual_scale, args.device,
                                  sampling_overrides=sampling_overrides(args))
        if spec.enhancer.config.diffusion.target == "image":  # CDC: the output is the image
            spec.residual_scales = [1.0]
        specs.append(spec)
    if not specs:
        print("note: no --enhancer given: only the codec's own rows are computed")
    reports = evaluate_images(
        datasets, args.codec, args.quality, specs, out_dir=args.out,
        codec_checkpoint=args.checkpoint, limit=args.limit, crop=args.crop, device=args.device,
        seed=args.seed, metrics=tuple(m for m in expand_metrics(args.metrics) if m != "temporal"),
        inception_weights=args.inception_weights,
    )
    for name, report in reports.items():
        print(f"== {name}")
        print(report.format())
    print(f"total time: {format_duration(time.perf_counter() - STARTED)}")
    return 1 if any(r.errors for r in reports.values()) else 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
