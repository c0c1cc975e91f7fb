"""DCVC-FM behind the codec contract (git submodule ``third_party/DCVC``, never copied).

Li, Li, Lu, "Neural Video Compression with Feature Modulation", CVPR 2024.
Code: microsoft/DCVC, folder ``DCVC-family/DCVC-FM`` (MIT licence). Two models:

::

    I (DMCI):  x ──enc──▶ y ──hyperprior + 4-part spatial prior──▶ y_hat ──dec, refine──▶ x_hat
    P (DMC):   (x, ref_frame) ──SpyNet──▶ mv ──mv codec──▶ mv_hat ──warp DPB features──▶ contexts
               (x, contexts) ──contextual enc──▶ y ──▶ y_hat ──contextual dec──▶ x_hat, feature

The decoded picture buffer (DPB: reference frame, feature, ``y_hat``, ``mv_y_hat``)
is the opaque state. Quality is DCVC-FM's ``q_index`` 0..63 (higher = more
bits), used for I and P frames alike, as its test script does; that script's
four rate points are :data:`RATE_POINTS`. As in that script, frames are
replicate-padded on the bottom/right to a multiple of 16, DCVC-FM codes
BT.709 YCbCr 4:4:4 (the adapter converts from and to RGB), the feature
adaptor index follows ``FA_INDEX_MAP`` and the reference feature is dropped
every ``RESET_INTERVAL`` frames (both counted from the last intra frame).

Conditioning latent, 384 channels at 1/16 of the padded frame: the
dequantised ``y_hat`` that DCVC-FM's own decoders see. I-frames fill channels
0..255 with the intra model's ``y_hat``; P-frames fill channels 256..383 with
the video model's contextual ``y_hat``; the other block is zeros, so the
enhancer also sees the frame type.

Likelihoods: DCVC-FM estimates bits per element as
``clamp(-log2(p + 1e-5), 0)``; the adapter returns ``2 ** -bits`` per element
under ``"y"``, ``"z"`` (I and P) and ``"mv_y"``, ``"mv_z"`` (P), so
:func:`~enhancer.codecs.base.bpp_from_likelihoods` gives DCVC-FM's own
estimate. Rounding uses a straight-through estimator (same values, gradients
pass), so the training path can finetune the codec. (DCVC's optional CUDA
warping kernel, ``src/models/extensions``, runs without gradients; the adapter
works with its default grid_sample fallback, which has them.)

Real bytes need DCVC-FM's C++ rANS coder, built out of tree by
``tools/build_dcvc.sh`` into ``build/dcvc/src/models``. Each frame's bytes are
one header byte (bit 7: intra, bits 0-5: q_index), the CRC-32 of the stream
(4 bytes, little endian) and DCVC-FM's rANS stream. The CRC is checked before
the stream reaches DCVC's C++ decoder, which has no bounds checks (an empty or
truncated stream can crash the process).

Locations (environment variables override the defaults):
``ENHANCER_DCVC_ROOT`` the DCVC checkout (default ``<repo>/third_party/DCVC``),
``ENHANCER_DCVC_BUILD`` the built extension (default ``<repo>/build/dcvc``).
Checkpoints: ``checkpoint=`` is a folder holding DCVC-FM's official
``cvpr2024_image.pth.tar`` and ``cvpr2024_video.pth.tar``.

Everything DCVC-FM needs (finding the submodule and its extension, colour, weights,
the adapter) is one module on purpose: it is the one import that works, or skips
with a clear reason, when the optional submodule is absent.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import (
    CodecAdapter,
    CodecError,
    CodecOutput,
    register_codec,
)
from enhancer.data.color import rgb_to_yuv444, yuv444_to_rgb
from enhancer.utils.weights import state_dict_mismatch

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_ENV = "ENHANCER_DCVC_ROOT"
BUILD_ENV = "ENHANCER_DCVC_BUILD"
IMAGE_CHECKPOINT = "cvpr2024_image.pth.tar"
VIDEO_CHECKPOINT = "cvpr2024_video.pth.tar"
RATE_POINTS = (0, 21, 42, 63)  # test_video.py's default: np.linspace(0, 63, 4) rounded
FA_INDEX_MAP = (0, 1, 0, 2, 0, 2, 0, 2)  # feature adaptor per frame index mod 8 (test_helper.py)
RESET_INTERVAL = 32  # drop the DPB feature when frame index % 32 == 1 (test_helper.py)
INTRA_CHANNELS = 256  # DMCI's y_hat
INTER_CHANNELS = 128  # DMC's y_hat
HEADER_BYTES = 5  # flags (intra bit, q_index) + CRC-32 of the rANS stream

SETUP_HELP = (
    "git submodule update --init third_party/DCVC   # DCVC-FM sources\n"
    "bash tools/build_dcvc.sh                         # its C++ rANS coder, for real bytes"
)


# --- locating and importing DCVC-FM ------------------------------------------------------
def dcvc_root() -> Path:
    """The DCVC checkout: ``$ENHANCER_DCVC_ROOT`` or ``<repo>/third_party/DCVC``."""
    return Path(os.environ.get(ROOT_ENV) or REPO_ROOT / "third_party" / "DCVC")


def dcvc_build_dir() -> Path:
    """Where tools/build_dcvc.sh puts the extension: ``$ENHANCER_DCVC_BUILD`` or build/dcvc."""
    return Path(os.environ.get(BUILD_ENV) or REPO_ROOT / "build" / "dcvc")


def dcvc_fm_dir() -> Path:
    return dcvc_root() / "DCVC-family" / "DCVC-FM"


def missing_sources() -> str | None:
    """Why DCVC-FM's Python code cannot be used, or None when it can."""
    model_file = dcvc_fm_dir() / "src" / "models" / "video_model.py"
    if model_file.is_file():
        return None
    return (
        f"DCVC-FM sources not found ({model_file} is missing; ${ROOT_ENV} or "
        f"third_party/DCVC picks the checkout). Set it up with:\n{SETUP_HELP}"
    )


def missing_entropy_coder() -> str | None:
    """Why DCVC-FM's C++ entropy coder cannot be used, or None when it can."""
    reason = missing_sources()
    if reason is not None:
        return reason
    try:
        _import_dcvc("src.models.MLCodec_rans")
        _import_dcvc("src.models.MLCodec_CXX")
    except (ImportError, CodecError) as err:
        return (
            f"DCVC-FM's C++ rANS coder is not built or does not load ({err}); it is looked for in "
            f"{dcvc_build_dir() / 'src' / 'models'} (${BUILD_ENV}). Build it with:\n{SETUP_HELP}"
        )
    return None


def _import_dcvc(module_name: str) -> Any:
    """Import a module of DCVC-FM's ``src`` package (a namespace package over the checkout and
    the build folder, so the built extension is found next to the models without copying)."""
    fm_dir, build_dir = dcvc_fm_dir(), dcvc_build_dir()
    for path in (str(build_dir), str(fm_dir)):  # fm_dir ends up first
        if path not in sys.path:
            sys.path.insert(0, path)
    # block_mc.py prints a notice when its optional CUDA kernel is absent (it falls back to
    # grid_sample); keep the import quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        module = importlib.import_module(module_name)
    source = Path(getattr(module, "__file__", "") or "").resolve()
    if fm_dir.resolve() not in source.parents and build_dir.resolve() not in source.parents:
        raise CodecError(
            f"{module_name!r} was imported from {source}, not from DCVC-FM at {fm_dir}: another "
            "package named 'src' is on sys.path. Remove it or import enhancer.codecs.dcvc first."
        )
    return module


def _dcvc_models() -> SimpleNamespace:
    """DCVC-FM's model classes; raises CodecError with the setup commands when missing."""
    reason = missing_sources()
    if reason is not None:
        raise CodecError(reason)
    return SimpleNamespace(
        DMCI=_import_dcvc("src.models.image_model").DMCI,
        DMC=_import_dcvc("src.models.video_model").DMC,
    )


# --- colour: DCVC-FM codes BT.709 YCbCr 4:4:4 (enhancer.data.color follows DCVC) -----------
def _to_dcvc(rgb: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H, W) BT.709 YCbCr 4:4:4 in [0, 1], DCVC's input."""
    return torch.cat(rgb_to_yuv444(rgb), 1)


def _from_dcvc(ycbcr: Tensor) -> Tensor:
    """DCVC-FM's (B, 3, H, W) YCbCr output -> RGB in [0, 1]."""
    return yuv444_to_rgb(ycbcr[:, :1], ycbcr[:, 1:])


# --- helpers -------------------------------------------------------------------------------
def _round_ste(values: Tensor) -> Tensor:
    """round() with straight-through gradients; its values equal torch.round exactly."""
    return values + (torch.round(values) - values).detach()


def _likelihoods_from_bits(bits: Tensor) -> Tensor:
    """Per-element DCVC bit estimates -> likelihoods with -log2(likelihood) == bits."""
    return torch.exp2(-bits)


def _latent(y_hat: Tensor, intra: bool) -> Tensor:
    """Place an I-frame (256 ch) or P-frame (128 ch) y_hat in the 384-channel latent."""
    batch, _, height, width = y_hat.shape
    zeros = y_hat.new_zeros(batch, INTER_CHANNELS if intra else INTRA_CHANNELS, height, width)
    return torch.cat([y_hat, zeros] if intra else [zeros, y_hat], 1)


def _ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


@dataclass(frozen=True)
class DcvcState:
    """Reference state after a frame: DCVC-FM's DPB (YCbCr frame, features, latents) and the
    frame's index since the last intra frame (0 for the intra frame itself)."""

    dpb: dict[str, Tensor | None]
    frame_index: int


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """An official DCVC-FM checkpoint as a state dict (unwrapped as DCVC's get_state_dict does)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CodecError(f"could not read DCVC-FM checkpoint {str(path)!r}: {err}") from err
    for key in ("state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CodecError(f"DCVC-FM checkpoint {str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_strict(model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model``; name missing / unexpected / mis-shaped keys on failure."""
    state_dict = _read_state_dict(path)
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise CodecError(
            f"{str(path)!r} does not fit DCVC-FM's {type(model).__name__}: {problems}"
            + f". Use the official DCVC-FM files {IMAGE_CHECKPOINT} (DMCI) and "
            f"{VIDEO_CHECKPOINT} (DMC)."
        )
    model.load_state_dict(state_dict)


def _mark_coder_stale_after_load(module: DCVCFM, incompatible_keys: Any) -> None:
    module._mark_coder_stale()


# --- the adapter -----------------------------------------------------------------------------
@register_codec("dcvc")
class DCVCFM(CodecAdapter):
    """DCVC-FM: intra frames by DMCI, P-frames by DMC, DPB as the reference state."""

    qualities = tuple(range(64))
    pad_multiple = 16
    latent_channels = INTRA_CHANNELS + INTER_CHANNELS
    latent_stride = 16
    is_video = True

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        models = _dcvc_models()
        self.intra_model = models.DMCI(inplace=False)
        self.inter_model = models.DMC(inplace=False)
        for model in (self.intra_model, self.inter_model):
            model.quant = _round_ste  # DCVC quantises with self.quant(); same values, gradients
        if checkpoint is None:
            warnings.warn(
                f"codec 'dcvc' q{quality} has random weights (no checkpoint folder given): fine "
                "for tests, meaningless for evaluation",
                stacklevel=2,
            )
        else:
            self._load_weights(Path(checkpoint))
        self._coder_ready = False
        # CDF tables follow the weights: rebuild them after training or loading new weights.
        self.register_load_state_dict_post_hook(_mark_coder_stale_after_load)

    def _load_weights(self, folder: Path) -> None:
        if not folder.is_dir():
            raise CodecError(
                f"DCVC-FM checkpoint must be a folder holding {IMAGE_CHECKPOINT} and "
                f"{VIDEO_CHECKPOINT}, got {str(folder)!r}"
            )
        for model, filename in ((self.intra_model, IMAGE_CHECKPOINT),
                                (self.inter_model, VIDEO_CHECKPOINT)):
            path = folder / filename
            if not path.is_file():
                raise CodecError(
                    f"DCVC-FM weights {filename} not found in {str(folder)!r}. Download the "
                    "official checkpoints (links in "
                    "third_party/DCVC/DCVC-family/DCVC-FM/README.md) "
                    f"and put {IMAGE_CHECKPOINT} and {VIDEO_CHECKPOINT} in that folder."
                )
            _load_strict(model, path)

    # --- entropy coder ------------------------------------------------------------------------
    def _mark_coder_stale(self) -> None:
        self._coder_ready = False

    def train(self, mode: bool = True) -> DCVCFM:
        if mode:
            self._mark_coder_stale()
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> DCVCFM:
        for model in (self.intra_model, self.inter_model):
            model.masks = {}  # DCVC caches masks per size, not per device
        return super()._apply(fn, recurse)

    def update(self) -> None:
        """Rebuild DCVC-FM's rANS CDF tables from the current weights (needs the extension)."""
        reason = missing_entropy_coder()
        if reason is not None:
            raise CodecError(reason)
        self.check_finite_weights()  # NaN tables would hang the rANS coder
        with torch.no_grad():
            self.intra_model.update(force=True)
            self.inter_model.update(force=True)
        self._coder_ready = True

    def _ensure_coder(self) -> None:
        if not self._coder_ready:
            self.update()

    # --- state ------------------------------------------------------------------------------
    def _next_reference(self, state: Any) -> tuple[dict[str, Tensor | None], int, int]:
        """(dpb to predict from, this frame's index since intra, feature adaptor index)."""
        if not isinstance(state, DcvcState):
            raise CodecError(
                f"dcvc expects the state returned with the previous frame (DcvcState) or None, "
                f"got {type(state).__name__}"
            )
        frame_index = state.frame_index + 1
        dpb = dict(state.dpb)  # never modify the caller's state
        if frame_index % RESET_INTERVAL == 1:
            dpb["ref_feature"] = None
        return dpb, frame_index, FA_INDEX_MAP[frame_index % len(FA_INDEX_MAP)]

    @staticmethod
    def _intra_state(decoded_ycbcr: Tensor) -> DcvcState:
        dpb = {"ref_frame": decoded_ycbcr, "ref_feature": None, "ref_mv_feature": None,
               "ref_y": None, "ref_mv_y": None}
        return DcvcState(dpb, 0)

    def _output(self, dpb_or_frame: Any, y_hat: Tensor, intra: bool, frame_index: int,
                likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        if intra:
            state = self._intra_state(dpb_or_frame)
        else:
            state = DcvcState(dpb_or_frame, frame_index)
        decoded = _from_dcvc(state.dpb["ref_frame"])
        return CodecOutput(decoded, _latent(y_hat, intra), likelihoods, state)

    # --- I-frames: DMCI (image_model.py), returning y_hat as well ------------------------------
    def _intra_q(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        model = self.intra_model
        index = model.get_index_tensor(self.quality, device)
        q_enc = torch.index_select(model.q_scale_enc, 0, index)
        q_dec = torch.index_select(model.q_scale_dec, 0, index)
        return index, q_enc, q_dec

    def _intra_priors(self, z_hat: Tensor, slice_shape: Any) -> Tensor:
        model = self.intra_model
        params = model.y_prior_fusion(model.hyper_dec(z_hat))
        return model.slice_to_y(params, slice_shape)

    def _intra_spatial_prior(self) -> tuple[nn.Module, ...]:
        model = self.intra_model
        return (model.y_spatial_prior_adaptor_1, model.y_spatial_prior_adaptor_2,
                model.y_spatial_prior_adaptor_3, model.y_spatial_prior)

    def _intra_forward(self, frame: Tensor) -> CodecOutput:
        model = self.intra_model
        index, q_enc, q_dec = self._intra_q(frame.device)
        y = model.enc(frame, q_enc)  # (B, 256, H/16, W/16)
        y_pad, slice_shape = model.pad_for_y(y)
        z_hat = model.quant(model.hyper_enc(y_pad))  # (B, 128, H/64, W/64)
        params = self._intra_priors(z_hat, slice_shape)
        _, y_q, y_hat, scales_hat = model.forward_four_part_prior(
            y, params, *self._intra_spatial_prior(),
            y_spatial_prior_reduction=model.y_spatial_prior_reduction)
        decoded = model.refine(model.dec(y_hat, q_dec)).clamp(0, 1)  # (B, 3, H, W) YCbCr
        likelihoods = {
            "y": _likelihoods_from_bits(model.get_y_gaussian_bits(y_q, scales_hat)),
            "z": _likelihoods_from_bits(model.get_z_bits(z_hat, model.bit_estimator_z, index)),
        }
        return self._output(decoded, y_hat, True, 0, likelihoods)

    def _intra_compress(self, frame: Tensor) -> tuple[bytes, CodecOutput]:
        model = self.intra_model
        _, q_enc, q_dec = self._intra_q(frame.device)
        y = model.enc(frame, q_enc)
        y_pad, slice_shape = model.pad_for_y(y)
        z_hat = torch.round(model.hyper_enc(y_pad))
        params = self._intra_priors(z_hat, slice_shape)
        *y_q_and_scales, y_hat = model.compress_four_part_prior(
            y, params, *self._intra_spatial_prior(),
            y_spatial_prior_reduction=model.y_spatial_prior_reduction)
        model.entropy_coder.reset()
        model.bit_estimator_z.encode(z_hat, self.quality)
        for y_q_part, scales_part in zip(y_q_and_scales[:4], y_q_and_scales[4:]):
            model.gaussian_encoder.encode(y_q_part, scales_part)
        model.entropy_coder.flush()
        stream = model.entropy_coder.get_encoded_stream()
        decoded = model.refine(model.dec(y_hat, q_dec)).clamp(0, 1)
        return stream, self._output(decoded, y_hat, True, 0, None)

    def _intra_decompress(self, stream: bytes, padded_hw: tuple[int, int]) -> CodecOutput:
        model = self.intra_model
        device = next(model.parameters()).device
        _, _, q_dec = self._intra_q(device)
        height, width = padded_hw
        model.entropy_coder.set_stream(stream)
        z_hat = model.bit_estimator_z.decode_stream(
            (_ceil_div(height, 64), _ceil_div(width, 64)), torch.float32, device, self.quality)
        slice_shape = model.get_to_y_slice_shape(height // 16, width // 16)
        params = self._intra_priors(z_hat, slice_shape)
        y_hat = model.decompress_four_part_prior(
            params, *self._intra_spatial_prior(), model.y_spatial_prior_reduction)
        decoded = model.refine(model.dec(y_hat, q_dec)).clamp(0, 1)
        return self._output(decoded, y_hat, True, 0, None)

    # --- P-frames: DMC (video_model.py) -----------------------------------------------------------
    def _mv_spatial_prior(self) -> tuple[nn.Module, ...]:
        model = self.inter_model
        return (model.mv_y_spatial_prior_adaptor_1, model.mv_y_spatial_prior_adaptor_2,
                model.mv_y_spatial_prior_adaptor_3, model.mv_y_spatial_prior)

    def _y_spatial_prior(self) -> tuple[nn.Module, ...]:
        model = self.inter_model
        return (model.y_spatial_prior_adaptor_1, model.y_spatial_prior_adaptor_2,
                model.y_spatial_prior_adaptor_3, model.y_spatial_prior)

    def _inter_forward(self, frame: Tensor, state: Any) -> CodecOutput:
        """DMC.forward_one_frame, returning per-element likelihoods instead of a bit total."""
        model = self.inter_model
        dpb, frame_index, fa_idx = self._next_reference(state)
        mv_y_q_enc, mv_y_q_dec, y_q_enc, y_q_dec = model.get_all_q(self.quality)
        index = model.get_index_tensor(0, frame.device)

        # motion latent (B, 64, H/16, W/16), then the contextual latent (B, 128, H/16, W/16)
        mv_y = model.motion_estimation_and_mv_encoding(frame, dpb, mv_y_q_enc)
        mv_y_pad, slice_shape = model.pad_for_y(mv_y)
        mv_z_hat = model.quant(model.mv_hyper_prior_encoder(mv_y_pad))
        mv_params = model.mv_prior_param_decoder(mv_z_hat, dpb, slice_shape)
        _, mv_y_q, mv_y_hat, mv_scales_hat = model.forward_four_part_prior(
            mv_y, mv_params, *self._mv_spatial_prior())
        mv_hat, mv_feature = model.mv_decoder(mv_y_hat, mv_y_q_dec)
        context1, context2, context3, _ = model.motion_compensation(dpb, mv_hat, fa_idx)

        y = model.contextual_encoder(frame, context1, context2, context3, y_q_enc)
        y_pad, slice_shape = model.pad_for_y(y)
        z_hat = model.quant(model.contextual_hyper_prior_encoder(y_pad))
        params = model.contextual_prior_param_decoder(z_hat, dpb, context3, slice_shape)
        _, y_q, y_hat, scales_hat = model.forward_four_part_prior(
            y, params, *self._y_spatial_prior())
        decoded, feature = model.get_recon_and_feature(y_hat, context1, context2, context3, y_q_dec)

        new_dpb = {"ref_frame": decoded, "ref_feature": feature, "ref_mv_feature": mv_feature,
                   "ref_y": y_hat, "ref_mv_y": mv_y_hat}
        likelihoods = {
            "y": _likelihoods_from_bits(model.get_y_laplace_bits(y_q, scales_hat)),
            "z": _likelihoods_from_bits(model.get_z_bits(z_hat, model.bit_estimator_z, index)),
            "mv_y": _likelihoods_from_bits(model.get_y_laplace_bits(mv_y_q, mv_scales_hat)),
            "mv_z": _likelihoods_from_bits(
                model.get_z_bits(mv_z_hat, model.bit_estimator_z_mv, index)),
        }
        return self._output(new_dpb, y_hat, False, frame_index, likelihoods)

    def _inter_compress(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        dpb, frame_index, fa_idx = self._next_reference(state)
        encoded = self.inter_model.compress(frame, dpb, self.quality, fa_idx)
        new_dpb = encoded["dpb"]
        return encoded["bit_stream"], self._output(new_dpb, new_dpb["ref_y"], False, frame_index,
                                                   None)

    def _inter_decompress(
        self, stream: bytes, padded_hw: tuple[int, int], state: Any
    ) -> CodecOutput:
        """DMC.decompress without its CUDA timing calls (it fails on CPU)."""
        model = self.inter_model
        dpb, frame_index, fa_idx = self._next_reference(state)
        device = next(model.parameters()).device
        _, mv_y_q_dec, _, y_q_dec = model.get_all_q(self.quality)
        height, width = padded_hw
        z_size = (_ceil_div(height, 64), _ceil_div(width, 64))
        slice_shape = model.get_to_y_slice_shape(height // 16, width // 16)

        model.entropy_coder.set_stream(stream)
        mv_z_hat = model.bit_estimator_z_mv.decode_stream(z_size, torch.float32, device, 0)
        z_hat = model.bit_estimator_z.decode_stream(z_size, torch.float32, device, 0)
        mv_params = model.mv_prior_param_decoder(mv_z_hat, dpb, slice_shape)
        mv_y_hat = model.decompress_four_part_prior(mv_params, *self._mv_spatial_prior())
        mv_hat, mv_feature = model.mv_decoder(mv_y_hat, mv_y_q_dec)
        context1, context2, context3, _ = model.motion_compensation(dpb, mv_hat, fa_idx)
        params = model.contextual_prior_param_decoder(z_hat, dpb, context3, slice_shape)
        y_hat = model.decompress_four_part_prior(params, *self._y_spatial_prior())
        decoded, feature = model.get_recon_and_feature(y_hat, context1, context2, context3, y_q_dec)

        new_dpb = {"ref_frame": decoded, "ref_feature": feature, "ref_mv_feature": mv_feature,
                   "ref_y": y_hat, "ref_mv_y": mv_y_hat}
        return self._output(new_dpb, y_hat, False, frame_index, None)

    # --- contract hooks ---------------------------------------------------------------------------
    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        frame = _to_dcvc(frame)
        if state is None:
            return self._intra_forward(frame)
        return self._inter_forward(frame, state)

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        self._ensure_coder()
        frame = _to_dcvc(frame)
        if state is None:
            stream, out = self._intra_compress(frame)
        else:
            stream, out = self._inter_compress(frame, state)
        flags = (0x80 if state is None else 0) | self.quality
        return bytes([flags]) + zlib.crc32(stream).to_bytes(4, "little") + stream, out

    def _decompress_padded(
        self, data: bytes, padded_hw: tuple[int, int], state: Any
    ) -> CodecOutput:
        self._ensure_coder()
        if len(data) < HEADER_BYTES + 5:  # DCVC's stream: a flag byte and the 4-byte rANS state
            raise CodecError(f"dcvc frame data is truncated: {len(data)} bytes")
        stream = data[HEADER_BYTES:]
        if zlib.crc32(stream) != int.from_bytes(data[1:HEADER_BYTES], "little"):
            raise CodecError(
                f"dcvc frame data is damaged: the CRC-32 of its {len(stream)}-byte stream does "
                "not match its header"
            )
        intra, quality = bool(data[0] & 0x80), data[0] & 0x3F
        if data[0] & 0x40 or quality != self.quality:
            raise CodecError(
                f"these bytes were coded at dcvc q_index {quality} (header byte {data[0]:#04x}), "
                f"this codec is q_index {self.quality}: load the codec at the quality it was "
                "coded with"
            )
        if intra != (state is None):
            raise CodecError(
                f"these bytes hold {'an I' if intra else 'a P'}-frame but "
                f"{'a reference state was' if state is not None else 'no reference state was'} "
                "given: decode frames in order with the same intra period as the encoder"
            )
        if intra:
            return self._intra_decompress(stream, padded_hw)
        return self._inter_decompress(stream, padded_hw, state)


__all__ = [
    "DCVCFM",
    "RATE_POINTS",
    "DcvcState",
    "dcvc_build_dir",
    "dcvc_root",
    "missing_entropy_coder",
    "missing_sources",
]
