"""`python tools/codec.py --help`: a thin wrapper around :mod:`enhancer.commands.codec`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.codec import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
