"""`python tools/eval_uvg.py --help`: a thin wrapper around :mod:`enhancer.commands.eval_uvg`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.eval_uvg import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
