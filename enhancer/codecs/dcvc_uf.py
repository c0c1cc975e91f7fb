"""DCVC-UF, low-delay variant, behind the codec contract (git submodule ``third_party/DCVC``).

"Ultra-Fast Neural Video Compression", CVPR 2026; code and training code at the top level of
microsoft/DCVC (MIT licence). An intra model (DMCI) and three video models: ``ld`` (low delay,
one frame per step, ``video_model_ld.py``) and ``hts`` / ``htl`` (``video_model_ht.py``: a
chunk of 8 frames coded as one latent). The ``ld`` variant is registered as ``dcvc-uf``;
the chunk variants are :class:`~enhancer.codecs.dcvc_uf_chunks.DCVCUFChunks`, which adds to
this adapter only what a chunk changes.

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.codecs.base import CodecOutput
from enhancer.codecs.dcvc_adapter import DcvcAdapter
from enhancer.codecs.dcvc_common import (
    RT,
    UF,
    gaussian_likelihood,
    pad_rans_buffer,
    round_int8_ste,
)
from enhancer.codecs.registry import register_codec

IMAGE_CHECKPOINT = "cvpr2026_image.pth.tar"
VIDEO_CHECKPOINTS = {"ld": "cvpr2026_video_ld.pth.tar", "hts": "cvpr2026_video_hts.pth.tar",
                     "htl": "cvpr2026_video_htl.pth.tar"}
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
               likelihoods: list[Tensor]) -> bytes:
        """z_hat (1, C, h, w) integers; y_parts: (symbols, scales) per mask step, in order;
        likelihoods: of every symbol (room in the coder's buffer, see pad_rans_buffer)."""
        self.coder.reset()
        channels, height, width = z_hat.shape[1:]
        self.coder.encode_z(z_hat.reshape(-1), self.z_groups[estimator], qp * channels,
                            height * width)
        for symbols, scales in y_parts:
            self.gaussian.encode_y(symbols, scales)
        pad_rans_buffer(self.gaussian, likelihoods)
        self.coder.flush()
        return self.coder.get_encoded_stream()

    def set_stream(self, stream: bytes) -> None:
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


@register_codec("dcvc-uf")
class DCVCUF(DcvcAdapter):
    """DCVC-UF, low delay: intra frames by DMCI, P-frames by the ld DMC, explicit state."""

    pad_multiple = 64
    generation = UF
    state_type = UfState
    yuv_offset = OFFSET
    variant = "ld"

    def _build_models(self) -> tuple[nn.Module, nn.Module]:
        intra_model = UF.module("models.image_model").DMCI()
        inter_model = self._video_model()
        for model in (intra_model, inter_model):
            model.process_with_mask = _process_with_mask_int8
        return intra_model, inter_model

    def _video_model(self) -> nn.Module:
        return UF.module("models.video_model_ld").DMC()

    def checkpoint_files(self) -> dict[str, nn.Module]:
        return {IMAGE_CHECKPOINT: self.intra_model,
                VIDEO_CHECKPOINTS[self.variant]: self.inter_model}

    def _build_coder(self) -> None:
        self._coder = _RansCoder({"intra": self.intra_model.bit_estimator_z,
                                  "inter": self.inter_model.bit_estimator_z})

    def _use_two_coders(self, two_coders: bool) -> None:
        self._coder.coder.set_use_two_entropy_coders(two_coders)

    def _q(self, table: Tensor) -> Tensor:
        """One q_index's row of a (64, C) quantisation table, as (1, C, 1, 1)."""
        return table[self.quality:self.quality + 1, :, None, None]

    def _likelihoods(self, estimator: nn.Module, z: Tensor, z_hat: Tensor, y_res: Tensor,
                     y_q: Tensor, scales_hat: Tensor) -> dict[str, Tensor]:
        """Training path's likelihoods: of DCVC-UF's noisy residuals in train mode (its rate
        proxy), of the symbols in eval mode."""
        if self.training:
            z_hat, y_q = self.intra_model.add_noise(z), self.intra_model.add_noise(y_res)
        return {"y": gaussian_likelihood(y_q, scales_hat), "z": self._z_likelihood(estimator, z_hat)}

    def _z_likelihood(self, estimator: nn.Module, z_hat: Tensor) -> Tensor:
        index = torch.tensor([self.quality], device=z_hat.device)
        return estimator.get_prob(z_hat, index).clamp_min(1e-9)

    def _stream(self, estimator: str, z_hat: Tensor, y_q: Tensor, scales_hat: Tensor,
                mask_steps: int) -> bytes:
        """The rANS stream of z_hat and of y's symbols, mask step by mask step (2 or 4)."""
        model = self.intra_model if estimator == "intra" else self.inter_model
        masks = getattr(model, f"get_mask_{mask_steps}x")(*y_q.shape, y_q.device)
        write = getattr(RT.module("models.common_model").CompressionModel,
                        f"single_part_for_writing_{mask_steps}x")
        parts = [(write(y_q * mask), write(scales_hat * mask)) for mask in masks]
        likelihoods = [gaussian_likelihood(y_q, scales_hat),
                       self._z_likelihood(model.bit_estimator_z, z_hat)]
        return self._coder.encode(z_hat, estimator, self.quality, parts, likelihoods)

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
        return CodecOutput(self._from_model(recon), self._latent(y_hat, True), likelihoods, state)

    def _intra_forward(self, frame: Tensor) -> CodecOutput:
        z, z_hat, y_res, y_q, y_hat, scales_hat = self._intra_encode(frame)
        estimator = self.intra_model.bit_estimator_z
        likelihoods = self._likelihoods(estimator, z, z_hat, y_res, y_q, scales_hat)
        return self._intra_output(y_hat, likelihoods)

    def _intra_compress(self, frame: Tensor) -> tuple[bytes, CodecOutput]:
        _, z_hat, _, y_q, y_hat, scales_hat = self._intra_encode(frame)
        stream = self._stream("intra", z_hat, y_q, scales_hat, mask_steps=4)
        return stream, self._intra_output(y_hat, None)

    def _intra_decompress(self, stream: bytes, padded_hw: tuple[int, int]) -> CodecOutput:
        model = self.intra_model
        self._coder.set_stream(stream)
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
        state = self._check_state(state)  # the chunk methods come here without the dispatch
        model = self.inter_model
        if state.memory is None:
            memory = model.feature_adaptor_i(state.ref_feature)
        else:
            memory = model.feature_adaptor_m(state.memory, state.ref_feature)
        return memory, model.feature_extractor(memory), state.frame_index + 1

    inter_mask_steps = 2  # the ld model's y: two checkerboard steps

    def _inter_prior(self, y: Tensor, params: Tensor) -> tuple[Tensor, ...]:
        """(y_res, y_q, y_hat, scales_hat) of the video model's spatial prior."""
        model = self.inter_model
        return model.forward_prior_2x(y, params, model.y_spatial_prior)

    def _decode_inter_y(self, params: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        """The decoder side of :meth:`_inter_prior`: y_hat before its q_dec scaling."""
        model = self.inter_model
        mask_0, mask_1 = model.get_mask_2x(*means.shape, means.device)
        write = RT.module("models.common_model").CompressionModel.single_part_for_writing_2x
        restore = RT.module("layers.cuda_inference").restore_y_2x
        y_hat_0 = restore(self._coder.decode_y(write(scales * mask_0)), means, mask_0)
        means = model.y_spatial_prior(y_hat_0, params)
        return y_hat_0 + restore(self._coder.decode_y(write(scales * mask_1)), means, mask_1)

    def _inter_encode(self, frames: Tensor, state: Any) -> tuple[Any, ...]:
        """One frame (B, 3, H, W) or, for the chunk variants, a chunk (B, 24, H, W)."""
        model = self.inter_model
        memory, ctx, frame_index = self._next_reference(state)
        y = model.encoder(frames, ctx, self._q(model.q_encoder))  # (B, 128|256, H/16, W/16)
        z = model.hyper_encoder(y)
        z_hat = round_int8_ste(z)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        y_res, y_q, y_hat, scales_hat = self._inter_prior(y, params)
        return z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx, frame_index

    def _decode_inter_latent(self, stream: bytes, padded_hw: tuple[int, int],
                             state: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(y_hat, memory, context) of a P-frame's (or chunk's) stream."""
        model = self.inter_model
        self._coder.set_stream(stream)
        memory, ctx, _ = self._next_reference(state)
        z_shape = (model.z_channel, padded_hw[0] // 64, padded_hw[1] // 64)
        z_hat = self._coder.decode_z("inter", self.quality, z_shape, ctx)
        params = model.res_prior_param_decoder(z_hat, memory, self._q(model.q_feature))
        _, q_dec, scales, means = model.separate_prior_video(params)
        return self._decode_inter_y(params, scales, means) * q_dec, memory, ctx

    def _reference_after(self, feature: Tensor, memory: Tensor, frame_index: int) -> UfState:
        """The state after a P-frame (or chunk) whose last frame is ``frame_index``."""
        if frame_index % RESET_INTERVAL == 0:  # reset_feature_memory
            return UfState(self.inter_model.recon_head(feature, for_reset=True), None, frame_index)
        return UfState(feature, memory, frame_index)

    def _inter_output(self, y_hat: Tensor, memory: Tensor, ctx: Tensor, frame_index: int,
                      likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        model = self.inter_model
        recon, feature = model.get_recon_and_feature(y_hat, ctx, self._q(model.q_decoder))
        state = self._reference_after(feature, memory, frame_index)
        return CodecOutput(self._from_model(recon), self._latent(y_hat, False), likelihoods, state)

    def _inter_forward(self, frame: Tensor, state: Any) -> CodecOutput:
        z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx, index = self._inter_encode(
            frame, state)
        estimator = self.inter_model.bit_estimator_z
        likelihoods = self._likelihoods(estimator, z, z_hat, y_res, y_q, scales_hat)
        return self._inter_output(y_hat, memory, ctx, index, likelihoods)

    def _inter_compress(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        _, z_hat, _, y_q, y_hat, scales_hat, memory, ctx, index = self._inter_encode(frame, state)
        stream = self._stream("inter", z_hat, y_q, scales_hat, self.inter_mask_steps)
        return stream, self._inter_output(y_hat, memory, ctx, index, None)

    def _inter_decompress(self, stream: bytes, padded_hw: tuple[int, int],
                          state: Any) -> CodecOutput:
        y_hat, memory, ctx = self._decode_inter_latent(stream, padded_hw, state)
        return self._inter_output(y_hat, memory, ctx, state.frame_index + 1, None)


__all__ = [
    "CHUNK_FRAMES",
    "DCVCUF",
    "IMAGE_CHECKPOINT",
    "VIDEO_CHECKPOINTS",
    "UfState",
]
