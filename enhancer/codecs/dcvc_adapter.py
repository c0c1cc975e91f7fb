"""The base class of the DCVC adapters (dcvc, dcvc-rt, dcvc-uf) and their frame header.

Each frame's bytes: the coder byte (which adapter wrote them, :data:`CODER_IDS`), one flag
byte (bit 7: intra, bit 6: two rANS coders, bits 0-3: the real frames of a DCVC-UF chunk,
else 0), the q_index byte, the CRC-32 of the stream (4
bytes, little endian), then DCVC's rANS stream; each adapter refuses the others' frames by
name. The CRC is checked before the stream reaches DCVC's C++ decoder, which has no bounds
checks (an empty or truncated stream can crash the process).
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput
from enhancer.codecs.dcvc_common import Generation, load_checkpoint_folder
from enhancer.data.color import rgb_to_yuv444, yuv444_to_rgb

HEADER_BYTES = 7  # coder, flags, q_index, CRC-32
# which adapter (and DCVC-UF variant) wrote a frame: "F", "R", "U", "S", "L"
CODER_IDS = {"dcvc": 0x46, "dcvc-rt": 0x52, "dcvc-uf": 0x55, "dcvc-uf-hts": 0x53,
             "dcvc-uf-htl": 0x4C}
INTRA_FLAG, TWO_CODERS_FLAG, CHUNK_FRAMES_MASK = 0x80, 0x40, 0x0F
TWO_CODERS_ABOVE = 1280 * 720  # DCVC-RT's test_video.py: two rANS coders above 720p


# --- frame header ----------------------------------------------------------------------------
class FrameRecord(NamedTuple):
    stream: bytes
    intra: bool
    two_coders: bool
    chunk_frames: int  # the real frames of a chunk record, else 0


def pack_frame(label: str, stream: bytes, intra: bool, two_coders: bool, q_index: int,
               chunk_frames: int = 0) -> bytes:
    flags = (INTRA_FLAG if intra else 0) | (TWO_CODERS_FLAG if two_coders else 0) | chunk_frames
    header = bytes([CODER_IDS[label], flags, q_index]) + zlib.crc32(stream).to_bytes(4, "little")
    return header + stream


def unpack_frame(data: bytes, label: str, q_index: int, has_state: bool,
                 max_chunk_frames: int = 0) -> FrameRecord:
    """Check one frame's header against the decoder (``max_chunk_frames``: 0, or the frames a
    chunk may hold); return what it holds."""
    if len(data) < HEADER_BYTES + 5:  # a rANS stream is at least its 4-byte state
        raise CodecError(f"{label} frame data is truncated: {len(data)} bytes")
    stream = data[HEADER_BYTES:]
    if data[0] != CODER_IDS[label]:
        writer = next((n for n, i in CODER_IDS.items() if i == data[0]), None)
        raise CodecError(
            f"these bytes were not written by {label} (first byte {data[0]:#04x}"
            + (f": {writer}'s" if writer else ", no DCVC adapter's")
            + "): decode them with the codec that coded them"
        )
    if zlib.crc32(stream) != int.from_bytes(data[3:HEADER_BYTES], "little"):
        raise CodecError(f"{label} frame data is damaged: the CRC-32 of its {len(stream)}-byte "
                         "stream does not match its header")
    flags = data[1]
    chunk_frames = flags & CHUNK_FRAMES_MASK
    if flags & ~(INTRA_FLAG | TWO_CODERS_FLAG | CHUNK_FRAMES_MASK) or data[2] != q_index:
        raise CodecError(
            f"these bytes were coded at {label} q_index {data[2]} (flags {flags:#04x}), this "
            f"codec is q_index {q_index}: load the codec at the quality it was coded with"
        )
    intra = bool(flags & INTRA_FLAG)
    if intra == has_state:
        raise CodecError(
            f"these bytes hold {'an I' if intra else 'a P'}-frame but "
            f"{'a reference state was' if has_state else 'no reference state was'} given: decode "
            "frames in order with the same intra period as the encoder"
        )
    if chunk_frames > max_chunk_frames or (max_chunk_frames and not intra and not chunk_frames):
        raise CodecError(f"{label} frame header holds a chunk of {chunk_frames} frames (flags "
                         f"{flags:#04x}); the codec takes 1 to {max_chunk_frames} (0: not a "
                         "chunk codec): the header is damaged")
    return FrameRecord(stream, intra, bool(flags & TWO_CODERS_FLAG), chunk_frames)


# --- the shared adapter --------------------------------------------------------------------
def _mark_coder_stale_after_load(module: DcvcAdapter, incompatible_keys: Any) -> None:
    module._coder_ready = False


class DcvcAdapter(CodecAdapter):
    """The codec contract for a DCVC generation: an intra model and a video model loaded from
    the official checkpoint folder, colour (RGB <-> BT.709 YCbCr 4:4:4, DCVC's input), the
    384-channel conditioning latent, the frame header, rANS tables rebuilt from the weights,
    and the dispatch of I- and P-frames. A subclass builds its models and codes one frame:

    ``_build_models``, ``checkpoint_files``, ``_build_coder`` and, for I and P frames,
    ``_intra_forward`` / ``_inter_forward`` (training path), ``_intra_compress`` /
    ``_inter_compress`` and ``_intra_decompress`` / ``_inter_decompress`` (bytes); P-frame
    hooks get the reference state as the previous frame returned it (checked against
    :attr:`state_type`). The latent: an I-frame's ``y_hat`` fills the first channels, a
    P-frame's the last, the rest is zeros (so the enhancer also sees the frame type).
    """

    qualities = tuple(range(64))
    latent_channels = 384
    latent_stride = 16
    is_video = True
    generation: Generation
    state_type: type
    yuv_offset = 0.0  # subtracted from DCVC's YCbCr (DCVC-UF codes YCbCr - 0.5)
    two_coders_above: int | None = TWO_CODERS_ABOVE  # pixels; None: one rANS coder always

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        self.intra_model, self.inter_model = self._build_models()
        if checkpoint is None:
            warnings.warn(
                f"codec {self.name!r} q{quality} has random weights (no checkpoint folder given): "
                "fine for tests, meaningless for evaluation", stacklevel=2)
        else:
            load_checkpoint_folder(checkpoint, self.checkpoint_files(), self.generation)
        self._coder_ready = False
        # the rANS tables follow the weights: rebuilt after training or loading new weights
        self.register_load_state_dict_post_hook(_mark_coder_stale_after_load)

    # --- what each generation defines ----------------------------------------------------
    def _build_models(self) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    def checkpoint_files(self) -> dict[str, nn.Module]:
        """{official file name: the model it loads into}."""
        raise NotImplementedError

    def _build_coder(self) -> None:
        """Build the rANS tables from the current weights (called without gradients)."""
        raise NotImplementedError

    def _use_two_coders(self, two_coders: bool) -> None:
        """Switch the rANS coder to one or two interleaved streams before a frame."""

    @property
    def stream_label(self) -> str:
        """Who writes a frame's bytes (its coder byte, :data:`CODER_IDS`)."""
        return self.name

    # --- entropy coder -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> DcvcAdapter:
        if mode:
            self._coder_ready = False
        return super().train(mode)

    def _apply(self, fn: Any, recurse: bool = True) -> DcvcAdapter:
        for model in (self.intra_model, self.inter_model):
            model.masks = {}  # DCVC caches masks per size, not per device
        self._coder_ready = False
        return super()._apply(fn, recurse)

    def update(self) -> None:
        """Rebuild the rANS tables from the current weights (needs the built coder)."""
        reason = self.generation.missing_entropy_coder()
        if reason is not None:
            raise CodecError(reason)
        self.check_finite_weights()  # NaN tables would hang the rANS coder
        with torch.no_grad():
            self._build_coder()
        self._coder_ready = True

    def _ensure_coder(self) -> None:
        if not self._coder_ready:
            self.update()

    # --- state, colour, latent -----------------------------------------------------------------
    def _check_state(self, state: Any) -> Any:
        if not isinstance(state, self.state_type):
            raise CodecError(
                f"{self.name} expects the state returned with the previous frame "
                f"({self.state_type.__name__}) or None, got {type(state).__name__}")
        return state

    def _to_model(self, rgb: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> DCVC's BT.709 YCbCr 4:4:4 (minus :attr:`yuv_offset`)."""
        return torch.cat(rgb_to_yuv444(rgb), 1) - self.yuv_offset

    def _from_model(self, ycbcr: Tensor) -> Tensor:
        """A decoded (B, 3, H, W) YCbCr frame of the model -> RGB in [0, 1]."""
        ycbcr = (ycbcr + self.yuv_offset).clamp(0, 1)
        return yuv444_to_rgb(ycbcr[:, :1], ycbcr[:, 1:])

    def _latent(self, y_hat: Tensor, intra: bool) -> Tensor:
        """An I-frame's y_hat in the first channels of the latent, a P-frame's in the last."""
        batch, channels, height, width = y_hat.shape
        zeros = y_hat.new_zeros(batch, self.latent_channels - channels, height, width)
        return torch.cat([y_hat, zeros] if intra else [zeros, y_hat], 1)

    # --- contract hooks ------------------------------------------------------------------------
    def _intra_forward(self, frame: Tensor) -> CodecOutput:
        raise NotImplementedError

    def _inter_forward(self, frame: Tensor, state: Any) -> CodecOutput:
        raise NotImplementedError

    def _intra_compress(self, frame: Tensor) -> tuple[bytes, CodecOutput]:
        raise NotImplementedError

    def _inter_compress(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        raise NotImplementedError

    def _intra_decompress(self, stream: bytes, padded_hw: tuple[int, int]) -> CodecOutput:
        raise NotImplementedError

    def _inter_decompress(self, stream: bytes, padded_hw: tuple[int, int],
                          state: Any) -> CodecOutput:
        raise NotImplementedError

    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        frame = self._to_model(frame)
        if state is None:
            return self._intra_forward(frame)
        return self._inter_forward(frame, self._check_state(state))

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        self._ensure_coder()
        two_coders = self.uses_two_coders(*frame.shape[-2:])
        self._use_two_coders(two_coders)
        frame = self._to_model(frame)
        if state is None:
            stream, out = self._intra_compress(frame)
        else:
            stream, out = self._inter_compress(frame, self._check_state(state))
        return pack_frame(self.stream_label, stream, state is None, two_coders, self.quality), out

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int],
                           state: Any) -> CodecOutput:
        self._ensure_coder()
        record = unpack_frame(data, self.stream_label, self.quality, state is not None)
        self._use_two_coders(record.two_coders)
        if record.intra:
            return self._intra_decompress(record.stream, padded_hw)
        return self._inter_decompress(record.stream, padded_hw, self._check_state(state))

    def uses_two_coders(self, height: int, width: int) -> bool:
        """Two interleaved rANS coders above 720p, as DCVC-RT's test script."""
        return self.two_coders_above is not None and height * width > self.two_coders_above



__all__ = ["CODER_IDS", "HEADER_BYTES", "DcvcAdapter", "FrameRecord", "pack_frame",
           "unpack_frame"]
