"""Raw planar YUV 4:2:0 files (I420), read and written one frame at a time.

A 600-frame 1080p UVG file is 1.9 GB, so nothing here loads a whole file: the
reader seeks to ``index * frame_bytes`` and reads one frame with ``np.fromfile``.

Layout per frame: Y (H x W), then U (H/2 x W/2), then V (H/2 x W/2). 8-bit files hold
one byte per sample; deeper files (names with ``10le``/``10bit``) hold 16-bit
little-endian samples, returned as uint16.

Frame size, frame rate and bit depth come from the file name, the way UVG and the
HEVC common test conditions name their sequences::

    Beauty_1920x1080_120fps_420_8bit_YUV.yuv
    C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv
    CiscoVT2people_160x96_6fps.yuv
    sparks_ref_480x270_5f.yuv420p10le.yuv

Explicit ``width=``/``height=``/``fps=``/``bit_depth=`` arguments win over the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from enhancer.data.reader import FrameReader
from enhancer.data.writer import FrameWriter

DEFAULT_FPS = 30.0

_SIZE_RE = re.compile(r"(?<![0-9])([1-9][0-9]{0,4})x([1-9][0-9]{0,4})(?![0-9])")
_FPS_RE = re.compile(r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)(?:fps|hz)(?![a-z])", re.IGNORECASE)
_BIT_DEPTH_RE = re.compile(r"(?<![0-9])(8|10|12|16)(?:bit|b|le)(?![a-z])", re.IGNORECASE)
_CHROMA_RE = re.compile(r"(?:^|[_.\-]|yuv|p)(444|422)(?:p|_|\.|-|$)", re.IGNORECASE)


@dataclass(frozen=True)
class YuvNameInfo:
    """What a raw YUV file name says about its content (``None`` where it says nothing)."""

    width: int | None
    height: int | None
    fps: float | None
    bit_depth: int | None


def parse_yuv_name(path: str | Path) -> YuvNameInfo:
    """Read ``WxH``, ``<n>fps``/``<n>Hz`` and ``8bit``/``10bit``/``10le`` from a file name.

    Only the file name is looked at, not its folder. Raises ``ValueError`` when the name
    says the chroma is not 4:2:0 (``444``, ``422``, ``400``).
    """
    name = Path(path).name
    size = _SIZE_RE.search(name)
    fps = _FPS_RE.search(name)
    depth = _BIT_DEPTH_RE.search(name)
    chroma = _CHROMA_RE.search(name)
    if chroma is not None:
        raise ValueError(
            f"{name!r} looks like {chroma.group(1)} chroma; only 8/10-bit 4:2:0 (I420) raw files "
            "are supported: convert it to yuv420p first"
        )
    return YuvNameInfo(
        width=int(size.group(1)) if size else None,
        height=int(size.group(2)) if size else None,
        fps=float(fps.group(1)) if fps else None,
        bit_depth=int(depth.group(1)) if depth else None,
    )


def check_even_size(width: int, height: int, what: str) -> None:
    """4:2:0 needs even dimensions; raise a ``ValueError`` naming ``what`` otherwise."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(
            f"{what}: 4:2:0 needs a positive even width and height, got {width}x{height}; "
            "pad or crop the video to an even size"
        )


def frame_bytes(width: int, height: int, bit_depth: int = 8) -> int:
    """Bytes of one 4:2:0 frame: ``W*H*3/2`` samples, 1 byte each (2 above 8 bits)."""
    return width * height * 3 // 2 * (1 if bit_depth <= 8 else 2)


def _sample_dtype(bit_depth: int) -> np.dtype:
    if bit_depth == 8:
        return np.dtype(np.uint8)
    if 8 < bit_depth <= 16:
        return np.dtype("<u2")
    raise ValueError(f"unsupported bit depth {bit_depth}; use 8, 10, 12 or 16")


class PlanarFile:
    """Owns ``self._file``: ``close()`` for the readers and writers of 4:2:0 files (``with``
    comes from :class:`FrameReader` / :class:`FrameWriter`)."""

    _file: BinaryIO

    def close(self) -> None:
        self._file.close()


class PlanarReader(PlanarFile, FrameReader):
    """A 4:2:0 file of ``num_frames`` frames read by index (:meth:`read_frame`)."""

    dtype: np.dtype
    num_frames: int

    def read_frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _read_planes(self, index: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index`` stored at byte ``offset`` as planes ``Y (H, W)``, ``U, V (H/2, W/2)``."""
        if not 0 <= index < self.num_frames:
            raise IndexError(
                f"frame {index} out of range: {self.path.name} has {self.num_frames} frames"
            )
        luma = self.width * self.height
        self._file.seek(offset)
        samples = np.fromfile(self._file, dtype=self.dtype, count=luma * 3 // 2)
        if samples.size != luma * 3 // 2:
            raise OSError(f"{self.path}: short read at frame {index} (file changed on disk?)")
        bit_depth = getattr(self, "bit_depth", 8)
        if 8 < bit_depth < 16 and int(samples.max()) >> bit_depth:
            raise ValueError(
                f"{self.path}: frame {index} holds the sample value {int(samples.max())}, above "
                f"the {bit_depth}-bit maximum {(1 << bit_depth) - 1}: the file is not "
                f"{bit_depth}-bit little-endian 4:2:0 (or is damaged)"
            )
        y = samples[:luma].reshape(self.height, self.width)
        u = samples[luma : luma * 5 // 4].reshape(self.height // 2, self.width // 2)
        v = samples[luma * 5 // 4 :].reshape(self.height // 2, self.width // 2)
        return y, u, v

    def planes(
        self, start: int = 0, count: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stored planes of frames ``start .. start+count-1`` (to the end when ``count`` is None)."""
        stop = self.num_frames if count is None else start + count
        for index in range(start, stop):
            yield self.read_frame(index)


class YuvReader(PlanarReader):
    """Streams frames of a raw 4:2:0 file: ``Y (H, W)``, ``U, V (H/2, W/2)`` per frame.

    >>> with YuvReader("CiscoVT2people_160x96_6fps.yuv") as reader:
    ...     y, u, v = reader.read_frame(0)
    """

    def __init__(
        self,
        path: str | Path,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        bit_depth: int | None = None,
    ) -> None:
        self.path = Path(path)
        named = parse_yuv_name(self.path)
        width = width if width is not None else named.width
        height = height if height is not None else named.height
        if width is None or height is None:
            raise ValueError(
                f"cannot read the frame size from {self.path.name!r}; name it like "
                "Name_1920x1080_120fps_420_8bit_YUV.yuv or pass width=/height="
            )
        check_even_size(width, height, str(self.path))
        self.width, self.height = int(width), int(height)
        self.fps = float(fps if fps is not None else named.fps or DEFAULT_FPS)
        self.bit_depth = int(bit_depth if bit_depth is not None else named.bit_depth or 8)
        self.dtype = _sample_dtype(self.bit_depth)
        self.frame_bytes = frame_bytes(self.width, self.height, self.bit_depth)

        if not self.path.is_file():
            raise FileNotFoundError(f"no such YUV file: {self.path}")
        file_bytes = self.path.stat().st_size
        self.num_frames, remainder = divmod(file_bytes, self.frame_bytes)
        if remainder or self.num_frames == 0:
            raise ValueError(
                f"{self.path.name}: expected {self.width}x{self.height} YUV420 "
                f"{self.bit_depth}-bit = {self.frame_bytes} bytes per frame, but the file has "
                f"{file_bytes} bytes = {self.num_frames} frames + {remainder} bytes left; "
                "check width=/height=/bit_depth="
            )
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()

    def read_frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index`` (0-based) as planes ``Y (H, W)``, ``U (H/2, W/2)``, ``V (H/2, W/2)``."""
        return self._read_planes(index, index * self.frame_bytes)


def check_planes(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, width: int, height: int, dtype: np.dtype
) -> None:
    """Raise a clear ``ValueError`` unless the planes are ``width x height`` 4:2:0 of ``dtype``."""
    expected = ((height, width), (height // 2, width // 2), (height // 2, width // 2))
    got = (y.shape, u.shape, v.shape)
    if got != expected:
        raise ValueError(f"expected 4:2:0 planes of shapes {expected} for {width}x{height}, "
                         f"got {got}")
    for plane in (y, u, v):
        if plane.dtype != dtype:
            raise ValueError(f"expected {np.dtype(dtype).name} planes, got {plane.dtype}")


class YuvWriter(PlanarFile, FrameWriter):
    """Appends 4:2:0 frames to a raw ``.yuv`` file (8-bit: uint8; deeper: uint16 LE)."""

    def __init__(self, path: str | Path, width: int, height: int, bit_depth: int = 8) -> None:
        check_even_size(width, height, str(path))
        self.path = Path(path)
        self.width, self.height, self.bit_depth = width, height, bit_depth
        self.dtype = _sample_dtype(bit_depth)
        self.num_frames = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()

    def write_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt709",
                     upsample: str = "bilinear") -> None:
        """Append one frame given as planes ``Y (H, W)``, ``U, V (H/2, W/2)``; stored as they
        are, so ``matrix``/``upsample`` are unused."""
        check_planes(y, u, v, self.width, self.height, self.dtype)
        for plane in (y, u, v):
            self._file.write(np.ascontiguousarray(plane, dtype=self.dtype).tobytes())
        self.num_frames += 1
