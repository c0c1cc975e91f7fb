"""Train an enhancer (frozen codec, end to end, or a codec pretraining stage).

    python tools/train.py configs/video/ssf_frozen_tiny.yaml --run-dir runs/ssf_tiny
    python tools/train.py configs/video/ssf_frozen_tiny.yaml --run-dir runs/x --set iterations=4 rho=0
    python tools/train.py --resume runs/ssf_tiny --set iterations=2000      # continue a run
    torchrun --nproc_per_node 4 tools/train.py configs/video/ssf_e2e.yaml --run-dir runs/e2e
    python tools/train.py --export runs/ssf_tiny/last.pt enhancer/weights/ssf_tiny.pt --half
    python tools/train.py configs/video/ssf_frozen_tiny.yaml --print-config   # resolved, base merged

Overrides are ``key.sub=value`` with YAML values (``data.batch_size=4``, ``model.unet=cdc``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from enhancer.cli import ArgumentParser, run_cli
from enhancer.config import to_dict
from enhancer.data.paths import remove_stale_temporaries
from enhancer.train import load_train_config, train
from enhancer.train.export import export_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("config", nargs="?", help="training YAML (not needed with --resume)")
    parser.add_argument("--run-dir", help="output folder (checkpoints, logs)")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from DIR/last.pt (uses DIR/config.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. iterations=100 data.batch_size=4")
    parser.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "OUT"),
                        help="write an inference checkpoint (EMA weights, no training state)")
    parser.add_argument("--half", action="store_true", help="with --export: store fp16 weights")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (base files merged, --set applied) and exit")
    args = parser.parse_args(argv)

    if args.export:
        out = export_checkpoint(*args.export, half=args.half)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return 0
    if args.resume:
        run_dir = Path(args.resume)
        config_path = Path(args.config) if args.config else run_dir / "config.yaml"
    else:
        if not args.config or not (args.run_dir or args.print_config):
            parser.error("give a CONFIG and --run-dir (or --resume DIR)")
        run_dir, config_path = Path(args.run_dir or "."), Path(args.config)
    cfg = load_train_config(config_path, args.set)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    if not args.resume and (run_dir / "last.pt").exists():
        raise ValueError(f"{run_dir} already holds a run (last.pt); use --resume {run_dir} "
                         "or another --run-dir")
    if args.resume:  # what a killed run left half-written (never its checkpoints)
        remove_stale_temporaries(run_dir)
    trainer = train(cfg, run_dir, resume=bool(args.resume))
    print(f"trained to step {trainer.step}; checkpoint {run_dir / 'last.pt'}")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
