"""`python tools/plot_log.py --help`: a thin wrapper around :mod:`enhancer.commands.plot_log`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.plot_log import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
