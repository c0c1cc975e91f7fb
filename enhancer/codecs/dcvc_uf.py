"""DCVC-UF, low-delay variant, behind the codec contract (git submodule ``third_party/DCVC``).

"Ultra-Fast Neural Video Compression", CVPR 2026; code and training code at the top level of
microsoft/DCVC (MIT licence). An intra model (DMCI) and three video models: ``ld`` (low delay,
one frame per step, ``video_model_ld.py``) and ``hts`` / ``htl`` (``video_model_ht.py``: a
chunk of 8 frames coded as one latent). The ``ld`` variant is registered as ``dcvc-uf``;
the chunk variants are :class:`DCVCUFChunks` (chunk methods; not registered, since the
frame-by-frame contract and its tools cannot drive them yet).

::

    I (DMCI):  x ──enc──▶ y ──hyperprior z + 4-part spatial prior──▶ y_hat ──dec──▶ x_hat
    P (DMC, ld): (memory, ref feature) ──adaptor──▶ memory ──extractor──▶ ctx
               (x, ctx) ──enc──▶ y ──z + temporal prior (memory) + 2-part prior──▶ y_hat
               (y_hat, ctx) ──dec──▶ feature ──recon head──▶ x_hat

The reference state (:class:`UfState`) is the reference feature, the long-term ``memory`` and
the index since the last intra frame, passed explicitly (DCVC-UF keeps them on the module).
As in its ``test_video.py``: one q_index 0..63 for I and P frames, no per-frame shift, and
after every 32nd P-frame (index % 32 == 0) the memory is dropped and the feature replaced by
the recon head's frame-like output (``reset_feature_memory``). DCVC-UF codes BT.709 YCbCr
shifted to [-0.5, 0.5]; the adapter converts from and to RGB and pads frames to a multiple of
64 (its hyper-encoder needs a latent divisible by 4).

Conditioning latent, 384 channels at 1/16 of the padded frame: I-frames fill channels 0..255
with DMCI's ``y_hat``, P-frames channels 256..383 with DMC's ``y_hat`` (as dcvc and dcvc-rt).

Training path: DCVC-UF's own layers and priors (``forward_prior_4x`` / ``_2x``), rounding with
straight-through gradients and, in train mode, its additive-noise rate proxy, so the codec can
be finetuned end to end. Symbols are clamped to DCVC's int8 range on both paths.

Real bytes: DCVC-UF writes its streams only from its CUDA inference proxy, and the Python
binding of its rANS coder returns no decoded symbols; on every device this adapter codes the
same symbols (z with the factorised model's tables, y with DCVC's 128-level Gaussian table)
through DCVC-RT's rANS binding (``tools/build_dcvc.sh``). The bytes are real and decode exactly
to the training path's eval output, but they are not DCVC-UF's own stream format. Checkpoints:
a folder holding ``cvpr2026_image.pth.tar`` and ``cvpr2026_video_ld.pth.tar``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.codecs.base import (
    CodecAdapter,
    CodecError,
    CodecOutput,
    _check_frame,
    register_codec,
)
from enhancer.codecs.dcvc import _from_dcvc, _latent, _to_dcvc
from enhancer.codecs.dcvc_common import (
    RT,
    UF,
    gaussian_likelihood,
    load_checkpoint_folder,
    pack_frame,
    pad_rans_buffer,
    round_int8_ste,
    unpack_frame,
    use_two_coders,
)
from enhancer.data.padding import crop, pad_to_multiple

IMAGE_CHECKPOINT = "cvpr2026_image.pth.tar"
VIDEO_CHECKPOINTS = {"ld": "cvpr2026_video_ld.pth.tar", "hts": "cvpr2026_video_hts.pth.tar",
                     "htl": "cvpr2026_video_htl.pth.tar"}
README = "third_party/DCVC/README.md"
RESET_INTERVAL = 32  # test_video.py's --reset_interval
CHUNK_FRAMES = 8  # video_model_ht.py's g_frame_delay
Z_RANGE = 8  # DCVC-UF's MAX_ENTROPY_CODING_VALUE: z symbols -8..8 get a table entry
OFFSET = 0.5  # DCVC-UF codes YCbCr - 0.5


@dataclass(frozen=True)
class UfState:
    """Reference after a frame: the feature the next P-frame adapts (after an intra frame or a
    reset, the 8x8-unshuffled frame, 192 ch; else DMC's decoder feature, 256 ch, at 1/8), the
    long-term memory (None after intra or reset) and the index since the last intra frame."""

    ref_feature: Tensor
    memory: Tensor | None
    frame_index: int


def _process_with_mask_int8(y: Tensor, scales: Tensor, means: Tensor,
                            mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """DCVC-UF's CompressionModel.process_with_mask with symbols clamped to int8 (the range
    DCVC's coder takes); rounding keeps its straight-through gradient."""
    scales_hat, means_hat = scales * mask, means * mask
    y_res = (y - means_hat) * mask
    y_q = round_int8_ste(y_res)
    return y_res, y_q, y_q + means_hat, scales_hat


class _RansCoder:
    """DCVC's rANS coder (DCVC-RT's binding) with the tables a DCVC-UF model pair needs: DCVC's
    Gaussian table for y and one factorised table per (q_index, channel) of each z estimator."""

    def __init__(self, estimators: dict[str, nn.Module]):
        entropy_models = RT.module("models.entropy_models")
        self.coder = entropy_models.EntropyCoder()
        self.gaussian = entropy_models.GaussianEncoder()
        self.gaussian.update(self.coder)
        self.z_groups = {name: self._add_z_table(entropy_models.EntropyCoder, estimator)
                         for name, estimator in estimators.items()}

    def _add_z_table(self, entropy_coder_class: Any, estimator: nn.Module) -> int:
        length = 2 * Z_RANGE + 1
        weight = estimator.h
        index = torch.arange(estimator.qp_num, device=weight.device)
        samples = torch.arange(-Z_RANGE, Z_RANGE + 1, device=weight.device,
                               dtype=torch.float32).view(1, 1, 1, -1)
        lower = estimator(samples - 0.5, index)  # (qp_num, channel, 1, length) cumulative
        upper = estimator(samples + 0.5, index)
        pmf = (upper - lower)[:, :, 0].reshape(-1, length).float().cpu()
        tail_mass = (lower[:, :, 0, :1] + 1.0 - upper[:, :, 0, -1:]).reshape(-1, 1).float().cpu()
        lengths = torch.full((pmf.shape[0],), length, dtype=torch.int32)
        cdf = entropy_coder_class.pmf_to_cdf(pmf, tail_mass, lengths, length)
        offsets = np.full(pmf.shape[0], -Z_RANGE, dtype=np.int32)
        return self.coder.add_cdf(cdf.numpy(), (lengths + 2).numpy(), offsets)

    def encode(self, z_hat: Tensor, estimator: str, qp: int, y_parts: list[tuple[Tensor, Tensor]],
               two_coders: bool, likelihoods: list[Tensor]) -> bytes:
        """z_hat (1, C, h, w) integers; y_parts: (symbols, scales) per mask step, in order;
        likelihoods: of every symbol (room in the coder's buffer, see pad_rans_buffer)."""
        self.coder.set_use_two_entropy_coders(two_coders)
        self.coder.reset()
        channels, height, width = z_hat.shape[1:]
        self.coder.encode_z(z_hat.reshape(-1), self.z_groups[estimator], qp * channels,
                            height * width)
        for symbols, scales in y_parts:
            self.gaussian.encode_y(symbols, scales)
        pad_rans_buffer(self.gaussian, likelihoods)
        self.coder.flush()
        return self.coder.get_encoded_stream()

    def start_decoding(self, stream: bytes, two_coders: bool) -> None:
        self.coder.set_use_two_entropy_coders(two_coders)
        self.coder.set_stream(stream)

    def decode_z(self, estimator: str, qp: int, shape: tuple[int, int, int],
                 like: Tensor) -> Tensor:
        channels, height, width = shape
        self.coder.decode_z(channels * height * width, self.z_groups[estimator], qp * channels,
                            height * width)
        z_hat = self.coder.get_decoded_tensor(like.device, like.dtype)
        return z_hat.reshape(1, channels, height, width)

    def decode_y(self, scales: Tensor) -> Tensor:
        return self.gaussian.decode_and_get_y(scales, scales.dtype, scales.device)


def _mark_coder_stale_after_load(module: DCVCUF, incompatible_keys: Any) -> None:
    module._coder = None


@register_codec("dcvc-uf")
class DCVCUF(CodecAdapter):
    """DCVC-UF, low delay: intra frames by DMCI, P-frames by the ld DMC, explicit state."""

    qualities = tuple(range(64))
    pad_multiple = 64
    latent_channels = 384
    latent_stride = 16
    is_video = True
    variant = "ld"

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        self.intra_model = UF.module("models.image_model").DMCI()
        self.inter_model = self._video_model()
        for model in (self.intra_model, self.inter_model):
            model.process_with_mask = _process_with_mask_int8
        if checkpoint is None:
            warnings.warn(
                f"codec 'dcvc-uf' q{quality} has random weights (no checkpoint folder given): "
                "fine for tests, meaningless for evaluation", stacklevel=2)
        else:
            load_checkpoint_folder(checkpoint, {
                IMAGE_CHECKPOINT: self.intra_model,
                VIDEO_CHECKPOINTS[self.variant]: self.inter_model}, "DCVC-UF", README)
        self._coder: _RansCoder | None = None
        self.register_load_state_dict_post_hook(_mark_coder_stale_after_load)

    def _video_model(self) -> nn.Module:
        return UF.module("models.video_model_ld").DMC()

    @property
    def stream_label(self) -> str:
        """Who wrote a frame's bytes (its header's coder byte): this variant only decodes its own."""
        return self.name

    def _latent(self, y_hat: Tensor, intra: bool) -> Tensor:
        """Place an I-frame (256 ch) or P-frame y_hat in the ``latent_channels`` latent."""
        if self.latent_channels == 384:
            return _latent(y_hat, intra)
        batch, channels, height, width = y_hat.shape
        zeros = y_hat.new_zeros(batch, self.latent_channels - channels, height, width)
        return torch.cat([y_hat, zeros] if intra else [zeros, y_hat], 1)

    # --- entropy coder -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> DCVCUF:
        if mode:
            self._coder = None
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> DCVCUF:
        for model in (self.intra_model, self.inter_model):
            model.masks = {}  # DCVC-UF caches masks per size, not per device
        self._coder = None
        return super()._apply(fn, recurse)

    def update(self) -> None:
        """Build the rANS tables from the current weights (needs DCVC-RT's built coder)."""
        reason = UF.missing_entropy_coder()
        if reason is not None:
            raise CodecError(reason)
        self.check_finite_weights()  # NaN tables would hang the rANS coder
        with torch.no_grad():
            self._coder = _RansCoder({"intra": self.intra_model.bit_estimator_z,
                                      "inter": self.inter_model.bit_estimator_z})

    def _ensure_coder(self) -> _RansCoder:
        if self._coder is None:
            self.update()
        return self._coder

    def _q(self, table: Tensor) -> Tensor:
        """One q_index's row of a (64, C) quantisation table, as (1, C, 1, 1)."""
        return table[self.quality:self.quality + 1, :, None, None]

    def _bits_inputs(self, residual: Tensor, symbols: Tensor) -> Tensor:
        """What the rate is measured on: DCVC-UF's noisy residual in train mode, else symbols."""
        return self.intra_model.add_noise(residual) if self.training else symbols

    def _z_likelihood(self, estimator: nn.Module, z: Tensor, z_hat: Tensor) -> Tensor:
        index = torch.tensor([self.quality], device=z.device)
        return estimator.get_prob(self._bits_inputs(z, z_hat), index).clamp_min(1e-9)

    # --- I-frames: DMCI.forward_one_frame (image_model.py), returning y_hat and symbols ------
    def _intra_params(self, z_hat: Tensor, y_hw: tuple[int, int]) -> Tensor:
        model = self.intra_model
        params = model.y_prior_fusion(model.hyper_dec(z_hat))
        return params[:, :, :y_hw[0], :y_hw[1]]

    def _intra_encode(self, frame: Tensor) -> tuple[Tensor, ...]:
        model = self.intra_model
        y = model.enc(frame, self._q(model.q_scale_enc))  # (B, 256, H/16, W/16)
        z = model.hyper_enc(y)  # (B, 128, H/64, W/64)
        z_hat = round_int8_ste(z)
        params = self._intra_params(z_hat, y.shape[-2:])
        y_res, y_q, y_hat, scales_hat = model.forward_prior_4x(
            y, self._q(model.q_scale_y_enc), self._q(model.q_scale_y_dec), params,
            model.y_spatial_prior_reduction, model.y_spatial_prior_adaptor_1,
            model.y_spatial_prior_adaptor_2, model.y_spatial_prior_adaptor_3,
            model.y_spatial_prior)
        return z, z_hat, y_res, y_q, y_hat, scales_hat

    def _intra_output(self, y_hat: Tensor, likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        model = self.intra_model
        recon = model.dec(y_hat, self._q(model.q_scale_dec))  # (B, 3, H, W) YCbCr - 0.5
        state = UfState(F.pixel_unshuffle(recon, 8), None, 0)
        decoded = _from_dcvc((recon + OFFSET).clamp(0, 1))
        return CodecOutput(decoded, self._latent(y_hat, True), likelihoods, state)

    def _intra_forward(self, frame: Tensor) -> CodecOutput:
        model = self.intra_model
        z, z_hat, y_res, y_q, y_hat, scales_hat = self._intra_encode(frame)
        likelihoods = {
            "y": gaussian_likelihood(self._bits_inputs(y_res, y_q), scales_hat),
            "z": self._z_likelihood(model.bit_estimator_z, z, z_hat),
        }
        return self._intra_output(y_hat, likelihoods)

    def _intra_compress(self, frame: Tensor, two_coders: bool) -> tuple[bytes, CodecOutput]:
        model = self.intra_model
        _, z_hat, _, y_q, y_hat, scales_hat = self._intra_encode(frame)
        masks = model.get_mask_4x(*y_q.shape, y_q.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_4x
        parts = [(write(y_q * mask), write(scales_hat * mask)) for mask in masks]
        likelihoods = [gaussian_likelihood(y_q, scales_hat),
                       self._z_likelihood(model.bit_estimator_z, z_hat, z_hat)]
        stream = self._coder.encode(z_hat, "intra", self.quality, parts, two_coders, likelihoods)
        return stream, self._intra_output(y_hat, None)

    def _intra_decompress(self, padded_hw: tuple[int, int]) -> CodecOutput:
        model = self.intra_model
        weight = model.q_scale_dec
        z_shape = (model.z_channel, padded_hw[0] // 64, padded_hw[1] // 64)
        z_hat = self._coder.decode_z("intra", self.quality, z_shape, weight)
        params = self._intra_params(z_hat, (padded_hw[0] // 16, padded_hw[1] // 16))
        scales, means = model.separate_prior_image(params)
        y_hat = self._decode_prior_4x(model, params, scales, means, has_scales=True)
        return self._intra_output(y_hat * self._q(model.q_scale_y_dec), None)

    def _decode_prior_4x(self, model: nn.Module, params: Tensor, scales: Tensor, means: Tensor,
                         has_scales: bool) -> Tensor:
        """The decoder side of DCVC-UF's forward_prior_4x: y_hat before its q_dec scaling.

        Four checkerboard steps; after each the spatial prior refines the means (and, when
        ``has_scales``, the scales) of the next from what is decoded so far."""
        common_params = model.y_spatial_prior_reduction(params)
        masks = model.get_mask_4x(*means.shape, means.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_4x
        restore = RT.module("layers.cuda_inference").restore_y_4x
        adaptors = (model.y_spatial_prior_adaptor_1, model.y_spatial_prior_adaptor_2,
                    model.y_spatial_prior_adaptor_3)
        y_hat_so_far = None
        for step, mask in enumerate(masks):
            symbols = self._coder.decode_y(write(scales * mask))
            y_hat_step = restore(symbols, means, mask)
            y_hat_so_far = y_hat_step if y_hat_so_far is None else y_hat_so_far + y_hat_step
            if step == len(adaptors):
                break
            if has_scales:
                params_step = torch.cat((y_hat_so_far, common_params), dim=1)
                scales, means = model.y_spatial_prior(adaptors[step](params_step)).chunk(2, 1)
            else:
                means = model.y_spatial_prior(adaptors[step](y_hat_so_far, common_params))
        return y_hat_so_far

    # --- P-frames: the ld DMC's forward_one_frame (video_model_ld.py), state passed explicitly -
    def _next_reference(self, state: Any) -> tuple[Tensor, Tensor, int]:
        """(memory after the adaptor, context for the coder, this frame's index since intra)."""
        if not isinstance(state, UfState):
            raise CodecError(f"dcvc-uf expects the state returned with the previous frame "
                             f"(UfState) or None, got {type(state).__name__}")
        model = self.inter_model
        if state.memory is None:
            memory = model.feature_adaptor_i(state.ref_feature)
        else:
            memory = model.feature_adaptor_m(state.memory, state.ref_feature)
        return memory, model.feature_extractor(memory), state.frame_index + 1

    def _inter_encode(self, frame: Tensor, state: Any) -> tuple[Any, ...]:
        model = self.inter_model
        memory, ctx, frame_index = self._next_reference(state)
        y = model.encoder(frame, ctx, self._q(model.q_encoder))  # (B, 128, H/16, W/16)
        z = model.hyper_encoder(y)
        z_hat = round_int8_ste(z)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        y_res, y_q, y_hat, scales_hat = model.forward_prior_2x(y, params, model.y_spatial_prior)
        return z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx, frame_index

    def _inter_output(self, y_hat: Tensor, memory: Tensor, ctx: Tensor, frame_index: int,
                      likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        model = self.inter_model
        recon, feature = model.get_recon_and_feature(y_hat, ctx, self._q(model.q_decoder))
        if frame_index % RESET_INTERVAL == 0:  # reset_feature_memory
            state = UfState(model.recon_head(feature, for_reset=True), None, frame_index)
        else:
            state = UfState(feature, memory, frame_index)
        decoded = _from_dcvc((recon + OFFSET).clamp(0, 1))
        return CodecOutput(decoded, self._latent(y_hat, False), likelihoods, state)

    def _inter_forward(self, frame: Tensor, state: Any) -> CodecOutput:
        z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx, index = self._inter_encode(
            frame, state)
        likelihoods = {
            "y": gaussian_likelihood(self._bits_inputs(y_res, y_q), scales_hat),
            "z": self._z_likelihood(self.inter_model.bit_estimator_z, z, z_hat),
        }
        return self._inter_output(y_hat, memory, ctx, index, likelihoods)

    def _inter_compress(self, frame: Tensor, state: Any,
                        two_coders: bool) -> tuple[bytes, CodecOutput]:
        model = self.inter_model
        _, z_hat, _, y_q, y_hat, scales_hat, memory, ctx, index = self._inter_encode(frame, state)
        masks = model.get_mask_2x(*y_q.shape, y_q.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_2x
        parts = [(write(y_q * mask), write(scales_hat * mask)) for mask in masks]
        likelihoods = [gaussian_likelihood(y_q, scales_hat),
                       self._z_likelihood(model.bit_estimator_z, z_hat, z_hat)]
        stream = self._coder.encode(z_hat, "inter", self.quality, parts, two_coders, likelihoods)
        return stream, self._inter_output(y_hat, memory, ctx, index, None)

    def _inter_decompress(self, padded_hw: tuple[int, int], state: Any) -> CodecOutput:
        model = self.inter_model
        memory, ctx, frame_index = self._next_reference(state)
        z_shape = (model.z_channel, padded_hw[0] // 64, padded_hw[1] // 64)
        z_hat = self._coder.decode_z("inter", self.quality, z_shape, ctx)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        _, q_dec, scales, means = model.separate_prior_video(params)
        mask_0, mask_1 = model.get_mask_2x(*means.shape, means.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_2x
        restore = RT.module("layers.cuda_inference").restore_y_2x
        y_hat_0 = restore(self._coder.decode_y(write(scales * mask_0)), means, mask_0)
        means = model.y_spatial_prior(y_hat_0, params)
        y_hat_1 = restore(self._coder.decode_y(write(scales * mask_1)), means, mask_1)
        y_hat = (y_hat_0 + y_hat_1) * q_dec
        return self._inter_output(y_hat, memory, ctx, frame_index, None)

    # --- contract hooks --------------------------------------------------------------------------
    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        frame = _to_dcvc(frame) - OFFSET
        if state is None:
            return self._intra_forward(frame)
        return self._inter_forward(frame, state)

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        self._ensure_coder()
        two_coders = use_two_coders(*frame.shape[-2:])
        frame = _to_dcvc(frame) - OFFSET
        if state is None:
            stream, out = self._intra_compress(frame, two_coders)
        else:
            stream, out = self._inter_compress(frame, state, two_coders)
        return pack_frame(self.stream_label, stream, state is None, two_coders, self.quality), out

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int],
                           state: Any) -> CodecOutput:
        coder = self._ensure_coder()
        stream, intra, two_coders = unpack_frame(data, self.stream_label, self.quality,
                                                 state is not None)
        coder.start_decoding(stream, two_coders)
        if intra:
            return self._intra_decompress(padded_hw)
        return self._inter_decompress(padded_hw, state)


class DCVCUFChunks(DCVCUF):
    """DCVC-UF's hierarchical variants (``hts``, ``htl``): intra frames one at a time (DMCI),
    P-frames in chunks of :data:`CHUNK_FRAMES` coded as one latent and decoded together.

    Not registered: the frame-by-frame contract (and every tool on it) cannot drive a codec
    whose encoder needs the next 7 frames before it can write the current one. The chunk
    methods below follow the contract otherwise (explicit state, real bytes, decode equal to
    the training path)::

        codec = DCVCUFChunks(quality=21, checkpoint=folder, variant="hts")
        data, out = codec.compress(frame0)                        # intra, as dcvc-uf
        data, outs = codec.compress_chunk(frames[1:9], out.state)  # 8 frames -> 1 stream
        outs = codec.decompress_chunk(data, (H, W), 8, out.state)

    A short last chunk (fewer than 8 frames) is filled by repeating its last frame, as DCVC's
    ``test_video.py`` does; only the real frames are returned, and the decoder is told their
    count. Every frame of a chunk gets the chunk's latent (P block: channels 256..511 of a
    512-channel latent; I-frames fill 0..255) and the state after the whole chunk; the
    likelihoods of a chunk's training path (under each frame's output) are the chunk's.
    """

    latent_channels = 512
    frames_per_chunk = CHUNK_FRAMES

    def __init__(self, quality: int, checkpoint: str | Path | None = None, variant: str = "hts"):
        if variant not in ("hts", "htl"):
            raise CodecError(f"DCVC-UF chunk variant {variant!r} does not exist; choose hts or "
                             "htl (the low-delay ld variant is the codec 'dcvc-uf')")
        self.variant = variant
        super().__init__(quality, checkpoint)

    @property
    def stream_label(self) -> str:
        return f"{self.name}-{self.variant}"

    def _video_model(self) -> nn.Module:
        structure = UF.module("utils.common").ModelStructure(self.variant)
        return UF.module("models.video_model_ht").DMC(model_structure=structure)

    def _inter_encode(self, frame: Tensor, state: Any) -> tuple[Any, ...]:
        raise CodecError(f"dcvc-uf {self.variant} codes P-frames in chunks of {CHUNK_FRAMES}: use "
                         "forward_chunk / compress_chunk / decompress_chunk")

    _inter_decompress = _inter_encode  # type: ignore[assignment]

    # --- chunks ---------------------------------------------------------------------------------
    def _chunk_input(self, frames: list[Tensor]) -> tuple[Tensor, int, tuple[int, int]]:
        """(B, 3 * 8, H', W') padded YCbCr - 0.5 of the chunk, its real frame count, (H, W)."""
        count = len(frames)
        if not 1 <= count <= CHUNK_FRAMES:
            raise CodecError(f"a dcvc-uf {self.variant} chunk holds 1 to {CHUNK_FRAMES} frames, "
                             f"got {count}")
        for frame in frames:
            _check_frame(frame)
        size = tuple(frames[0].shape[-2:])
        frames = list(frames) + [frames[-1]] * (CHUNK_FRAMES - count)  # DCVC's padding rule
        padded = [_to_dcvc(pad_to_multiple(frame, self.pad_multiple)) - OFFSET for frame in frames]
        return torch.cat(padded, 1), count, size

    def _chunk_encode(self, chunk: Tensor, state: Any) -> tuple[Any, ...]:
        model = self.inter_model
        memory, ctx, _ = self._next_reference(state)
        y = model.encoder(chunk, ctx, self._q(model.q_encoder))  # (B, 256, H/16, W/16)
        z = model.hyper_encoder(y)
        z_hat = round_int8_ste(z)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        y_res, y_q, y_hat, scales_hat = model.forward_prior_4x(
            y, None, None, params, model.y_spatial_prior_reduction,
            model.y_spatial_prior_adaptor_1, model.y_spatial_prior_adaptor_2,
            model.y_spatial_prior_adaptor_3, model.y_spatial_prior,
            spatial_prior_has_scales=not model.is_hts)
        return z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx

    def _chunk_outputs(self, y_hat: Tensor, memory: Tensor, ctx: Tensor, state: UfState,
                       count: int, size: tuple[int, int],
                       likelihoods: dict[str, Tensor] | None) -> list[CodecOutput]:
        model = self.inter_model
        recons, feature = model.get_recon_and_feature(y_hat, ctx, self._q(model.q_decoder))
        last_index = state.frame_index + CHUNK_FRAMES
        if last_index % RESET_INTERVAL == 0:  # test_video.py: (first + 8) % 32 == 1
            new_state = UfState(model.recon_head(feature, for_reset=True), None, last_index)
        else:
            new_state = UfState(feature, memory, last_index)
        latent = self._latent(y_hat, False)
        return [CodecOutput(crop(_from_dcvc((recon + OFFSET).clamp(0, 1)), *size), latent,
                            likelihoods, new_state) for recon in recons[:count]]

    def forward_chunk(self, frames: list[Tensor], state: UfState) -> list[CodecOutput]:
        """Training path of one chunk of P-frames (1 to 8 frames of the same size)."""
        chunk, count, size = self._chunk_input(frames)
        z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx = self._chunk_encode(chunk, state)
        likelihoods = {
            "y": gaussian_likelihood(self._bits_inputs(y_res, y_q), scales_hat),
            "z": self._z_likelihood(self.inter_model.bit_estimator_z, z, z_hat),
        }
        return self._chunk_outputs(y_hat, memory, ctx, state, count, size, likelihoods)

    @torch.no_grad()
    def compress_chunk(self, frames: list[Tensor],
                       state: UfState) -> tuple[bytes, list[CodecOutput]]:
        """One chunk of (1, 3, H, W) P-frames -> one frame record of bytes, and per frame what
        the decoder will see."""
        coder = self._ensure_coder()
        chunk, count, size = self._chunk_input(frames)
        if chunk.shape[0] != 1:
            raise CodecError(f"compress codes one chunk at a time, got a batch of {chunk.shape[0]}")
        model = self.inter_model
        _, z_hat, _, y_q, y_hat, scales_hat, memory, ctx = self._chunk_encode(chunk, state)
        masks = model.get_mask_4x(*y_q.shape, y_q.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_4x
        parts = [(write(y_q * mask), write(scales_hat * mask)) for mask in masks]
        likelihoods = [gaussian_likelihood(y_q, scales_hat),
                       self._z_likelihood(model.bit_estimator_z, z_hat, z_hat)]
        two_coders = use_two_coders(*chunk.shape[-2:])
        stream = coder.encode(z_hat, "inter", self.quality, parts, two_coders, likelihoods)
        outs = self._chunk_outputs(y_hat, memory, ctx, state, count, size, None)
        return pack_frame(self.stream_label, stream, False, two_coders, self.quality), outs

    @torch.no_grad()
    def decompress_chunk(self, data: bytes, size: tuple[int, int], count: int,
                         state: UfState) -> list[CodecOutput]:
        """The bytes of one chunk of ``count`` real frames of ``size = (H, W)``."""
        if not 1 <= count <= CHUNK_FRAMES:
            raise CodecError(f"a dcvc-uf {self.variant} chunk holds 1 to {CHUNK_FRAMES} frames, "
                             f"got {count}")
        coder = self._ensure_coder()
        stream, _, two_coders = unpack_frame(data, self.stream_label, self.quality,
                                             state is not None)
        coder.start_decoding(stream, two_coders)
        model = self.inter_model
        memory, ctx, _ = self._next_reference(state)
        padded_hw = self.padded_size(size)
        z_shape = (model.z_channel, padded_hw[0] // 64, padded_hw[1] // 64)
        z_hat = coder.decode_z("inter", self.quality, z_shape, ctx)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        _, q_dec, scales, means = model.separate_prior_video(params)
        y_hat = self._decode_prior_4x(model, params, scales, means, not model.is_hts) * q_dec
        return self._chunk_outputs(y_hat, memory, ctx, state, count, size, None)


__all__ = [
    "CHUNK_FRAMES",
    "DCVCUF",
    "IMAGE_CHECKPOINT",
    "VIDEO_CHECKPOINTS",
    "DCVCUFChunks",
    "UfState",
]
