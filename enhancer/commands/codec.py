"""Encode a video with any registered codec into one .bin file, and decode it back.

    python tools/codec.py encode --codec x264 --quality 28 --frames 9 IN.yuv OUT.bin
    python tools/codec.py decode OUT.bin DECODED.y4m
    python tools/codec.py encode --codec x264 --quality 32 --signal lpips IN.mp4 OUT.bin
        # + per-block strength maps for x264_signalled, as SEI in the H.264 frames
"""

from __future__ import annotations

import argparse
import sys

from enhancer.cli import ArgumentParser, add_signal_arguments, run_cli, signal_config
from enhancer.codecs import available_codecs
from enhancer.pipeline.codec_files import decode_file, encode_file


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="video -> .bin (prints bpp and PSNR)")
    enc.add_argument("--codec", required=True, choices=available_codecs())
    enc.add_argument("--quality", type=int, required=True)
    enc.add_argument("--frames", type=int, default=None, help="frames to code (default: all)")
    enc.add_argument("--intra-period", type=int, default=-1, help="-1: only the first frame is intra")
    enc.add_argument("--checkpoint", default=None, help="codec weights file, 'zoo' (CompressAI's pretrained weights, downloaded once), or 'random'")
    enc.add_argument("--width", type=int, default=None, help="for raw .yuv without size in the name")
    enc.add_argument("--height", type=int, default=None)
    enc.add_argument("--device", default="cpu")
    enc.add_argument("--enhancer", default=None,
                     help="with --signal: the enhancer the maps are chosen for (bundled name or "
                          "checkpoint; default: the bundled model made for maps that serves "
                          "the codec, x264_signalled for x264/x265, else the codec's model)")
    enc.add_argument("--seed", type=int, default=0,
                     help="with --signal: the sampling seed (the decoder must use the same)")
    add_signal_arguments(enc)
    enc.add_argument("input", help=".yuv, .y4m, .mp4/.mkv/.avi/.264, or a folder of PNGs")
    enc.add_argument("output", help="the .bin container to write")
    dec = sub.add_parser("decode", help=".bin -> .y4m, .yuv, .mp4 or a PNG folder (prints bpp)")
    dec.add_argument("--checkpoint", default=None, help="the weights used to encode: a file, 'zoo' or 'random'")
    dec.add_argument("--device", default="cpu")
    dec.add_argument("input")
    dec.add_argument("output")
    args = parser.parse_args(argv)

    if args.command == "encode":
        report = encode_file(
            args.input, args.output, args.codec, args.quality, checkpoint=args.checkpoint,
            frames=args.frames, intra_period=args.intra_period, width=args.width,
            height=args.height, device=args.device, signal=signal_config(args),
            enhancer=args.enhancer, seed=args.seed,
        )
    else:
        report = decode_file(args.input, args.output, checkpoint=args.checkpoint, device=args.device)
    print(report.summary())
    print(f"wrote {args.output}")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
