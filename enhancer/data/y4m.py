"""YUV4MPEG2 (``.y4m``) files: a text header, then ``FRAME`` + raw 4:2:0 planes per frame.

Header example: ``YUV4MPEG2 W832 H480 F30000:1001 Ip A1:1 C420jpeg``.
Accepted colour spaces: ``C420jpeg`` (the default when there is no ``C`` tag), ``C420``,
``C420mpeg2``, ``C420paldv`` (the same sample layout; only the chroma siting differs,
which this project ignores, as DCVC does) and ``C420p10`` (16-bit little-endian samples).

The reader scans the ``FRAME`` headers once when it opens (a seek per frame, no sample
reads), then reads any frame by seeking to it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from enhancer.data.writer import FrameWriter
from enhancer.data.yuv import PlanarFile, PlanarReader, check_even_size, check_planes, frame_bytes

MAGIC = b"YUV4MPEG2"
_COLORSPACE_BIT_DEPTH = {
    "420jpeg": 8, "420": 8, "420mpeg2": 8, "420paldv": 8, "420p10": 10, "420p12": 12,
}
_MAX_HEADER = 1024
_PROGRESSIVE = ("p", "?")  # Ip, or I? (not stated): read as progressive frames


def fps_to_fraction(fps: float) -> Fraction:
    """Frame rate as a ratio: 25.0 -> 25/1; 29.97 and 29.97002997 -> 30000/1001 (NTSC)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    ntsc_base = round(fps * 1.001)
    if fps != round(fps) and abs(fps * 1.001 - ntsc_base) < 1e-3:
        return Fraction(ntsc_base * 1000, 1001)
    return Fraction(fps).limit_denominator(100000)


def _read_line(file, path: Path) -> bytes:
    line = file.readline(_MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ValueError(f"{path}: truncated or malformed Y4M header line {line[:80]!r}")
    return line[:-1]


def _header_int(text: str, tag: str, path: Path) -> int:
    if not text.isdigit():
        raise ValueError(f"{path}: Y4M header {tag}{text} is not a whole number (e.g. {tag}832)")
    return int(text)


class Y4mReader(PlanarReader):
    """Streams frames of a 4:2:0 Y4M file as planes ``Y (H, W)``, ``U, V (H/2, W/2)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such Y4M file: {self.path}")
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self._parse_header()
            self._index_frames()
        except Exception:
            self._file.close()
            raise

    def _parse_header(self) -> None:
        tokens = _read_line(self._file, self.path).split(b" ")
        if tokens[0] != MAGIC:
            raise ValueError(f"{self.path} is not a Y4M file (starts with {tokens[0][:16]!r})")
        try:
            fields = {token[:1].decode(): token[1:].decode() for token in tokens[1:] if token}
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: Y4M header is not text: {b' '.join(tokens)[:80]!r}") from None
        if "W" not in fields or "H" not in fields:
            raise ValueError(f"{self.path}: Y4M header has no W/H: {b' '.join(tokens)!r}")
        self.width = _header_int(fields["W"], "W", self.path)
        self.height = _header_int(fields["H"], "H", self.path)
        check_even_size(self.width, self.height, str(self.path))
        rate = fields.get("F", "30:1").split(":")
        if (len(rate) != 2 or not all(part.isdigit() for part in rate)
                or not int(rate[0]) or not int(rate[1])):
            raise ValueError(
                f"{self.path}: Y4M frame rate F{fields['F']} is invalid; expected two positive "
                "whole numbers like F30:1 or F30000:1001"
            )
        self.fps = int(rate[0]) / int(rate[1])
        interlace = fields.get("I", "p")
        if interlace not in _PROGRESSIVE:
            kind = {"t": "top field first", "b": "bottom field first", "m": "mixed"}.get(
                interlace, "unknown")
            raise ValueError(
                f"{self.path}: Y4M header I{interlace} marks interlaced video ({kind}); only "
                "progressive frames (Ip) are read: deinterlace it first"
            )
        colorspace = fields.get("C", "420jpeg")
        if colorspace not in _COLORSPACE_BIT_DEPTH:
            raise ValueError(
                f"{self.path}: Y4M colour space C{colorspace} is not supported; accepted: "
                + ", ".join("C" + name for name in _COLORSPACE_BIT_DEPTH)
                + " (convert to 4:2:0 first)"
            )
        self.colorspace = colorspace
        self.bit_depth = _COLORSPACE_BIT_DEPTH[colorspace]
        self.dtype = np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype("<u2")
        self.frame_bytes = frame_bytes(self.width, self.height, self.bit_depth)

    def _index_frames(self) -> None:
        """Record the byte offset of every frame's samples."""
        file_bytes = self.path.stat().st_size
        self._offsets: list[int] = []
        position = self._file.tell()
        while position < file_bytes:
            line = _read_line(self._file, self.path)
            if not line.startswith(b"FRAME"):
                raise ValueError(
                    f"{self.path}: expected a FRAME header at byte {position} "
                    f"(frame {len(self._offsets)}), found {line[:16]!r}"
                )
            samples_at = self._file.tell()
            if samples_at + self.frame_bytes > file_bytes:
                raise ValueError(
                    f"{self.path}: frame {len(self._offsets)} is truncated: expected "
                    f"{self.width}x{self.height} YUV420 = {self.frame_bytes} bytes, file has "
                    f"{file_bytes - samples_at} bytes left"
                )
            self._offsets.append(samples_at)
            position = samples_at + self.frame_bytes
            self._file.seek(position)
        self.num_frames = len(self._offsets)
        if self.num_frames == 0:
            raise ValueError(f"{self.path}: Y4M file has no frames")

    def read_frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index`` (0-based) as planes ``Y (H, W)``, ``U (H/2, W/2)``, ``V (H/2, W/2)``."""
        in_range = 0 <= index < self.num_frames  # else _read_planes raises a clear IndexError
        return self._read_planes(index, self._offsets[index] if in_range else 0)


class Y4mWriter(PlanarFile, FrameWriter):
    """Writes 4:2:0 frames to a Y4M file (``C420jpeg``, or ``C420p10`` etc. above 8 bits)."""

    def __init__(
        self, path: str | Path, width: int, height: int, fps: float = 30.0, bit_depth: int = 8
    ) -> None:
        check_even_size(width, height, str(path))
        colorspace = "420jpeg" if bit_depth == 8 else f"420p{bit_depth}"
        if colorspace not in _COLORSPACE_BIT_DEPTH:
            raise ValueError(f"unsupported Y4M bit depth {bit_depth}; use 8, 10 or 12")
        self.path = Path(path)
        self.width, self.height, self.fps, self.bit_depth = width, height, fps, bit_depth
        self.dtype = np.dtype(np.uint8) if bit_depth == 8 else np.dtype("<u2")
        self.num_frames = 0
        rate = fps_to_fraction(fps)
        header = f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 "
        header += f"C{colorspace}\n"
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(header.encode())

    def write_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt709",
                     upsample: str = "bilinear") -> None:
        """Append one frame given as planes ``Y (H, W)``, ``U, V (H/2, W/2)``; stored as they
        are, so ``matrix``/``upsample`` are unused."""
        check_planes(y, u, v, self.width, self.height, self.dtype)
        self._file.write(b"FRAME\n")
        for plane in (y, u, v):
            self._file.write(np.ascontiguousarray(plane, dtype=self.dtype).tobytes())
        self.num_frames += 1
