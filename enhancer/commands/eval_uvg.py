"""Evaluate a codec and its enhancer on UVG (or any sequences): bpp, PSNR, MS-SSIM, LPIPS,
DISTS, temporal consistency, FID/KID on 256x256 patches (opt-in: --metrics ... fid kid),
BD-rates, plots, side-by-side crops and an enhanced MP4.

    enhancer-eval                     # the demo: ssf-small and x264 with their bundled
                                      # enhancers on packaged clips, no downloads
                                      # (~140 CPU-seconds; it prints its time)
    enhancer-eval --root /data/UVG --codec ssf-small --quality 1 2 3 \\
        --enhancer 'ssf_small_q{quality}' --metrics full --out out/uvg
    enhancer-eval --config configs/eval/uvg.json --codec x264 --quality 22 27 32 37 \\
        --enhancer x264_temporal_tiny --reference x264 vtm   # CompressAI's UVG 1080p curves

--root holds UVG files under their standard names (Beauty_1920x1080_120fps_420_8bit_YUV.yuv),
or .y4m, .mp4/.mkv, or folders of PNG frames. Rerunning with the same --out resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from enhancer.cli import (
    STARTED,
    ArgumentParser,
    add_residual_scale_argument,
    add_sampling_arguments,
    add_signal_arguments,
    parse_size,
    run_cli,
    sampling_overrides,
    signal_config,
    steps_or_default,
)
from enhancer.codecs import available_codecs
from enhancer.eval.demo import DEMO_FRAMES, run_demo
from enhancer.eval.ranks import Ranks
from enhancer.eval.references import available_references
from enhancer.eval.registry import expand_metrics, metric_choices
from enhancer.eval.report import format_duration
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.sequences import find_sequences, load_sequence_list, select_sequences
from enhancer.eval.specs import load_enhancer_spec, untrained_enhancer

EPILOG = """\
several processes (one GPU each, or sharing the CPU; rank 0 merges, resume works alike):
  torchrun --nproc_per_node 4 tools/eval_uvg.py --root /data/UVG --codec x264 --quality 22 27 32 37 --enhancer x264_temporal_tiny --device cuda --out out/uvg
"""


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("sequences (neither: the demo)")
    source.add_argument("--root", help="folder of sequences (UVG .yuv names, .y4m, .mp4, PNG folders)")
    source.add_argument("--config", help="JSON sequence list (ours or DCVC's test_classes layout)")
    source.add_argument("--sequences", nargs="+", help="only these sequence names")
    source.add_argument("--demo", action="store_true", help="run the demo (also without --root)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per sequence (default 96, or the list's; demo: 8)")
    parser.add_argument("--intra-period", type=int, default=32, help="32, or -1 (first frame only)")
    parser.add_argument("--crop", type=parse_size, default=None, help="centre crop WxH")
    parser.add_argument("--codec", choices=available_codecs(), default=None,
                        help="default: the enhancer's codec")
    parser.add_argument("--quality", type=int, nargs="+", default=None,
                        help="rate points (default: the enhancer's quality)")
    parser.add_argument("--checkpoint", default=None,
                        help="codec weights; '{quality}' is filled in; 'zoo' for CompressAI's pretrained ones, 'random' for untrained")
    parser.add_argument("--enhancer", nargs="+", default=None, metavar="ENHANCER",
                        help="enhancer checkpoints or bundled names, side by side in one run "
                        "('{quality}' is filled in: one model per rate, e.g. "
                        "ssf_small_q{quality}); 'random' for an untrained one; none: codec "
                        "rows only")
    parser.add_argument("--steps", type=steps_or_default, nargs="+", default=None,
                        help="sampling steps; 'default' is the checkpoint's own (the default; "
                        "the demo shows 'default' and 10)")
    add_residual_scale_argument(parser)
    parser.add_argument("--metrics", nargs="+", choices=metric_choices(), default=None,
                        help="metrics, or a set: 'fast' (PSNR, SSIM, MS-SSIM, LPIPS-Alex, "
                             "temporal), 'full' (fast + LPIPS-VGG and DISTS, about 20x "
                             "LPIPS-Alex each on a CPU, and HaarPSI). Default: full; the demo: fast. "
                             "fid/kid (opt-in, added to a set): FID/256 and KID/256 over the "
                             "256x256 patches of all sequences, in summary.json")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="Inception-v3 FID weights for fid/kid (default: torch hub's cache, "
                             "as torch-fidelity keeps them; never downloaded)")
    parser.add_argument("--reference", nargs="+", default=[], metavar="NAME",
                        help="draw CompressAI's published UVG 1080p curves on the rate-"
                        "distortion plots (PSNR RGB, MS-SSIM RGB; comparable only on UVG "
                        f"1080p): {', '.join(available_references())}")
    add_sampling_arguments(parser)
    add_signal_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default eval_out / eval_demo)")
    args = parser.parse_args(argv)
    ranks = Ranks.from_env()

    if args.demo or (args.root is None and args.config is None):
        if args.reference:
            raise ValueError("--reference draws CompressAI's UVG 1080p curves, which the "
                             "demo's 256x256 crops cannot be compared with: give --root or "
                             "--config with the UVG sequences")
        if ranks.shared:
            raise ValueError(f"the demo runs in one process, not {ranks.size} ranks: start it "
                             "without torchrun, or give --root/--config")
        report = run_demo(args.out or "eval_demo", frames=args.frames or DEMO_FRAMES,
                          steps=args.steps or (None,), sampling=sampling_overrides(args),
                          device=args.device, residual_scales=args.residual_scale,
                          metrics=expand_metrics(args.metrics or ["fast"]), quiet=args.quiet,
                          started=STARTED)
        print(report.format())
        return report.exit_code

    args.device = ranks.place(args.device)  # under torchrun: this rank's GPU or CPU share
    args.steps = args.steps or [None]  # None: the checkpoint's default
    if args.config is not None:
        sequences = select_sequences(load_sequence_list(args.config, args.root), args.sequences)
    else:
        if args.out is not None and Path(args.out).resolve() == Path(args.root).resolve():
            raise ValueError(f"--out {args.out} is the --root folder: a rerun would take its "
                             "crops/ and plots/ for sequences; pick another --out")
        sequences = find_sequences(args.root, args.sequences, log=print)
    codec_name, qualities = args.codec, args.quality
    specs = []
    for name in args.enhancer or []:
        if name == "random":
            if codec_name is None or not qualities:
                parser.error("--enhancer random needs --codec and --quality")
            spec = untrained_enhancer(codec_name, qualities[0], args.device)
            spec.steps, spec.residual_scales = args.steps, args.residual_scale
            spec.sampling_overrides = {k: v for k, v in sampling_overrides(args).items()
                                       if v is not None}
        else:
            # Codec and rate point default to the ones the (first) enhancer was trained for.
            spec = load_enhancer_spec(name, codec_name, args.steps, args.residual_scale,
                                      args.device, qualities=qualities,
                                      sampling_overrides=sampling_overrides(args))
            codec_name = spec.enhancer.codec.name
            qualities = qualities or [spec.enhancer.codec.quality]
        if spec.label in [s.label for s in specs]:
            raise ValueError(f"--enhancer names {spec.label!r} twice (labels are file "
                             "stems): give each model once, or copy one under another name")
        specs.append(spec)
    if codec_name is None or not qualities:
        parser.error("pass --codec and --quality (or an --enhancer to take them from)")
    if args.signal is not None:
        if not specs:
            parser.error("--signal chooses strength maps for an enhancer: pass --enhancer")
        specs += [s.signalled(signal_config(args)) for s in specs]  # beside the unsignalled
    specs = specs or None
    settings = EvalSettings(
        frames=args.frames, intra_period=args.intra_period, device=args.device,
        out_dir=args.out or "eval_out", codec_checkpoint=args.checkpoint, crop=args.crop,
        seed=args.seed, metrics=expand_metrics(args.metrics or ["full"]), quiet=args.quiet,
        inception_weights=args.inception_weights, references=tuple(args.reference),
        ranks=ranks,
    )
    report = evaluate_sequences(sequences, codec_name, qualities, specs, settings)
    print(report.format())
    print(f"total time: {format_duration(time.perf_counter() - STARTED)}")
    return report.exit_code


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
