"""DCVC-UF's hierarchical variants (``hts``, ``htl``, ``video_model_ht.py``): P-frames coded in
chunks of 8 as one latent, registered as ``dcvc-uf-hts`` and ``dcvc-uf-htl``. Everything else
(intra frames, state, bytes, rANS tables) is the low-delay adapter's,
:mod:`enhancer.codecs.dcvc_uf`; here only what a chunk changes: its input (8 frames stacked
along channels), its 4-step spatial prior, its 8 outputs, and how a sequence of frame records
carries them (:meth:`DCVCUFChunks.encode_sequence`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecError, CodecOutput, _check_frame, check_finite_frame
from enhancer.codecs.dcvc_adapter import CODER_IDS, pack_frame, unpack_frame
from enhancer.codecs.dcvc_common import UF
from enhancer.codecs.dcvc_uf import CHUNK_FRAMES, DCVCUF, UfState
from enhancer.codecs.registry import register_codec
from enhancer.data.padding import crop, pad_to_multiple


@dataclass(frozen=True)
class ChunkPending:
    """Decoder state inside a chunk: the outputs of its frames not returned yet (the last one
    carries the state after the chunk)."""

    outputs: tuple[CodecOutput, ...]


class DCVCUFChunks(DCVCUF):
    """DCVC-UF's hierarchical variants: intra frames one at a time (DMCI), P-frames in chunks
    of :data:`CHUNK_FRAMES` coded as one latent and decoded together::

        codec = load_codec("dcvc-uf-hts", quality=21, checkpoint=folder)
        data, out = codec.compress(frame0)                        # intra, as dcvc-uf
        data, outs = codec.compress_chunk(frames[1:9], out.state)  # 8 frames -> 1 record
        outs = codec.decompress_chunk(data, (H, W), out.state)

    A short chunk (fewer than 8 frames: before the next intra frame or at the end) is filled
    by repeating its last frame, as DCVC's ``test_video.py`` does; the record's header holds
    the real frame count and only those frames come back. Every frame of a chunk gets the
    chunk's latent (P block: channels 256..511 of a 512-channel latent; I-frames fill 0..255)
    and the state after the whole chunk; the likelihoods of a chunk's training path (under
    each frame's output) are the chunk's.

    One frame at a time, as the tools drive codecs: :meth:`encode_sequence` yields one record
    per frame, the chunk's for its first frame and a 1-byte continuation record (the coder
    byte) for each other; ``decompress`` of the chunk record returns its first frame with a
    :class:`ChunkPending` state, and each continuation record the next frame (the evaluation
    codes so, through :func:`enhancer.codecs.stream.encode_frames`). P-frames through
    ``forward`` / ``compress`` one at a time (training, the sampling tuner, ``Enhancer.enhance``
    on raw frames) are refused: the encoder needs the next frames of the chunk first.
    """

    latent_channels = 512
    frames_per_chunk = CHUNK_FRAMES
    inter_mask_steps = 4  # a chunk's y: four checkerboard steps
    variant = ""  # "hts" or "htl"

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
        raise CodecError(
            f"{self.name} codes P-frames in chunks of {CHUNK_FRAMES}, not one at a time: code "
            "whole sequences (tools/codec.py encode, tools/eval_uvg.py, "
            "enhancer.codecs.stream.encode_frames, codec.encode_sequence) or chunks "
            "(forward_chunk / compress_chunk); training, tools/tune_sampling.py and "
            "Enhancer.enhance on raw frames code a frame at a time: use dcvc-uf (low delay) "
            "there")

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
        for index, frame in enumerate(frames):
            check_finite_frame(frame, f"frame {index} of the chunk")
        _, z_hat, _, y_q, y_hat, scales_hat, memory, ctx, _ = self._inter_encode(chunk, state)
        two_coders = self.uses_two_coders(*chunk.shape[-2:])
        self._use_two_coders(two_coders)
        stream = self._stream("inter", z_hat, y_q, scales_hat, self.inter_mask_steps)
        outs = self._chunk_outputs(y_hat, memory, ctx, state, count, size, None)
        record = pack_frame(self.stream_label, stream, False, two_coders, self.quality, count)
        return record, outs

    @torch.no_grad()
    def decompress_chunk(self, data: bytes, size: tuple[int, int],
                         state: UfState) -> list[CodecOutput]:
        """The record of one chunk of P-frames of ``size = (H, W)``: one output per real frame."""
        self._ensure_coder()
        record = unpack_frame(data, self.stream_label, self.quality, state is not None,
                              CHUNK_FRAMES)
        if record.intra:
            raise CodecError(f"{self.name}: these bytes hold an intra frame, not a chunk: "
                             "decode them with decompress")
        self._use_two_coders(record.two_coders)
        y_hat, memory, ctx = self._decode_inter_latent(record.stream, self.padded_size(size),
                                                       state)
        return self._chunk_outputs(y_hat, memory, ctx, state, record.chunk_frames, size, None)

    # --- one record per frame (the tools' sequences) ------------------------------------------
    def encode_sequence(self, frames: Iterable[Tensor],
                        intra_period: int = -1) -> Iterator[tuple[bytes, CodecOutput]]:
        """(record, decoder-side output) per frame: intra frames one at a time, P-frames in
        chunks that end after 8 frames, before the next intra frame or at the sequence end."""
        self.check_intra_period(intra_period)
        state, chunk, continuation = None, [], bytes([CODER_IDS[self.stream_label]])
        for index, frame in enumerate(frames):
            if self.is_intra(index, intra_period):
                data, out = self.compress(frame)
                state = out.state
                yield data, out
                continue
            chunk.append(frame)
            if len(chunk) == CHUNK_FRAMES or self.is_intra(index + 1, intra_period):
                data, outs = self.compress_chunk(chunk, state)
                state, chunk = outs[-1].state, []
                yield from zip([data] + [continuation] * (len(outs) - 1), outs)
        if chunk:
            data, outs = self.compress_chunk(chunk, state)
            yield from zip([data] + [continuation] * (len(outs) - 1), outs)

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int],
                           state: Any) -> CodecOutput:
        """A chunk record (its first frame), a continuation record (the next frame of the
        chunk) or an intra frame; outputs come at the padded size (the caller crops)."""
        continuation = bytes([CODER_IDS[self.stream_label]])
        if isinstance(state, ChunkPending) or data == continuation:
            if not (isinstance(state, ChunkPending) and data == continuation):
                raise CodecError(
                    f"{self.name}: a chunk's continuation record must follow its chunk record "
                    f"and each of its frames one ({len(data)} bytes, state "
                    f"{type(state).__name__}): decode the records in order, from the first")
            first, *rest = state.outputs
        elif state is None:
            return super()._decompress_padded(data, padded_hw, state)
        else:
            first, *rest = self.decompress_chunk(data, padded_hw, state)
        if rest:
            first = CodecOutput(first.decoded, first.latent, None, ChunkPending(tuple(rest)))
        return first


@register_codec("dcvc-uf-hts")
class DCVCUFHts(DCVCUFChunks):
    """DCVC-UF's ``hts`` variant (``cvpr2026_video_hts.pth.tar``)."""

    variant = "hts"


@register_codec("dcvc-uf-htl")
class DCVCUFHtl(DCVCUFChunks):
    """DCVC-UF's ``htl`` variant (``cvpr2026_video_htl.pth.tar``)."""

    variant = "htl"


__all__ = ["ChunkPending", "DCVCUFChunks", "DCVCUFHtl", "DCVCUFHts"]
