"""`python tools/eval_images.py --help`: a thin wrapper around :mod:`enhancer.commands.eval_images`."""

import sys

from enhancer.cli import run_cli
from enhancer.commands.eval_images import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
