"""DCVC-RT behind the codec contract (git submodule ``third_party/DCVC``, never copied).

Jia, Li, Li, Lu et al., "Towards Practical Real-Time Neural Video Compression", CVPR 2025.
Code: microsoft/DCVC, folder ``DCVC-family/DCVC-RT`` (MIT licence). Two models, both
working on 8x8 pixel-unshuffled YCbCr (BT.709) at one scale:

::

    I (DMCI):  x ──enc──▶ y ──hyperprior z + 4-part spatial prior──▶ y_hat ──dec──▶ x_hat
    P (DMC):   ref feature (or ref frame) ──adaptor, extractor──▶ ctx, ctx_t
               (x, ctx) ──enc──▶ y ──z + temporal prior (ctx_t) + 2-part prior──▶ y_hat
               (y_hat, ctx) ──dec──▶ feature ──recon──▶ x_hat     (no motion: implicit)

The reference state is the decoded frame, the decoder's feature and the frame's index since
the last intra frame (:class:`RtState`), passed explicitly (DCVC-RT keeps it on the module).
Quality is DCVC-RT's q_index 0..63 for I and P frames alike, as its test script does; P-frames
shift it by ``qp_shift[fa_idx]`` (0, 8, 4) with ``fa_idx`` following ``FA_INDEX_MAP`` over
the index since intra, and the reference feature is replaced by the reference frame every
``RESET_INTERVAL`` frames (index % 32 == 1), both as in ``test_video.py``.

Conditioning latent, 384 channels at 1/16 of the padded frame: I-frames fill channels 0..255
with DMCI's ``y_hat``, P-frames channels 256..383 with DMC's ``y_hat``; the rest is zeros
(the layout of the dcvc adapter).

Training path: DCVC-RT ships no training code; the adapter's forward runs the same layers as
its compress (PyTorch path) and returns likelihoods from its Gaussian and factorised models.
Its rounding has no gradient, so DCVC-RT is a frozen codec here. Decoding the bytes gives the
eval-mode training path exactly (same device and dtype).

Real bytes: DCVC-RT's rANS coder (``tools/build_dcvc.sh``); framing, colour, checkpoint
loading and the I/P dispatch in :mod:`enhancer.codecs.dcvc_adapter`. Checkpoints: ``checkpoint=`` is a folder holding
``cvpr2025_image.pth.tar`` and ``cvpr2025_video.pth.tar``. On a CUDA tensor DCVC-RT's layers
use its CUDA kernels when ``inference_extensions_cuda`` is importable, else PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.codecs.base import CodecOutput
from enhancer.codecs.dcvc_adapter import DcvcAdapter
from enhancer.codecs.dcvc_common import RT, gaussian_likelihood, pad_rans_buffer
from enhancer.codecs.registry import register_codec

IMAGE_CHECKPOINT = "cvpr2025_image.pth.tar"
VIDEO_CHECKPOINT = "cvpr2025_video.pth.tar"
FA_INDEX_MAP = (0, 1, 0, 2, 0, 2, 0, 2)  # test_video.py's index_map, over frame index mod 8
RESET_INTERVAL = 32  # test_video.py's --reset_interval


@dataclass(frozen=True)
class RtState:
    """Reference after a frame: decoded YCbCr frame (B, 3, H, W), DMC's decoder feature
    (B, 256, H/8, W/8; None after an intra frame) and the index since the last intra frame."""

    frame: Tensor
    feature: Tensor | None
    frame_index: int


def _parts_likelihood(parts: tuple) -> Tensor:
    """Likelihoods of the symbols DCVC-RT writes: ``parts`` is (symbols of each mask step...,
    their scales...), each step a (B, C/steps, h, w) tensor; together one per element of y."""
    steps = len(parts) // 2
    return torch.cat([gaussian_likelihood(symbols, scales)
                      for symbols, scales in zip(parts[:steps], parts[steps:])], 1)


@register_codec("dcvc-rt")
class DCVCRT(DcvcAdapter):
    """DCVC-RT: intra frames by DMCI, P-frames by DMC, explicit reference state."""

    pad_multiple = 16
    generation = RT
    state_type = RtState

    def _build_models(self) -> tuple[nn.Module, nn.Module]:
        return RT.module("models.image_model").DMCI(), RT.module("models.video_model").DMC()

    def checkpoint_files(self) -> dict[str, nn.Module]:
        return {IMAGE_CHECKPOINT: self.intra_model, VIDEO_CHECKPOINT: self.inter_model}

    def _build_coder(self) -> None:
        self.intra_model.update()
        self.inter_model.update()

    def _use_two_coders(self, two_coders: bool) -> None:
        for model in (self.intra_model, self.inter_model):
            model.set_use_two_entropy_coders(two_coders)

    # --- state ---------------------------------------------------------------------------------
    def _next_reference(self, state: Any) -> tuple[Tensor, int, int]:
        """(reference feature for DMC, this frame's index since intra, its shifted q_index)."""
        model = self.inter_model
        frame_index = state.frame_index + 1
        if state.feature is None or frame_index % RESET_INTERVAL == 1:
            feature = model.feature_adaptor_i(F.pixel_unshuffle(state.frame, 8))
        else:
            feature = model.feature_adaptor_p(state.feature)
        fa_idx = FA_INDEX_MAP[frame_index % len(FA_INDEX_MAP)]
        return feature, frame_index, model.shift_qp(self.quality, fa_idx)

    def _inter_q(self, qp: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model = self.inter_model
        return (model.q_encoder[qp:qp + 1], model.q_decoder[qp:qp + 1],
                model.q_feature[qp:qp + 1], model.q_recon[qp:qp + 1])

    def _intra_q(self) -> tuple[Tensor, Tensor]:
        model, qp = self.intra_model, self.quality
        return model.q_scale_enc[qp:qp + 1], model.q_scale_dec[qp:qp + 1]

    @staticmethod
    def _z_likelihood(estimator: nn.Module, z_hat: Tensor, qp: int) -> Tensor:
        index = torch.tensor([qp], device=z_hat.device, dtype=torch.int32)
        return (estimator(z_hat + 0.5, index) - estimator(z_hat - 0.5, index)).clamp_min(1e-9)

    # --- I-frames: DMCI.compress / decompress (image_model.py) without its CUDA stream calls ---
    def _intra_encode(self, frame: Tensor) -> tuple[tuple, Tensor, Tensor, Tensor]:
        """(symbol parts, z_hat, z_hat as int8, y_hat) of DMCI.compress."""
        model = self.intra_model
        q_enc, _ = self._intra_q()
        y = model.enc(frame, q_enc)  # (B, 256, H/16, W/16)
        z = model.hyper_enc(model.pad_for_y(y))  # (B, 128, H/64, W/64)
        z_hat, z_int8 = RT.module("layers.cuda_inference").round_and_to_int8(z)
        params = self._intra_params(z_hat, y.shape[-2:])
        *parts, y_hat = model.compress_prior_4x(
            y, params, model.y_spatial_prior_reduction, model.y_spatial_prior_adaptor_1,
            model.y_spatial_prior_adaptor_2, model.y_spatial_prior_adaptor_3,
            model.y_spatial_prior)
        return tuple(parts), z_hat, z_int8, y_hat

    def _intra_params(self, z_hat: Tensor, y_hw: tuple[int, int]) -> Tensor:
        model = self.intra_model
        params = model.y_prior_fusion(model.hyper_dec(z_hat))
        return params[:, :, :y_hw[0], :y_hw[1]].contiguous()

    def _intra_output(self, y_hat: Tensor, likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        _, q_dec = self._intra_q()
        decoded = self.intra_model.dec(y_hat, q_dec).clamp(0, 1)  # (B, 3, H, W) YCbCr
        state = RtState(decoded, None, 0)
        latent = self._latent(y_hat, True)
        return CodecOutput(self._from_model(decoded), latent, likelihoods, state)

    def _intra_forward(self, frame: Tensor) -> CodecOutput:
        parts, z_hat, _, y_hat = self._intra_encode(frame)
        likelihoods = {
            "y": _parts_likelihood(parts),
            "z": self._z_likelihood(self.intra_model.bit_estimator_z, z_hat, self.quality),
        }
        return self._intra_output(y_hat, likelihoods)

    def _intra_compress(self, frame: Tensor) -> tuple[bytes, CodecOutput]:
        model = self.intra_model
        parts, z_hat, z_int8, y_hat = self._intra_encode(frame)
        likelihoods = [_parts_likelihood(parts),
                       self._z_likelihood(model.bit_estimator_z, z_hat, self.quality)]
        model.entropy_coder.reset()
        model.bit_estimator_z.encode_z(z_int8, self.quality)
        for symbols, scales in zip(parts[:4], parts[4:]):
            model.gaussian_encoder.encode_y(symbols, scales)
        pad_rans_buffer(model.gaussian_encoder, likelihoods)
        model.entropy_coder.flush()
        return model.entropy_coder.get_encoded_stream(), self._intra_output(y_hat, None)

    def _intra_decompress(self, stream: bytes, padded_hw: tuple[int, int]) -> CodecOutput:
        model = self.intra_model
        weight = next(model.parameters())
        model.entropy_coder.set_stream(stream)
        z_size = model.get_downsampled_shape(*padded_hw, 64)
        model.bit_estimator_z.decode_z(z_size, self.quality)
        z_hat = model.bit_estimator_z.get_z(z_size, weight.device, weight.dtype)
        params = self._intra_params(z_hat, (padded_hw[0] // 16, padded_hw[1] // 16))
        y_hat = model.decompress_prior_4x(
            params, model.y_spatial_prior_reduction, model.y_spatial_prior_adaptor_1,
            model.y_spatial_prior_adaptor_2, model.y_spatial_prior_adaptor_3,
            model.y_spatial_prior)
        return self._intra_output(y_hat, None)

    # --- P-frames: DMC.compress / decompress (video_model.py), reference passed explicitly ---
    def _inter_encode(self, frame: Tensor, state: Any) -> tuple[tuple, Tensor, Tensor, Tensor,
                                                                Tensor, int, int]:
        model = self.inter_model
        ref_feature, frame_index, qp = self._next_reference(state)
        q_encoder, _, q_feature, _ = self._inter_q(qp)
        ctx, ctx_t = model.feature_extractor(ref_feature, q_feature)
        y = model.encoder(frame, ctx, q_encoder)  # (B, 128, H/16, W/16)
        z = model.hyper_encoder(model.pad_for_y(y))
        z_hat, z_int8 = RT.module("layers.cuda_inference").round_and_to_int8(z)
        params = model.res_prior_param_decoder(z_hat, ctx_t)
        *parts, y_hat = model.compress_prior_2x(y, params, model.y_spatial_prior)
        return tuple(parts), z_hat, z_int8, y_hat, ctx, frame_index, qp

    def _inter_output(self, y_hat: Tensor, ctx: Tensor, qp: int, frame_index: int,
                      likelihoods: dict[str, Tensor] | None) -> CodecOutput:
        _, q_decoder, _, q_recon = self._inter_q(qp)
        decoded, feature = self.inter_model.get_recon_and_feature(y_hat, ctx, q_decoder, q_recon)
        state = RtState(decoded, feature, frame_index)
        latent = self._latent(y_hat, False)
        return CodecOutput(self._from_model(decoded), latent, likelihoods, state)

    def _inter_forward(self, frame: Tensor, state: Any) -> CodecOutput:
        parts, z_hat, _, y_hat, ctx, frame_index, qp = self._inter_encode(frame, state)
        likelihoods = {
            "y": _parts_likelihood(parts),
            "z": self._z_likelihood(self.inter_model.bit_estimator_z, z_hat, qp),
        }
        return self._inter_output(y_hat, ctx, qp, frame_index, likelihoods)

    def _inter_compress(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        model = self.inter_model
        parts, z_hat, z_int8, y_hat, ctx, frame_index, qp = self._inter_encode(frame, state)
        likelihoods = [_parts_likelihood(parts),
                       self._z_likelihood(model.bit_estimator_z, z_hat, qp)]
        model.entropy_coder.reset()
        model.bit_estimator_z.encode_z(z_int8, qp)
        for symbols, scales in zip(parts[:2], parts[2:]):
            model.gaussian_encoder.encode_y(symbols, scales)
        pad_rans_buffer(model.gaussian_encoder, likelihoods)
        model.entropy_coder.flush()
        out = self._inter_output(y_hat, ctx, qp, frame_index, None)
        return model.entropy_coder.get_encoded_stream(), out

    def _inter_decompress(self, stream: bytes, padded_hw: tuple[int, int],
                          state: Any) -> CodecOutput:
        model = self.inter_model
        weight = next(model.parameters())
        ref_feature, frame_index, qp = self._next_reference(state)
        _, _, q_feature, _ = self._inter_q(qp)
        model.entropy_coder.set_stream(stream)
        z_size = model.get_downsampled_shape(*padded_hw, 64)
        model.bit_estimator_z.decode_z(z_size, qp)
        ctx, ctx_t = model.feature_extractor(ref_feature, q_feature)
        z_hat = model.bit_estimator_z.get_z(z_size, weight.device, weight.dtype)
        params = model.res_prior_param_decoder(z_hat, ctx_t)
        y_hat = model.decompress_prior_2x(params, model.y_spatial_prior)
        return self._inter_output(y_hat, ctx, qp, frame_index, None)


__all__ = ["DCVCRT", "IMAGE_CHECKPOINT", "VIDEO_CHECKPOINT", "RtState"]
