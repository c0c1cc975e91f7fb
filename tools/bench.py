"""`python tools/bench.py --help`: a thin wrapper around :mod:`enhancer.commands.bench`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.bench import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
