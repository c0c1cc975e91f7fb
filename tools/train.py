"""`python tools/train.py --help`: a thin wrapper around :mod:`enhancer.commands.train`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.train import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
