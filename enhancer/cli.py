"""Shared entry-point wrapper for ``tools/*.py``: user errors print one line, not a traceback."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable

# ValueError covers CodecError, ConfigError and every reworded input error; OSError covers
# the file system (missing, folder, exists, permission, disk full), always with a path.
USER_ERRORS = (ValueError, OSError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every open writer takes its abort path."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; report a user error as ``error: ...`` on stderr and return 2.

    SIGTERM is handled as SIGINT (a :class:`Terminated` is raised), so partial outputs
    are removed the same way; the exit status is then 128 + 15.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main(argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for ``WxH`` (e.g. ``256x256``) -> ``(H, W)``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 256x256, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"expected a positive WIDTHxHEIGHT like 256x256, "
                                         f"got {text!r}")
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


def scale_or_default(text: str) -> float | None:
    """argparse type for ``--residual-scale``: a number in [0, 1], or ``default`` (the
    checkpoint's own, chosen by tools/tune_sampling.py)."""
    if text == "default":
        return None
    return _ranged_float("--residual-scale", 0.0, 1.0)(text)


def add_residual_scale_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--residual-scale S [S ...]``: the scales to run, each a number in [0, 1] or
    ``default`` (None: the checkpoint's own, the default)."""
    parser.add_argument("--residual-scale", type=scale_or_default, nargs="+", default=[None],
                        help="residual scales s in [0, 1] to run (enhanced = decoded + s * "
                             "residual; 0: the decode itself); 'default' is the checkpoint's "
                             "own (the default)" + note)


def steps_or_default(text: str) -> int | None:
    """argparse type for ``--steps``: a count >= 1, or ``default`` (the checkpoint's own)."""
    if text == "default":
        return None
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be a number or 'default', got {text!r}") from None
    if steps < 1:
        raise argparse.ArgumentTypeError(f"steps must be >= 1, got {steps}")
    return steps


def add_signal_arguments(parser: argparse.ArgumentParser) -> None:
    """``--signal OBJECTIVE`` and its settings: the encoder chooses per-block strength maps."""
    from enhancer.strength import DEFAULT_SCALES, OBJECTIVES

    group = parser.add_argument_group("signalled strength (encoder side)")
    group.add_argument("--signal", choices=OBJECTIVES, default=None,
                       help="choose every frame's per-block enhancer strength with the source "
                            "in hand, minimising this metric, and send the map in the stream")
    group.add_argument("--signal-block", type=int, default=64,
                       help="block side in pixels, 32-128 (default 64)")
    group.add_argument("--signal-scales", type=float, nargs="+", default=list(DEFAULT_SCALES),
                       help=f"residual scales to choose from (default {list(DEFAULT_SCALES)})")
    group.add_argument("--max-psnr-drop", type=_ranged_float("--max-psnr-drop", 0.0, math.inf),
                       default=0.05,
                       help="the enhanced frame's PSNR may fall at most this many dB below the "
                            "decode's (default 0.05)")
    group.add_argument("--signal-hysteresis",
                       type=_ranged_float("--signal-hysteresis", 0.0, math.inf), default=0.02,
                       help="keep a block's previous scale unless another is better by this "
                            "fraction of its decode cost (default 0.02; 0: no hysteresis)")


def signal_config(args: argparse.Namespace):
    """The :class:`enhancer.strength.SignalConfig` of ``--signal ...`` (None without it)."""
    from enhancer.strength import SignalConfig

    if args.signal is None:
        return None
    return SignalConfig(args.signal, block=args.signal_block, scales=tuple(args.signal_scales),
                        max_psnr_drop=args.max_psnr_drop, hysteresis=args.signal_hysteresis)
