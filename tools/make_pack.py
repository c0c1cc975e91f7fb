"""`python tools/make_pack.py --help`: a thin wrapper around :mod:`enhancer.commands.make_pack`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.make_pack import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
