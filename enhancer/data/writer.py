"""The one contract every video writer speaks: raw YUV, Y4M, PyAV (MP4/MKV) and PNG folders.

A writer appends frames in the two forms :func:`enhancer.data.sequence.open_writer` takes
(the forms the readers of :mod:`enhancer.data.reader` hand out):

- ``write_planes(y, u, v)``: 4:2:0 planes ``Y (H, W)``, ``U, V (H/2, W/2)`` at the
  writer's :attr:`FrameWriter.bit_depth` (uint8 for 8 bits);
- ``write_rgb(rgb)``: RGB ``(1, 3, H, W)`` in [0, 1] (values outside are clamped).

Both take the colour ``matrix`` (and ``write_planes`` the chroma ``upsample`` mode) for the
writers that convert. ``close()`` finishes the output; ``abort()`` only releases it (the
caller deletes it); ``with`` closes. Each writer implements what it stores and inherits
the rest:

- writers of 4:2:0 planes (YUV, Y4M, PyAV) implement :meth:`FrameWriter.write_planes`;
- a writer of RGB pixels (PNG frames) overrides ``write_rgb`` and ``write_planes``;
- a writer whose ``close`` does more than release the file (an encoder's flush) overrides
  ``abort``.

Writers write where they are told: :class:`VideoWriter
<enhancer.data.sequence.VideoWriter>` picks one, writes to a temporary name and moves it
into place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from enhancer.data.color import rgb_to_planes

if TYPE_CHECKING:
    from typing_extensions import Self


class FrameWriter:
    """Base class of the writers; subclasses set the attributes below in ``__init__``.

    Attributes:
        path:       the file or folder written.
        width, height: the frame size.
        num_frames: frames written so far.
        bit_depth:  bits per stored sample (8 unless the writer was asked for more).
    """

    path: Path
    width: int
    height: int
    num_frames: int
    bit_depth: int = 8

    def write_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt709",
                     upsample: str = "bilinear") -> None:
        """Append one frame given as 4:2:0 planes ``Y (H, W)``, ``U, V (H/2, W/2)``."""
        raise NotImplementedError(f"{type(self).__name__} does not write planes")

    def write_rgb(self, rgb: Tensor, matrix: str = "bt709") -> None:
        """Append one RGB frame ``(1, 3, H, W)`` in [0, 1], as planes converted with ``matrix``."""
        self.write_planes(*rgb_to_planes(rgb.clamp(0.0, 1.0), matrix, self.bit_depth), matrix)

    def close(self) -> None:
        """Finish the output (writers that keep nothing open do nothing)."""

    def abort(self) -> None:
        """Release the output without finishing it; the caller deletes what was written."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
