"""x264 and x265 through PyAV: the conventional baseline every user compares against.

Each intra period is one independent low-delay stream (no B-frames, no
look-ahead, ``tune=zerolatency``), so every frame is exactly one packet and a
decoder gives the frame back as soon as its packet arrives. The quality index
is the CRF (0 = best, 51 = worst). Frames are converted RGB -> YUV 4:2:0
(BT.709, 8 bit) before coding and back after, so the reported PSNR includes
the chroma subsampling, as for any 4:2:0 codec.

There are no weights and no latent: the enhancer conditions on the decoded
frame (and, if built so, on the CRF: :meth:`_PyAVCodec.quality_level`). The "training
path" codes for real (it is not differentiable).
"""

from __future__ import annotations

import fractions
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput
from enhancer.codecs.registry import register_codec
from enhancer.data.color import planes_to_rgb, rgb_to_planes
from enhancer.data.video import pyav


@dataclass
class _StreamState:
    """Open encoder/decoder of the current stream (one intra period)."""

    decoder: Any
    encoder: Any = None
    frame_index: int = 0
    size: tuple[int, int] = field(default=(0, 0))


class _PyAVCodec(CodecAdapter):
    qualities = tuple(range(52))
    pad_multiple = 4  # 4:2:0 needs even sizes; PyAV's packed yuv420p array needs H % 4 == 0
    latent_channels = None
    is_video = True
    learned = False
    detects_damaged_frames = True
    encoder_name: str
    decoder_name: str
    preset: str = "medium"

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        if checkpoint is not None:
            raise CodecError(f"codec {self.name!r} has no weights; do not pass a checkpoint")
        # PyAV is needed to code, not to exist: training from a data pack (uint8 decodes,
        # enhancer.train.pack) builds this adapter on machines without PyAV.

    @classmethod
    def quality_level(cls, quality: int) -> float:
        """CRF 51 (coarsest) -> 0, CRF 0 (finest) -> 1. libx264 and libx265 write their
        options, the CRF among them, into the stream (an SEI message): a decoder knows it."""
        cls.check_quality(quality)
        return 1.0 - quality / 51.0

    def _encoder_options(self) -> dict[str, str]:
        return {"preset": self.preset, "tune": "zerolatency", "crf": str(self.quality)}

    def _open_stream(self, height: int, width: int, with_encoder: bool) -> _StreamState:
        if with_encoder and self.encoder_name not in pyav().codecs_available:
            raise CodecError(f"this PyAV build has no {self.encoder_name} encoder")
        decoder = pyav().CodecContext.create(self.decoder_name, "r")
        decoder.thread_count = 1
        decoder.options = {"err_detect": "explode"}  # fail on damaged data, do not conceal
        encoder = None
        if with_encoder:
            encoder = pyav().CodecContext.create(self.encoder_name, "w")
            encoder.width, encoder.height = width, height
            encoder.pix_fmt = "yuv420p"
            encoder.time_base = fractions.Fraction(1, 25)
            encoder.thread_count = 1  # deterministic bytes
            encoder.options = self._encoder_options()
        return _StreamState(decoder=decoder, encoder=encoder, size=(height, width))

    def _decode_packet(self, data: bytes, state: _StreamState) -> Tensor:
        try:
            frames = state.decoder.decode(pyav().Packet(data))
        except pyav().error.FFmpegError as err:
            raise CodecError(f"{self.decoder_name} could not decode {len(data)} bytes: {err}") from err
        if any(frame.is_corrupt for frame in frames):
            raise CodecError(f"{self.decoder_name} found {len(data)} bytes damaged")
        if len(frames) != 1:
            raise CodecError(
                f"{self.decoder_name} returned {len(frames)} frames for one packet of {len(data)} bytes"
            )
        return decoded_rgb(frames[0])

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        height, width = frame.shape[-2:]
        if state is None:
            state = self._open_stream(height, width, with_encoder=True)
        elif state.encoder is None:
            raise CodecError("a decoder-side state cannot be used to encode; start with state=None")
        y, u, v = rgb_to_planes(frame)
        planes = np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)], axis=0)
        av_frame = pyav().VideoFrame.from_ndarray(planes, format="yuv420p")
        av_frame.pts = state.frame_index
        if state.frame_index == 0:
            av_frame.pict_type = pyav().video.frame.PictureType.I
        packets = state.encoder.encode(av_frame)
        if len(packets) != 1:
            raise CodecError(f"{self.encoder_name} gave {len(packets)} packets for one frame")
        data = bytes(packets[0])
        decoded = self._decode_packet(data, state).to(frame.device)
        state.frame_index += 1
        return data, CodecOutput(decoded, None, None, state)

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int], state: Any) -> CodecOutput:
        if state is None:
            state = self._open_stream(*padded_hw, with_encoder=False)
        decoded = self._decode_packet(data, state)
        state.frame_index += 1
        return CodecOutput(decoded, None, None, state)

    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        """Codes every batch element for real as its own stream; ``state`` is a list per element."""
        states = state if state is not None else [None] * frame.shape[0]
        decoded, new_states = [], []
        with torch.no_grad():
            for element, element_state in zip(frame.split(1), states):
                _, out = self._compress_padded(element, element_state)
                decoded.append(out.decoded)
                new_states.append(out.state)
        return CodecOutput(torch.cat(decoded), None, None, new_states)


def decoded_rgb(frame: Any) -> Tensor:
    """A decoded PyAV picture as RGB ``(1, 3, H, W)`` in [0, 1]: its 4:2:0 planes, BT.709."""
    height, width = frame.height, frame.width
    planes = frame.reformat(format="yuv420p").to_ndarray()  # (H * 3/2, W)
    y = planes[:height]
    chroma = planes[height:].reshape(2, height // 2, width // 2)
    return planes_to_rgb(y, chroma[0], chroma[1])


@register_codec("x264")
class X264(_PyAVCodec):
    """H.264/AVC through libx264 (CRF, low delay, no B-frames)."""

    encoder_name = "libx264"
    decoder_name = "h264"


@register_codec("x265")
class X265(_PyAVCodec):
    """H.265/HEVC through libx265 (CRF, low delay, no B-frames)."""

    encoder_name = "libx265"
    decoder_name = "hevc"
    detects_damaged_frames = False  # FFmpeg's HEVC decoder conceals truncated slices silently

    def _encoder_options(self) -> dict[str, str]:
        return super()._encoder_options() | {"x265-params": "log-level=error"}


# --- H.264/HEVC streams made by anyone: the CRF a model is told ---------------------------
# libx264 and libx265 write their options into the stream as a user-data SEI message (in
# the first access unit, or in the MKV/MP4 header for x265): "x264 - core 164 r3095 -
# H.264/MPEG-4 AVC codec - ... options: cabac=1 ... rc=crf mbtree=1 crf=28.0 ...",
# "x265 (build 216) - 4.2 ... - H.265/HEVC codec - ... crf=28.0 ...". A rate-controlled
# (ABR, CQP) stream names no crf.
_ENCODER_INFO = re.compile(rb"(x264) - core [^\x00]{0,4000}?\bcrf=([0-9]{1,2}(?:\.[0-9]+)?)"
                           rb"|(x265) \(build [^\x00]{0,4000}?\bcrf=([0-9]{1,2}(?:\.[0-9]+)?)")

# x265 at CRF c decodes, in PSNR, like x264 (our low-delay settings) at about CRF c - 2:
# measured with these adapters on 8 frames of cars_320x240, book.mkv and sam2/02_cups at
# CRF 24..40 (the x264 CRF of equal RGB PSNR, interpolated: median -2.1, spread -3.3..0).
X265_CRF_ON_X264_SCALE = -2

# No SEI: the stream's mean QP (per macroblock, P-frames) stands for the CRF. x264 at our
# low-delay settings, CRF 24..40, 8 frames, gives a P-frame mean QP of CRF +3.1..+5.4 on
# moving clips (CiscoVT2people, cars_320x240) and CRF -2.5..-5.0 on static ones (book,
# 02_cups): 0 on average, so the mapping is the identity, good to about +-5 CRF; pass
# --quality when the encoder's CRF is known.
QP_ON_CRF_SCALE = 0


def encoder_crf(data: bytes) -> tuple[str, float] | None:
    """``("x264" | "x265", crf)`` from the encoder-info SEI in ``data`` (a stream's first
    bytes: header and first packets), or None when it names no CRF."""
    match = _ENCODER_INFO.search(data)
    if match is None:
        return None
    encoder, crf = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
    return encoder.decode(), float(crf)


def crf_from_qp(mean_qp: float) -> int:
    """The CRF a stream without encoder info is taken to be at: its mean P-frame QP
    (see :data:`QP_ON_CRF_SCALE`), clipped to 0..51."""
    return int(min(max(round(mean_qp - QP_ON_CRF_SCALE), 0), 51))


def equivalent_crf(crf: int, stream_codec: str, model_codec: str) -> int:
    """``crf`` of a ``stream_codec`` stream on the CRF scale of ``model_codec`` (x264 and x265
    differ by :data:`X265_CRF_ON_X264_SCALE`); other pairs are returned as they are."""
    offset = {"x264": 0, "x265": X265_CRF_ON_X264_SCALE}
    if stream_codec not in offset or model_codec not in offset:
        return crf
    return int(min(max(crf + offset[stream_codec] - offset[model_codec], 0), 51))
