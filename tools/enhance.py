"""`python tools/enhance.py --help`: a thin wrapper around :mod:`enhancer.commands.enhance`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.enhance import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
