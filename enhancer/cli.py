"""Shared entry-point wrapper for ``tools/*.py``: user errors print one line, not a traceback.

Every command's parser is :class:`ArgumentParser` (a mistyped flag or choice gets a "did you
mean"); :func:`run_cli` runs it: a user error is one line and exit code 2, an unexpected
error one line naming where it happened and exit code 1, unless ``--debug`` asks for the
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

# CompressAI imports torch_geometric (for its point-cloud data sets), which calls the
# deprecated torch.jit.script at import time: a FutureWarning on every command, about code
# the project never runs. Silenced for the commands only, by its exact message.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                        category=FutureWarning, module=r"torch\.jit\._script")

# When the command's process got here: tools/*.py and the console scripts import this module
# before torch and CompressAI, so a command's "total time" counts their import too.
STARTED = time.perf_counter()

# ValueError covers CodecError, ConfigError and every reworded input error; OSError covers
# the file system (missing, folder, exists, permission, disk full), always with a path.
USER_ERRORS = (ValueError, OSError)
DEBUG_FLAG = "--debug"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every open writer takes its abort path."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; report a user error as ``error: ...`` on stderr and return 2.

    An unexpected error (a bug, or a case nobody foresaw) is one line naming the source
    line it came from, exit code 1; ``--debug`` anywhere in ``argv`` (taken out before
    ``main`` sees it) shows the full traceback of any error instead.
    SIGTERM is handled as SIGINT (a :class:`Terminated` is raised), so partial outputs
    are removed the same way; the exit status is then 128 + 15.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main(argv)
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place an unexpected error is reported
        if debug:
            traceback.print_exc()
        print(f"error: unexpected {type(err).__name__}: {err} (at {_origin(err)}); rerun with "
              f"{DEBUG_FLAG} for the traceback, and report it if the input is right",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _origin(err: BaseException) -> str:
    """``file:line`` where ``err`` was raised: the innermost frame of this project's code
    (the package, tools, tests; not a dependency's or Python's own), else the innermost."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "unknown place"
    package = Path(__file__).resolve().parent

    def ours(filename: str) -> bool:
        path = Path(filename).resolve()
        if path.is_relative_to(package):
            return True
        third_party = {"site-packages", "dist-packages"} & set(path.parts)
        return not third_party and not path.is_relative_to(Path(sys.base_prefix).resolve())

    frame = ([f for f in frames if ours(f.filename)] or frames)[-1]
    return f"{frame.filename}:{frame.lineno}"


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` for every command: a mistyped flag or choice gets a "did
    you mean", an argument error is one line (not the whole usage), and ``--debug`` is
    listed (:func:`run_cli` acts on it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true",
                          help="show the full traceback of an error")

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = suggestion(message, [o for o in self._option_string_actions if o.startswith("--")])
        self.exit(2, f"{self.prog}: error: {message}{hint}\n"
                     f"(see {self.prog} --help)\n")


def did_you_mean(word: str, candidates: list[str]) -> str:
    """``" (did you mean 'x'?)"`` for the candidate closest to ``word``; "" if none is close."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def suggestion(message: str, options: list[str]) -> str:
    """The "did you mean" for an argparse error ``message``: an unknown flag among
    ``options``, or an invalid choice among the choices it lists."""
    unknown = re.match(r"unrecognized arguments: (.*)", message)
    if unknown:
        for token in unknown.group(1).split():
            if token.startswith("--"):
                hint = did_you_mean(token.split("=", 1)[0], options)
                if hint:
                    return hint
        return ""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
    return ""


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


def ranged_float(name: str, low: float, high: float, low_open: bool = False):
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
    """``--gamma --eta --t-start --noise --hold``: override the checkpoint's sampling
    defaults."""
    group = parser.add_argument_group(
        "sampling (default: the settings stored in the enhancer checkpoint)")
    group.add_argument("--gamma", type=ranged_float("--gamma", 0.0, 1.5), default=None,
                       help="start-noise scale in [0, 1.5] (1: the model's prior, 0: no noise)")
    group.add_argument("--eta", type=ranged_float("--eta", 0.0, 1.0), default=None,
                       help="DDIM stochasticity in [0, 1] (0: deterministic)")
    group.add_argument("--t-start", type=ranged_float("--t-start", 0.0, 1.0, low_open=True),
                       default=None, help="start time in (0, 1]: < 1 starts part-way, near the "
                       "decoded frame (DIRAC-style)")
    group.add_argument("--noise", choices=("shared", "fresh"), default=None,
                       help="one start-noise field per sequence (shared) or per frame (fresh)")
    group.add_argument("--hold", type=ranged_float("--hold", 0.0, 1.0), default=None,
                       help="(video) keep the previous frame's residual where the decode "
                       "changed by less than this per pixel (0-1 scale; 0: off)")


def sampling_overrides(args: argparse.Namespace) -> dict:
    """The sampling overrides the user gave (see :func:`add_sampling_arguments`)."""
    return {"gamma": args.gamma, "eta": args.eta, "t_start": args.t_start, "noise": args.noise,
            "hold": args.hold}


def scale_or_default(text: str) -> float | None:
    """argparse type for ``--residual-scale``: a number in [0, 1], or ``default`` (the
    checkpoint's own, chosen by tools/tune_sampling.py)."""
    if text == "default":
        return None
    return ranged_float("--residual-scale", 0.0, 1.0)(text)


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
    group.add_argument("--max-psnr-drop", type=ranged_float("--max-psnr-drop", 0.0, math.inf),
                       default=0.05,
                       help="the enhanced frame's PSNR may fall at most this many dB below the "
                            "decode's (default 0.05)")
    group.add_argument("--signal-hysteresis",
                       type=ranged_float("--signal-hysteresis", 0.0, math.inf), default=0.02,
                       help="keep a block's previous scale unless another is better by this "
                            "fraction of its decode cost (default 0.02; 0: no hysteresis)")
    group.add_argument("--max-flicker-rise", type=flicker_rise, default=0.0,
                       help="a frame's temporal error may exceed the plain decode's by at most "
                            "this fraction where some map allows it (default 0; 'off': no "
                            "temporal bound, hysteresis only)")
    group.add_argument("--keep-dists", action="store_true",
                       help="send no map whose frame scores worse than the decode on DISTS "
                            "(a VGG16 pass per map checked: the encoder runs ~3x longer)")


def flicker_rise(text: str) -> float | None:
    """``--max-flicker-rise``: a fraction >= 0, or ``off``."""
    if text.strip().lower() in ("off", "none"):
        return None
    return ranged_float("--max-flicker-rise", 0.0, math.inf)(text)


def signal_config(args: argparse.Namespace):
    """The :class:`enhancer.strength.SignalConfig` of ``--signal ...`` (None without it)."""
    from enhancer.strength import SignalConfig

    if args.signal is None:
        return None
    return SignalConfig(args.signal, block=args.signal_block, scales=tuple(args.signal_scales),
                        max_psnr_drop=args.max_psnr_drop, hysteresis=args.signal_hysteresis,
                        max_flicker_rise=args.max_flicker_rise, keep_dists=args.keep_dists)
