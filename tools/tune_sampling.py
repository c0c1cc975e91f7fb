"""`python tools/tune_sampling.py --help`: a thin wrapper around :mod:`enhancer.commands.tune_sampling`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.tune_sampling import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
