"""What the DCVC-RT and DCVC-UF adapters share: importing one DCVC generation's ``src`` package
under a name of its own, DCVC's rANS coder, official checkpoint folders, and the frame header.

DCVC-FM, DCVC-RT and DCVC-UF each ship a top-level package named ``src`` (relative imports
inside), so at most one of them could be imported as ``src``. :func:`import_dcvc_module`
imports each generation's ``src`` under an alias (``_dcvc_rt_src``, ``_dcvc_uf_src``) straight
from the submodule, so all of them live side by side in one process, nothing copied.

Real bytes go through DCVC-RT's rANS coder (``DCVC-family/DCVC-RT/src/cpp``, Python module
``MLCodec_extensions_cpp``, built by ``tools/build_dcvc.sh`` into ``build/dcvc/rt``). DCVC-UF
ships a coder of the same module name whose Python binding returns no decoded symbols (its
streams are written by its CUDA inference proxy), so the dcvc-uf adapter codes its symbols with
DCVC-RT's binding too.

Each frame's bytes: the coder byte (which adapter wrote them, :data:`CODER_IDS`), one flag
byte (bit 7: intra, bit 6: two rANS coders), the q_index byte, the CRC-32 of the stream (4
bytes, little endian), then the rANS stream. (The coder bytes have bit 6 set, which a dcvc
(DCVC-FM) frame's first byte never has, so each adapter refuses the others' frames.) The CRC is checked
before the stream reaches DCVC's C++ decoder, which has no bounds checks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import io
import sys
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecError
from enhancer.utils.weights import load_error_reason, state_dict_mismatch
from enhancer.codecs.dcvc import dcvc_build_dir, dcvc_root

CODER_MODULE = "MLCodec_extensions_cpp"
HEADER_BYTES = 7  # coder, flags, q_index, CRC-32
# which adapter (and DCVC-UF variant) wrote a frame: "R", "U", "S", "L"
CODER_IDS = {"dcvc-rt": 0x52, "dcvc-uf": 0x55, "dcvc-uf-hts": 0x53, "dcvc-uf-htl": 0x4C}
INTRA_FLAG, TWO_CODERS_FLAG = 0x80, 0x40
TWO_CODERS_ABOVE = 1280 * 720  # DCVC-RT's test_video.py: two rANS coders above 720p


@dataclass(frozen=True)
class Generation:
    """One DCVC generation: where its code lives and how it is set up."""

    label: str  # "DCVC-RT"
    alias: str  # the name its ``src`` package is imported under
    relative_dir: str  # its folder inside the DCVC checkout ("" for the root)
    probe: str  # a file that proves the sources are there, relative to its folder

    def folder(self) -> Path:
        return dcvc_root() / self.relative_dir if self.relative_dir else dcvc_root()

    def setup_help(self) -> str:
        return (
            "git submodule update --init third_party/DCVC   # DCVC sources\n"
            "bash tools/build_dcvc.sh                         # DCVC's C++ rANS coder, for real bytes"
        )

    def missing_sources(self) -> str | None:
        probe = self.folder() / self.probe
        if probe.is_file():
            return None
        return (f"{self.label} sources not found ({probe} is missing; $ENHANCER_DCVC_ROOT or "
                f"third_party/DCVC picks the checkout). Set it up with:\n{self.setup_help()}")

    def missing_entropy_coder(self) -> str | None:
        reason = self.missing_sources()
        if reason is not None:
            return reason
        try:
            rans_coder()
        except (ImportError, CodecError) as err:
            return (f"DCVC-RT's C++ rANS coder is not built or does not load ({err}). Build it "
                    f"with:\n{self.setup_help()}")
        return None

    def module(self, name: str) -> Any:
        """Import ``src.<name>`` of this generation (e.g. ``models.image_model``)."""
        reason = self.missing_sources()
        if reason is not None:
            raise CodecError(reason)
        return import_dcvc_module(self.folder() / "src", self.alias, name)


RT = Generation("DCVC-RT", "_dcvc_rt_src", "DCVC-family/DCVC-RT", "src/models/video_model.py")
UF = Generation("DCVC-UF", "_dcvc_uf_src", "", "src/models/video_model_ld.py")


def import_dcvc_module(src_dir: Path, alias: str, name: str) -> Any:
    """Import ``<src_dir>/<name>.py`` as ``<alias>.<name>``: a DCVC ``src`` package under a name
    of its own (its relative imports work under any name). Quiet: DCVC-RT prints a notice when
    its optional CUDA kernels are absent."""
    package = sys.modules.get(alias)
    if package is None:
        spec = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(src_dir)]
        sys.modules[alias] = package
    elif Path(package.__path__[0]) != src_dir:
        raise CodecError(f"{alias} is already imported from {package.__path__[0]}, not {src_dir}: "
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


def load_checkpoint_folder(folder: str | Path, models: dict[str, nn.Module], label: str,
                           readme: str) -> None:
    """Load each ``{filename: model}`` from ``folder``, strictly; name what does not fit."""
    folder = Path(folder)
    names = " and ".join(models)
    if not folder.is_dir():
        raise CodecError(f"{label} checkpoint must be a folder holding {names}, got {str(folder)!r}")
    for filename, model in models.items():
        path = folder / filename
        if not path.is_file():
            raise CodecError(
                f"{label} weights {filename} not found in {str(folder)!r}. Download the official "
                f"checkpoints (links in {readme}) and put {names} in that folder."
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


# --- frame header ----------------------------------------------------------------------------
def pack_frame(name: str, stream: bytes, intra: bool, two_coders: bool, q_index: int) -> bytes:
    flags = (INTRA_FLAG if intra else 0) | (TWO_CODERS_FLAG if two_coders else 0)
    header = bytes([CODER_IDS[name], flags, q_index]) + zlib.crc32(stream).to_bytes(4, "little")
    return header + stream


def unpack_frame(data: bytes, name: str, q_index: int, has_state: bool) -> tuple[bytes, bool, bool]:
    """Check one frame's header against the decoder; return (stream, intra, two_coders)."""
    if len(data) < HEADER_BYTES + 5:  # a rANS stream is at least its 4-byte state
        raise CodecError(f"{name} frame data is truncated: {len(data)} bytes")
    stream = data[HEADER_BYTES:]
    if data[0] != CODER_IDS[name]:
        writer = next((n for n, i in CODER_IDS.items() if i == data[0]), None)
        raise CodecError(
            f"these bytes were not written by {name} (first byte {data[0]:#04x}"
            + (f": {writer}'s" if writer else ", no DCVC-RT/-UF adapter's")
            + "): decode them with the codec that coded them"
        )
    if zlib.crc32(stream) != int.from_bytes(data[3:HEADER_BYTES], "little"):
        raise CodecError(f"{name} frame data is damaged: the CRC-32 of its {len(stream)}-byte "
                         "stream does not match its header")
    flags = data[1]
    if flags & ~(INTRA_FLAG | TWO_CODERS_FLAG) or data[2] != q_index:
        raise CodecError(
            f"these bytes were coded at {name} q_index {data[2]} (flags {flags:#04x}), this codec "
            f"is q_index {q_index}: load the codec at the quality it was coded with"
        )
    intra = bool(flags & INTRA_FLAG)
    if intra == has_state:
        raise CodecError(
            f"these bytes hold {'an I' if intra else 'a P'}-frame but "
            f"{'a reference state was' if has_state else 'no reference state was'} given: decode "
            "frames in order with the same intra period as the encoder"
        )
    return stream, intra, bool(flags & TWO_CODERS_FLAG)


def use_two_coders(height: int, width: int) -> bool:
    return height * width > TWO_CODERS_ABOVE


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
    "RT",
    "UF",
    "Generation",
    "gaussian_likelihood",
    "import_dcvc_module",
    "load_checkpoint_folder",
    "pack_frame",
    "rans_coder",
    "read_state_dict",
    "round_int8_ste",
    "unpack_frame",
    "use_two_coders",
]
