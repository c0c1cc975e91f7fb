"""DCVC-UF's hierarchical variants (``hts``, ``htl``, ``video_model_ht.py``): P-frames coded in
chunks of 8 as one latent. Everything else (intra frames, state, bytes, rANS tables) is the
low-delay adapter's, :mod:`enhancer.codecs.dcvc_uf`; here only what a chunk changes: its input
(8 frames stacked along channels), its 4-step spatial prior and its 8 outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecError, CodecOutput, _check_frame
from enhancer.codecs.dcvc_adapter import pack_frame, unpack_frame
from enhancer.codecs.dcvc_common import UF
from enhancer.codecs.dcvc_uf import CHUNK_FRAMES, DCVCUF, UfState
from enhancer.data.padding import crop, pad_to_multiple


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
    inter_mask_steps = 4  # a chunk's y: four checkerboard steps

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

    def _inter_prior(self, y: Tensor, params: Tensor) -> tuple[Tensor, ...]:
        model = self.inter_model
        return model.forward_prior_4x(
            y, None, None, params, model.y_spatial_prior_reduction,
            model.y_spatial_prior_adaptor_1, model.y_spatial_prior_adaptor_2,
            model.y_spatial_prior_adaptor_3, model.y_spatial_prior,
            spatial_prior_has_scales=not model.is_hts)

    def _decode_inter_y(self, params: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        model = self.inter_model
        return self._decode_prior_4x(model, params, scales, means, not model.is_hts)

    def _one_p_frame(self, *args: Any) -> Any:
        raise CodecError(f"dcvc-uf {self.variant} codes P-frames in chunks of {CHUNK_FRAMES}: use "
                         "forward_chunk / compress_chunk / decompress_chunk")

    _inter_forward = _inter_compress = _inter_decompress = _one_p_frame

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
        padded = [self._to_model(pad_to_multiple(frame, self.pad_multiple)) for frame in frames]
        return torch.cat(padded, 1), count, size

    def _chunk_outputs(self, y_hat: Tensor, memory: Tensor, ctx: Tensor, state: UfState,
                       count: int, size: tuple[int, int],
                       likelihoods: dict[str, Tensor] | None) -> list[CodecOutput]:
        model = self.inter_model
        recons, feature = model.get_recon_and_feature(y_hat, ctx, self._q(model.q_decoder))
        # test_video.py resets when (first + 8) % 32 == 1
        new_state = self._reference_after(feature, memory, state.frame_index + CHUNK_FRAMES)
        latent = self._latent(y_hat, False)
        return [CodecOutput(crop(self._from_model(recon), *size), latent,
                            likelihoods, new_state) for recon in recons[:count]]

    def forward_chunk(self, frames: list[Tensor], state: UfState) -> list[CodecOutput]:
        """Training path of one chunk of P-frames (1 to 8 frames of the same size)."""
        chunk, count, size = self._chunk_input(frames)
        z, z_hat, y_res, y_q, y_hat, scales_hat, memory, ctx, _ = self._inter_encode(chunk, state)
        estimator = self.inter_model.bit_estimator_z
        likelihoods = self._likelihoods(estimator, z, z_hat, y_res, y_q, scales_hat)
        return self._chunk_outputs(y_hat, memory, ctx, state, count, size, likelihoods)

    @torch.no_grad()
    def compress_chunk(self, frames: list[Tensor],
                       state: UfState) -> tuple[bytes, list[CodecOutput]]:
        """One chunk of (1, 3, H, W) P-frames -> one frame record of bytes, and per frame what
        the decoder will see."""
        self._ensure_coder()
        chunk, count, size = self._chunk_input(frames)
        if chunk.shape[0] != 1:
            raise CodecError(f"compress codes one chunk at a time, got a batch of {chunk.shape[0]}")
        _, z_hat, _, y_q, y_hat, scales_hat, memory, ctx, _ = self._inter_encode(chunk, state)
        two_coders = self.uses_two_coders(*chunk.shape[-2:])
        self._use_two_coders(two_coders)
        stream = self._stream("inter", z_hat, y_q, scales_hat, self.inter_mask_steps)
        outs = self._chunk_outputs(y_hat, memory, ctx, state, count, size, None)
        return pack_frame(self.stream_label, stream, False, two_coders, self.quality), outs

    @torch.no_grad()
    def decompress_chunk(self, data: bytes, size: tuple[int, int], count: int,
                         state: UfState) -> list[CodecOutput]:
        """The bytes of one chunk of ``count`` real frames of ``size = (H, W)``."""
        if not 1 <= count <= CHUNK_FRAMES:
            raise CodecError(f"a dcvc-uf {self.variant} chunk holds 1 to {CHUNK_FRAMES} frames, "
                             f"got {count}")
        self._ensure_coder()
        stream, _, two_coders = unpack_frame(data, self.stream_label, self.quality,
                                             state is not None)
        self._use_two_coders(two_coders)
        y_hat, memory, ctx = self._decode_inter_latent(stream, self.padded_size(size), state)
        return self._chunk_outputs(y_hat, memory, ctx, state, count, size, None)


__all__ = ["DCVCUFChunks"]
