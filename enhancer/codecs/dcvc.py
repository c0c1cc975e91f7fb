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
``tools/build_dcvc.sh`` into ``build/dcvc/src/models``; the frame header, colour,
checkpoint loading and locations are shared with dcvc-rt and dcvc-uf
(:mod:`enhancer.codecs.dcvc_adapter`, :mod:`enhancer.codecs.dcvc_common`).
Checkpoints: ``checkpoint=`` is a folder holding DCVC-FM's official
``cvpr2024_image.pth.tar`` and ``cvpr2024_video.pth.tar``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecOutput
from enhancer.codecs.dcvc_adapter import DcvcAdapter
from enhancer.codecs.dcvc_common import FM
from enhancer.codecs.registry import register_codec

IMAGE_CHECKPOINT = "cvpr2024_image.pth.tar"
VIDEO_CHECKPOINT = "cvpr2024_video.pth.tar"
RATE_POINTS = (0, 21, 42, 63)  # test_video.py's default: np.linspace(0, 63, 4) rounded
FA_INDEX_MAP = (0, 1, 0, 2, 0, 2, 0, 2)  # feature adaptor per frame index mod 8 (test_helper.py)
RESET_INTERVAL = 32  # drop the DPB feature when frame index % 32 == 1 (test_helper.py)


# --- helpers -------------------------------------------------------------------------------
def _round_ste(values: Tensor) -> Tensor:
    """round() with straight-through gradients; its values equal torch.round exactly."""
    return values + (torch.round(values) - values).detach()


def _likelihoods_from_bits(bits: Tensor) -> Tensor:
    """Per-element DCVC bit estimates -> likelihoods with -log2(likelihood) == bits."""
    return torch.exp2(-bits)


def _ceil_div(value: int, divisor: int) -> int:
    return -(-value // divisor)


@dataclass(frozen=True)
class DcvcState:
    """Reference state after a frame: DCVC-FM's DPB (YCbCr frame, features, latents) and the
    frame's index since the last intra frame (0 for the intra frame itself)."""

    dpb: dict[str, Tensor | None]
    frame_index: int


# --- the adapter -----------------------------------------------------------------------------
@register_codec("dcvc")
class DCVCFM(DcvcAdapter):
    """DCVC-FM: intra frames by DMCI, P-frames by DMC, DPB as the reference state."""

    pad_multiple = 16
    generation = FM
    state_type = DcvcState
    two_coders_above = None  # DCVC-FM's coder has one stream

    def _build_models(self) -> tuple[nn.Module, nn.Module]:
        intra_model = FM.module("models.image_model").DMCI(inplace=False)
        inter_model = FM.module("models.video_model").DMC(inplace=False)
        for model in (intra_model, inter_model):
            model.quant = _round_ste  # DCVC quantises with self.quant(); same values, gradients
        return intra_model, inter_model

    def checkpoint_files(self) -> dict[str, nn.Module]:
        return {IMAGE_CHECKPOINT: self.intra_model, VIDEO_CHECKPOINT: self.inter_model}

    def _build_coder(self) -> None:
        self.intra_model.update(force=True)
        self.inter_model.update(force=True)

    # --- state ------------------------------------------------------------------------------
    def _next_reference(self, state: Any) -> tuple[dict[str, Tensor | None], int, int]:
        """(dpb to predict from, this frame's index since intra, feature adaptor index)."""
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
        decoded = self._from_model(state.dpb["ref_frame"])
        return CodecOutput(decoded, self._latent(y_hat, intra), likelihoods, state)

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


__all__ = ["DCVCFM", "IMAGE_CHECKPOINT", "RATE_POINTS", "VIDEO_CHECKPOINT", "DcvcState"]
