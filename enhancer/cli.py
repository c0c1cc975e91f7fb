"""Shared entry-point wrapper for ``tools/*.py``: user errors print one line, not a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; report a user error as ``error: ...`` on stderr and return 2."""
    try:
        return main(argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for ``WxH`` (e.g. ``256x256``) -> ``(H, W)``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 256x256, got {text!r}") from None
    return height, width


def _ranged_float(name: str, low: float, high: float, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or value > high:
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{name} must be in {bracket}{low:g}, {high:g}], "
                                             f"got {value:g}")
        return value

    return parse


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """``--gamma --eta --t-start --noise``: override the checkpoint's sampling defaults."""
    group = parser.add_argument_group(
        "sampling (default: the settings stored in the enhancer checkpoint)")
    group.add_argument("--gamma", type=_ranged_float("--gamma", 0.0, 1.5), default=None,
                       help="start-noise scale in [0, 1.5] (1: the model's prior, 0: no noise)")
    group.add_argument("--eta", type=_ranged_float("--eta", 0.0, 1.0), default=None,
                       help="DDIM stochasticity in [0, 1] (0: deterministic)")
    group.add_argument("--t-start", type=_ranged_float("--t-start", 0.0, 1.0, low_open=True),
                       default=None, help="start time in (0, 1]: < 1 starts part-way, near the "
                       "decoded frame (DIRAC-style)")
    group.add_argument("--noise", choices=("shared", "fresh"), default=None,
                       help="one start-noise field per sequence (shared) or per frame (fresh)")


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling overrides the user gave (see :func:`add_sampling_arguments`)."""
    return {"gamma": args.gamma, "eta": args.eta, "t_start": args.t_start, "noise": args.noise}
