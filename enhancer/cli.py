"""Shared entry-point wrapper for ``tools/*.py``: user errors print one line, not a traceback."""

from __future__ import annotations

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
