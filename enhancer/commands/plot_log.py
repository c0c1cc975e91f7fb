"""Plot a training run's curves: ``python tools/plot_log.py runs/x/log.jsonl curves.png``."""

from __future__ import annotations

import sys

from enhancer.cli import ArgumentParser, run_cli
from enhancer.train.plot import plot_log


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("log", help="log.jsonl of a training run")
    parser.add_argument("out", help="PNG to write")
    args = parser.parse_args(argv)
    print(f"wrote {plot_log(args.log, args.out)}")
    return 0


def console() -> None:
    """Entry point of the installed console script."""
    sys.exit(run_cli(main))
