"""The one contract every video reader speaks: raw YUV, Y4M, PyAV and PNG folders.

A reader knows what its video is (:attr:`FrameReader.info`) and hands out its frames in
the two forms :func:`enhancer.data.sequence.open_sequence` offers:

- ``yuv_frames(start, count)``: 4:2:0 uint8 planes ``Y (H, W)``, ``U, V (H/2, W/2)``
  (deeper samples rounded to 8 bits);
- ``frames(start, count)``: RGB ``(1, 3, H, W)`` float32 in [0, 1].

Both take the colour ``matrix`` (and ``frames`` the chroma ``upsample`` mode) for the
readers that convert. ``close()`` and ``with`` release the file. Each reader implements
what it needs and inherits the rest:

- readers of stored 4:2:0 planes implement :meth:`FrameReader.planes` only;
- a reader whose RGB comes from other planes (4:4:4 video) also overrides
  :meth:`FrameReader.native_planes`;
- a reader of RGB pixels (PNG frames) overrides ``frames`` and ``yuv_frames``.

Readers do not check ``start``/``count`` against the length: :class:`VideoReader
<enhancer.data.sequence.VideoReader>` does, once, for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from enhancer.data.color import planes_to_rgb

if TYPE_CHECKING:
    from typing_extensions import Self

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class SequenceInfo:
    """What a video is: frame size, rate and length (``None`` if unknown)."""

    width: int
    height: int
    fps: float
    num_frames: int | None
    path: Path
    bit_depth: int = 8


def _to_8bit(plane: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round deeper samples to 8 bits (10-bit 1023 -> 255); 8-bit planes pass as they are."""
    if bit_depth == 8:
        return plane
    shift = bit_depth - 8
    rounded = (plane.astype(np.uint32) + (1 << (shift - 1))) >> shift
    return np.minimum(rounded, 255).astype(np.uint8)


class FrameReader:
    """Base class of the readers; subclasses set the attributes below in ``__init__``.

    Attributes:
        path:       the file or folder read.
        width, height, fps, num_frames: as stored (``num_frames`` None if unknown).
        bit_depth:  bits per stored sample (8 unless the format says otherwise).
    """

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int | None
    bit_depth: int = 8

    @property
    def info(self) -> SequenceInfo:
        return SequenceInfo(self.width, self.height, float(self.fps), self.num_frames,
                            self.path, self.bit_depth)

    def planes(self, start: int = 0, count: int | None = None) -> Iterator[Planes]:
        """4:2:0 planes as stored, at :attr:`bit_depth` (uint8, or uint16 above 8 bits)."""
        raise NotImplementedError(f"{type(self).__name__} does not read stored planes")

    def native_planes(self, start: int = 0, count: int | None = None) -> Iterator[Planes]:
        """The planes RGB frames are made from: :meth:`planes` unless a reader keeps more."""
        return self.planes(start, count)

    def yuv_frames(self, start: int = 0, count: int | None = None,
                   matrix: str = "bt709") -> Iterator[Planes]:
        """uint8 4:2:0 planes of frames ``start .. start+count-1`` (to the end if None)."""
        depth = self.bit_depth
        for y, u, v in self.planes(start, count):
            yield _to_8bit(y, depth), _to_8bit(u, depth), _to_8bit(v, depth)

    def frames(self, start: int = 0, count: int | None = None, matrix: str = "bt709",
               upsample: str = "bilinear") -> Iterator[Tensor]:
        """RGB frames ``(1, 3, H, W)`` float32 in [0, 1], from :meth:`native_planes`."""
        for y, u, v in self.native_planes(start, count):
            yield planes_to_rgb(y, u, v, matrix, self.bit_depth, upsample)

    def close(self) -> None:
        """Release the file (readers that keep nothing open between calls do nothing)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
