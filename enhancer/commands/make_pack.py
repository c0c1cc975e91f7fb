"""Cut a data pack for GPU training from a config's codec cache:
``python tools/make_pack.py configs/video/x264_full_strength.yaml packs/x264_crf22-44``.

The pack (``pack.npz`` plus the pure-Python packages and LPIPS weights a bare GPU machine
lacks) is what ``tools/train_gpu.sh`` trains from; see :mod:`enhancer.train.pack`.
"""

from __future__ import annotations

import argparse

from enhancer.cli import ArgumentParser
from enhancer.train.config import load_train_config
from enhancer.train.pack import build_pack


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="training YAML whose data.codec_cache, data.train, "
                        "crop_size, clip_len and codec_qualities the pack is cut from")
    parser.add_argument("out_dir", help="folder to write (pack.npz, runtime/, lpips_weights/)")
    parser.add_argument("--crops-per-video", type=int, default=8,
                        help="crop windows per training video, each at every quality (default 8)")
    parser.add_argument("--qualities-per-crop", type=int, default=None, metavar="K",
                        help="decode each window at K of the qualities, drawn at random "
                        "(default: at all of them); fewer gives more windows per MiB")
    parser.add_argument("--seed", type=int, default=0, help="crop positions' seed (default 0)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. data.crop_size=96")
    args = parser.parse_args(argv)
    cfg = load_train_config(args.config, args.set)
    meta = build_pack(cfg, args.out_dir, args.crops_per_video, args.seed,
                      args.qualities_per_crop)
    print(f"wrote {args.out_dir}: {meta['items']} items ({len(meta['clips'])} clips x "
          f"{args.crops_per_video} crops x {meta['qualities_per_crop']} of "
          f"{len(meta['qualities'])} qualities, "
          f"{meta['clip_len']} frames of {meta['crop']} px), pack.npz "
          f"{meta['bytes'] / 2**20:.1f} MiB, folder {meta['folder_bytes'] / 2**20:.1f} MiB, "
          f"{meta['seconds']:.0f} s")
    return 0
