"""What the dcvc (DCVC-FM), dcvc-rt and dcvc-uf adapters share: finding the DCVC checkout,
importing one DCVC generation's ``src`` package under a name of its own, DCVC's rANS coder,
official checkpoint folders and the symbol helpers of dcvc-rt and dcvc-uf. (The base class
of the adapters and their frame header: :mod:`enhancer.codecs.dcvc_adapter`.)

DCVC-FM, DCVC-RT and DCVC-UF each ship a top-level package named ``src`` (relative imports
inside), so at most one of them could be imported as ``src``. :func:`import_dcvc_module`
imports each generation's ``src`` under an alias (``_dcvc_fm_src``, ``_dcvc_rt_src``,
``_dcvc_uf_src``) straight from the submodule, so all of them live side by side in one
process, nothing copied. DCVC-FM's package also spans ``build/dcvc/src``, where
``tools/build_dcvc.sh`` puts its C++ coder (``models.MLCodec_rans``, ``models.MLCodec_CXX``).

Real bytes of dcvc-rt and dcvc-uf go through DCVC-RT's rANS coder
(``DCVC-family/DCVC-RT/src/cpp``, Python module ``MLCodec_extensions_cpp``, built into
``build/dcvc/rt``). DCVC-UF ships a coder of the same module name whose Python binding returns
no decoded symbols (its streams are written by its CUDA inference proxy), so the dcvc-uf
adapter codes its symbols with DCVC-RT's binding too.

Locations (environment variables override the defaults): ``ENHANCER_DCVC_ROOT`` the DCVC
checkout (default ``<repo>/third_party/DCVC``), ``ENHANCER_DCVC_BUILD`` the built coders
(default ``<repo>/build/dcvc``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecError
from enhancer.utils.weights import load_error_reason, state_dict_mismatch

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_ENV = "ENHANCER_DCVC_ROOT"
BUILD_ENV = "ENHANCER_DCVC_BUILD"
CODER_MODULE = "MLCodec_extensions_cpp"
SETUP_HELP = (
    "git submodule update --init third_party/DCVC   # DCVC sources\n"
    "bash tools/build_dcvc.sh                         # DCVC's C++ rANS coders, for real bytes"
)


def dcvc_root() -> Path:
    """The DCVC checkout: ``$ENHANCER_DCVC_ROOT`` or ``<repo>/third_party/DCVC``."""
    return Path(os.environ.get(ROOT_ENV) or REPO_ROOT / "third_party" / "DCVC")


def dcvc_build_dir() -> Path:
    """Where tools/build_dcvc.sh puts the coders: ``$ENHANCER_DCVC_BUILD`` or build/dcvc."""
    return Path(os.environ.get(BUILD_ENV) or REPO_ROOT / "build" / "dcvc")


@dataclass(frozen=True)
class Generation:
    """One DCVC generation: where its code lives, its coder and the README of its weights."""

    label: str  # "DCVC-RT"
    alias: str  # the name its ``src`` package is imported under
    relative_dir: str  # its folder inside the DCVC checkout ("" for the root)
    probe: str  # a file that proves the sources are there, relative to its folder
    readme: str  # where the links to its official checkpoints are, relative to the checkout
    # its own C++ coder's modules inside build/dcvc/src (DCVC-FM); none: DCVC-RT's rANS module
    coder_modules: tuple[str, ...] = ()

    def folder(self) -> Path:
        return dcvc_root() / self.relative_dir if self.relative_dir else dcvc_root()

    def missing_sources(self) -> str | None:
        """Why this generation's Python code cannot be used, or None when it can."""
        probe = self.folder() / self.probe
        if probe.is_file():
            return None
        return (f"{self.label} sources not found ({probe} is missing; ${ROOT_ENV} or "
                f"third_party/DCVC picks the checkout). Set it up with:\n{SETUP_HELP}")

    def missing_entropy_coder(self) -> str | None:
        """Why this generation's C++ entropy coder cannot be used, or None when it can."""
        reason = self.missing_sources()
        if reason is not None:
            return reason
        try:
            for name in self.coder_modules:
                self.module(name)
            if not self.coder_modules:
                rans_coder()
        except (ImportError, CodecError) as err:
            return (f"{self.label}'s C++ rANS coder is not built or does not load ({err}); it is "
                    f"looked for in {dcvc_build_dir()} (${BUILD_ENV}). Build it with:\n"
                    f"{SETUP_HELP}")
        return None

    def module(self, name: str) -> Any:
        """Import ``src.<name>`` of this generation (e.g. ``models.image_model``)."""
        reason = self.missing_sources()
        if reason is not None:
            raise CodecError(reason)
        src_dirs = [self.folder() / "src"]
        if self.coder_modules:
            src_dirs.append(dcvc_build_dir() / "src")
        return import_dcvc_module(src_dirs, self.alias, name)


FM = Generation("DCVC-FM", "_dcvc_fm_src", "DCVC-family/DCVC-FM", "src/models/video_model.py",
                "DCVC-family/DCVC-FM/README.md", ("models.MLCodec_rans", "models.MLCodec_CXX"))
RT = Generation("DCVC-RT", "_dcvc_rt_src", "DCVC-family/DCVC-RT", "src/models/video_model.py",
                "DCVC-family/DCVC-RT/README.md")
UF = Generation("DCVC-UF", "_dcvc_uf_src", "", "src/models/video_model_ld.py", "README.md")


def import_dcvc_module(src_dirs: list[Path], alias: str, name: str) -> Any:
    """Import ``<name>.py`` of a DCVC ``src`` package spread over ``src_dirs`` as
    ``<alias>.<name>`` (its relative imports work under any name). Quiet: DCVC prints a
    notice when its optional CUDA kernels are absent."""
    package = sys.modules.get(alias)
    paths = [str(path) for path in src_dirs]
    if package is None:
        spec = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = paths
        sys.modules[alias] = package
    elif list(package.__path__) != paths:
        raise CodecError(f"{alias} is already imported from {package.__path__}, not {paths}: "
                         "one DCVC checkout per process")
    with contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module(f"{alias}.{name}")


def rans_coder() -> Any:
    """DCVC-RT's rANS module, registered as ``MLCodec_extensions_cpp`` (the name DCVC imports)."""
    path = dcvc_build_dir() / "rt" / (CODER_MODULE + sysconfig.get_config_var("EXT_SUFFIX"))
    loaded = sys.modules.get(CODER_MODULE)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "")).resolve() != path.resolve():
            raise CodecError(f"another {CODER_MODULE} is imported ({loaded.__file__}), not "
                             f"DCVC-RT's at {path}")
        return loaded
    if not path.is_file():
        raise CodecError(f"{path} not found")
    spec = importlib.util.spec_from_file_location(CODER_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[CODER_MODULE] = module
    return module


# --- checkpoints -----------------------------------------------------------------------------
def read_state_dict(path: Path, label: str) -> dict[str, Tensor]:
    """An official DCVC checkpoint as a state dict (unwrapped as DCVC's get_state_dict does)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CodecError(f"could not read {label} checkpoint {str(path)!r}: "
                         f"{load_error_reason(err)}") from err
    for key in ("state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CodecError(f"{label} checkpoint {str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_checkpoint_folder(folder: str | Path, models: dict[str, nn.Module],
                           generation: Generation) -> None:
    """Load each ``{filename: model}`` from ``folder``, strictly; name what does not fit."""
    folder, label = Path(folder), generation.label
    names = " and ".join(models)
    if not folder.is_dir():
        raise CodecError(f"{label} checkpoint must be a folder holding {names}, got {str(folder)!r}")
    for filename, model in models.items():
        path = folder / filename
        if not path.is_file():
            raise CodecError(
                f"{label} weights {filename} not found in {str(folder)!r}. Download the official "
                f"checkpoints (links in third_party/DCVC/{generation.readme}) and put {names} in "
                "that folder."
            )
        state_dict = read_state_dict(path, label)
        problems = state_dict_mismatch(model.state_dict(), state_dict)
        if problems:
            raise CodecError(
                f"{str(path)!r} does not fit {label}'s {type(model).__name__} (expected the "
                f"official {filename}): {problems}. It may be a file of another DCVC generation "
                "or variant."
            )
        model.load_state_dict(state_dict)


# --- symbols ---------------------------------------------------------------------------------
def gaussian_likelihood(symbols: Tensor, scales: Tensor) -> Tensor:
    """Likelihood of integer ``symbols`` (residuals around the mean) under N(0, scale), the
    model DCVC's Gaussian coder uses (scales bounded below by its table's 0.11)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    scales = scales.clamp_min(0.11)
    magnitude = symbols.abs()
    upper = normal.cdf((0.5 - magnitude) / scales)
    lower = normal.cdf((-0.5 - magnitude) / scales)
    return (upper - lower).clamp_min(1e-9)


def pad_rans_buffer(gaussian: Any, likelihoods: list[Tensor]) -> None:
    """Make room in DCVC-RT's rANS encoder before ``flush``.

    Its encoder writes into a buffer of one byte per pending symbol (``rans.cpp``, ``flush``,
    "too much space ?"): a stream above 8 bits per symbol, which untrained (random) weights
    produce, overruns it and crashes the process. From the symbols' likelihoods (each capped
    at 40 bits, an escape and its bypass bins), append enough near-certain symbols (zeros at
    the smallest scale, about 1e-5 bits each) to hold the stream with a 25 % margin. They are
    coded last, so the decoder stops before them; with trained weights none are needed.
    """
    symbols = sum(lk.numel() for lk in likelihoods)
    bits = sum(float((-torch.log2(lk.float())).clamp(max=40).sum()) for lk in likelihoods)
    padding = int(1.25 * bits / 8) + 256 - symbols
    if padding > 0:
        gaussian.encode_y(torch.zeros(padding), torch.full((padding,), gaussian.scale_min))


def round_int8_ste(values: Tensor) -> Tensor:
    """round() and clamp to DCVC's int8 symbol range, with straight-through gradients."""
    return values + (torch.round(values).clamp(-128, 127) - values).detach()


__all__ = [
    "FM",
    "RT",
    "UF",
    "Generation",
    "dcvc_build_dir",
    "dcvc_root",
    "gaussian_likelihood",
    "import_dcvc_module",
    "load_checkpoint_folder",
    "pad_rans_buffer",
    "rans_coder",
    "read_state_dict",
    "round_int8_ste",
]
