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
