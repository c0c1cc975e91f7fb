"""One sequence through a codec: :class:`CodecStream` (the intra decision and the reference
state, frame by frame) and :func:`encode_frames`, a sequence through a codec's encoder with each source frame beside its record: what a loop
that scores or enhances every coded frame against its source needs, for every codec alike.

::

    for coded in encode_frames(codec, frames, intra_period=32):
        coded.frame, coded.data, coded.out, coded.seconds

One-frame codecs code each frame as it arrives (:class:`CodecStream`);
chunk codecs (``dcvc-uf-hts`` / ``-htl``) read a chunk's frames ahead and code them together
(:meth:`~enhancer.codecs.base.CodecAdapter.encode_sequence`), so the source frames wait here,
in display order, until their records come out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter, CodecOutput, check_finite_frame


class CodecStream:
    """One sequence through a codec, frame by frame: the intra decision and the reference
    state live here and nowhere else.

    ::

        stream = CodecStream(codec, intra_period=32)
        data, out = stream.compress(frame)        # encoder side (real bytes)
        out = stream.decompress(data, (H, W))     # decoder side
        out = stream(frame)                       # training path (differentiable)

    Each call codes the next frame: intra when the period says so (or the codec is an
    image codec), else predicted from the state the previous call left.
    """

    def __init__(self, codec: CodecAdapter, intra_period: int = -1):
        CodecAdapter.check_intra_period(intra_period)
        self.codec, self.intra_period = codec, intra_period
        self.index, self.state = 0, None

    @property
    def next_is_intra(self) -> bool:
        return not self.codec.is_video or self.codec.is_intra(self.index, self.intra_period)

    def _reference(self) -> Any:
        return None if self.next_is_intra else self.state

    def _advance(self, out: CodecOutput) -> CodecOutput:
        self.state, self.index = out.state, self.index + 1
        return out

    def __call__(self, frame: Tensor) -> CodecOutput:
        return self._advance(self.codec(frame, self._reference()))

    def compress(self, frame: Tensor) -> tuple[bytes, CodecOutput]:
        check_finite_frame(frame, f"frame {self.index}")
        data, out = self.codec.compress(frame, self._reference())
        return data, self._advance(out)

    def decompress(self, data: bytes, size: tuple[int, int]) -> CodecOutput:
        return self._advance(self.codec.decompress(data, size, self._reference()))


@dataclass
class CodedFrame:
    """One source frame, its record and the encoder's view of the decode.

    ``seconds``: the encoder's time for this record, reading the source excluded; a chunk's
    time falls on its first frame (the chunk record), its other frames' on none.
    """

    frame: Tensor
    data: bytes
    out: CodecOutput
    seconds: float


def encode_frames(codec: CodecAdapter, frames: Iterable[Tensor],
                  intra_period: int = -1) -> Iterator[CodedFrame]:
    """Code ``frames`` ((1, 3, H, W) each) as one sequence: one :class:`CodedFrame` per
    frame, in display order, the bytes real (a chunk codec's chunk record on the chunk's first
    frame, a 1-byte continuation record on each other)."""
    pending: deque[Tensor] = deque()
    reading = [0.0]  # seconds spent pulling source frames (inside the codec's calls)

    def source() -> Iterator[Tensor]:
        frames_in = iter(frames)
        while True:
            start = time.perf_counter()
            frame = next(frames_in, None)
            reading[0] += time.perf_counter() - start
            if frame is None:
                return
            pending.append(frame)
            yield frame

    coded = codec.encode_sequence(source(), intra_period)
    while True:
        read_before, start = reading[0], time.perf_counter()
        record = next(coded, None)
        if record is None:
            return
        data, out = record
        if out.decoded.is_cuda:
            torch.cuda.synchronize(out.decoded.device)
        seconds = time.perf_counter() - start - (reading[0] - read_before)
        yield CodedFrame(pending.popleft(), data, out, seconds)


__all__ = ["CodedFrame", "encode_frames"]
