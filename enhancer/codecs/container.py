"""The ``.bin`` container ``tools/codec.py`` writes: one file per coded sequence.

Layout of version 2 (little endian)::

    magic      4s   b"ENHC"
    version    u8   FORMAT_VERSION
    name_len   u8   ; codec name (utf-8)
    quality    i16
    width      u16 ; height u16   (the unpadded frame size)
    frames     u32
    intra      i32  intra period (-1: only the first frame)
    fps        f32
    weights    8s   fingerprint of the codec weights (zeros for codecs without weights)
    header_crc u32  CRC-32 of every byte above
    per frame: length u32, crc32 u32, padded height u16, padded width u16
               (bytes of the frame, CRC-32 of them, the size the codec coded; 0x0: not recorded)
    table_crc  u32  CRC-32 of the frame table
    payload    the frames' bytes, back to back

Version 1 (still read) has no header/table CRC and no padded sizes: its table is the
``frames`` lengths, then the ``frames`` CRC-32s. Every field is checked before anything
is allocated or any native entropy decoder sees the bytes: a damaged header, table or
frame raises :class:`CodecError`, never a crash or garbage.

Bits per pixel count the frames' bytes only (the payload), as in CompressAI and DCVC.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput, CodecStream
from enhancer.data.paths import write_atomic
from enhancer.metrics.bpp import bpp_from_bytes

MAGIC = b"ENHC"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MAX_SIDE = 16384  # per dimension
MAX_PIXELS = 8192 * 4352  # per frame: 8K UHD and a little more
_PREFIX = struct.Struct("<4sBB")
_FIELDS = struct.Struct("<hHHIif8s")
_CRC = struct.Struct("<I")
_ENTRY_V1 = struct.Struct("<II")  # length, crc (as two arrays)
_ENTRY = struct.Struct("<IIHH")  # length, crc, padded height, padded width


def check_frame_size(width: int, height: int, what: str = "the video") -> None:
    """Raise a :class:`CodecError` unless ``width x height`` fits the container's limits."""
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise CodecError(
            f"{what} is {width}x{height}; the .bin container holds frames of 1..{MAX_SIDE} "
            f"pixels a side and at most {MAX_PIXELS} pixels ({MAX_PIXELS // 4352}x4352); "
            "crop or scale it down"
        )


@dataclass
class Container:
    codec: str
    quality: int
    width: int
    height: int
    intra_period: int
    fps: float = 30.0
    weights_fingerprint: bytes = bytes(8)
    frames: list[bytes] = field(default_factory=list)
    # (H, W) each frame was coded at (the codec's padded size); empty: not recorded
    padded_sizes: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_bytes(self) -> int:
        return sum(len(f) for f in self.frames)

    @property
    def bpp(self) -> float:
        return bpp_from_bytes(self.num_bytes, self.height, self.width, max(len(self.frames), 1))

    def to_bytes(self) -> bytes:
        check_frame_size(self.width, self.height)
        if self.padded_sizes and len(self.padded_sizes) != len(self.frames):
            raise CodecError(f"{len(self.padded_sizes)} padded sizes for {len(self.frames)} frames")
        name = self.codec.encode()
        if len(name) > 255:
            raise CodecError(f"codec name {self.codec[:40]!r}... is longer than 255 bytes")
        header = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)) + name
        header += _FIELDS.pack(
            self.quality, self.width, self.height, len(self.frames), self.intra_period,
            self.fps, self.weights_fingerprint,
        )
        header += _CRC.pack(zlib.crc32(header))
        sizes = self.padded_sizes or [(0, 0)] * len(self.frames)
        table = b"".join(_ENTRY.pack(len(data), zlib.crc32(data), *size)
                         for data, size in zip(self.frames, sizes))
        return header + table + _CRC.pack(zlib.crc32(table)) + b"".join(self.frames)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Container:
        return cls.read(io.BytesIO(data), len(data), source)

    @classmethod
    def read(cls, stream: BinaryIO, size: int, source: str = "<stream>") -> Container:
        """Parse a container of ``size`` bytes from ``stream``: the header first (checked,
        without reading further), then the frame table, then the frames one by one."""
        reader = _Reader(stream, size, source)
        prefix = reader.take(min(size, _PREFIX.size))
        if prefix[:4] != MAGIC[: len(prefix)] or len(prefix) < 4:
            raise CodecError(
                f"{source} is not an enhancer bitstream (expected magic {MAGIC!r}, "
                f"got {prefix[:4]!r}); encode it with `python tools/codec.py encode`"
            )
        if len(prefix) < _PREFIX.size:
            raise CodecError(f"{source} is truncated inside its header ({size} bytes)")
        _, version, name_len = _PREFIX.unpack(prefix)
        if version not in READ_VERSIONS:
            raise CodecError(
                f"{source} has container format version {version}, this enhancer reads versions "
                f"{', '.join(map(str, READ_VERSIONS))}; re-encode it with this version"
            )
        crc_size = _CRC.size if version >= 2 else 0
        rest = reader.take(name_len + _FIELDS.size + crc_size, "its header")
        if crc_size:
            (header_crc,) = _CRC.unpack_from(rest, len(rest) - crc_size)
            if zlib.crc32(prefix + rest[:-crc_size]) != header_crc:
                raise CodecError(f"{source}: the header is corrupt (CRC-32 mismatch); "
                                 "the file was damaged after it was written")
        try:
            codec = rest[:name_len].decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError(f"{source}: the codec name {rest[:name_len]!r} is not utf-8") from None
        quality, width, height, count, intra, fps, fingerprint = _FIELDS.unpack_from(rest, name_len)
        check_frame_size(width, height, f"{source}: the header says the video")
        if count == 0:
            raise CodecError(f"{source} holds no frames")
        if intra == 0 or intra < -1:
            raise CodecError(f"{source}: the header's intra period {intra} is invalid")
        if not (math.isfinite(fps) and fps > 0):
            raise CodecError(f"{source}: the header's frame rate {fps} is invalid")
        entry = _ENTRY if version >= 2 else _ENTRY_V1
        table_bytes = entry.size * count
        if reader.left < table_bytes + crc_size + count:  # every frame holds at least a byte
            raise CodecError(
                f"{source} says it holds {count} frames, but {size} bytes cannot: the file "
                "is truncated or its header damaged"
            )
        table = reader.take(table_bytes, "its frame table")
        if crc_size:
            (table_crc,) = _CRC.unpack(reader.take(crc_size, "its frame table"))
            if zlib.crc32(table) != table_crc:
                raise CodecError(f"{source}: the frame table is corrupt (CRC-32 mismatch)")
            entries = [_ENTRY.unpack_from(table, i * _ENTRY.size) for i in range(count)]
            lengths = [e[0] for e in entries]
            crcs = [e[1] for e in entries]
            padded = [(e[2], e[3]) for e in entries]
        else:
            lengths = list(struct.unpack_from(f"<{count}I", table, 0))
            crcs = list(struct.unpack_from(f"<{count}I", table, 4 * count))
            padded = [(0, 0)] * count
        expected = size - reader.left + sum(lengths)
        if size != expected:
            raise CodecError(
                f"{source} should hold {expected} bytes for its {count} frames but holds "
                f"{size}: the file is {'truncated' if size < expected else 'padded'}"
            )
        frames = []
        for index, (length, crc) in enumerate(zip(lengths, crcs)):
            frame = reader.take(length, f"frame {index}")
            if zlib.crc32(frame) != crc:
                raise CodecError(f"{source}: frame {index} is corrupt (CRC-32 mismatch)")
            frames.append(frame)
        padded_sizes = [] if all(p == (0, 0) for p in padded) else padded
        return cls(codec, quality, width, height, intra, fps, fingerprint, frames, padded_sizes)

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, renamed when complete."""
        write_atomic(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Container:
        """Read a container file: its header is checked before the rest is read."""
        path = Path(path)
        if path.is_dir():
            raise CodecError(f"bitstream {str(path)!r} is a folder, not a .bin file")
        if not path.is_file():
            raise CodecError(f"bitstream {str(path)!r} does not exist")
        with open(path, "rb") as handle:
            return cls.read(handle, os.fstat(handle.fileno()).st_size, source=str(path))


class _Reader:
    """Exact reads from a stream of known size; a short read is a truncated container."""

    def __init__(self, stream: BinaryIO, size: int, source: str):
        self.stream, self.left, self.source = stream, size, source

    def take(self, count: int, inside: str = "its header") -> bytes:
        data = self.stream.read(count) if count <= self.left else b""
        if len(data) != count:
            raise CodecError(f"{self.source} is truncated inside {inside}")
        self.left -= count
        return data


def weights_fingerprint(module: torch.nn.Module) -> bytes:
    """8-byte hash of a module's parameters and buffers (zeros when it has none)."""
    state = module.state_dict()
    if not state:
        return bytes(8)
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()[:8]


def decode_container(codec: CodecAdapter, container: Container,
                     weights_hint: str = "the weights used to encode it"
                     ) -> Iterator[tuple[bytes, CodecOutput]]:
    """Check that ``container`` was written by ``codec`` (name, quality, weights
    fingerprint, padded sizes) at once, then return an iterator that decodes its frames
    in order, yielding (frame bytes, output).

    The one check behind ``tools/codec.py decode`` and ``Enhancer.enhance(path)``;
    ``weights_hint`` says in the error how to get the right weights.
    """
    if container.codec != codec.name or container.quality != codec.quality:
        raise CodecError(
            f"the bitstream is {container.codec} q{container.quality}, "
            f"but the decoder is {codec.name} q{codec.quality}; use the matching codec"
        )
    fingerprint = weights_fingerprint(codec)
    if fingerprint != container.weights_fingerprint:
        if not codec.learned or fingerprint == bytes(8):
            raise CodecError(
                f"the bitstream says it was coded with codec weights (fingerprint "
                f"{container.weights_fingerprint.hex()}), but {codec.name} has none: "
                "the file was not written by tools/codec.py or was altered"
            )
        raise CodecError(
            f"the bitstream was encoded with other {container.codec} "
            f"weights (q{container.quality}, fingerprint {container.weights_fingerprint.hex()}, "
            f"decoder {fingerprint.hex()}); decode it with {weights_hint}"
        )
    size = (container.height, container.width)
    expected = codec.padded_size(size)
    for index, padded in enumerate(container.padded_sizes):
        if tuple(padded) != expected:  # before any entropy decoder sees the bytes
            raise CodecError(
                f"frame {index} was coded at {padded[1]}x{padded[0]}, but a "
                f"{container.width}x{container.height} {codec.name} frame pads to "
                f"{expected[1]}x{expected[0]}: the header does not belong to these frames"
            )
    stream = CodecStream(codec, container.intra_period)
    return ((data, stream.decompress(data, size)) for data in container.frames)
