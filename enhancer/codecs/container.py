"""The ``.bin`` container ``tools/codec.py`` writes: one file per coded sequence.

Layout of version 3 (little endian)::

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
    per frame: index u32, length u32, side length u32, crc32 u32,
               padded height u16, padded width u16
               (the frame's position in the sequence, the bytes of the frame and of its side
               payload, their CRC-32, the size the codec coded)
    table_crc  u32  CRC-32 of the frame table
    payload    per frame: its bytes, then its side bytes

A frame's CRC-32 covers its side payload and is seeded with the header CRC and the frame's
index, so a frame moved to another slot, or put under another header, is refused even when
the table and header CRCs were recomputed. The side payload is optional per frame (empty
bytes: none); it carries what the encoder signals beside the codec's bytes (the strength
map of the enhancer).

Versions 1 and 2 are still read (side payloads empty): version 2's table entry is length,
crc32, padded height, padded width (0x0: not recorded); version 1 has no header/table CRC
and no padded sizes (its table is the ``frames`` lengths, then the ``frames`` CRC-32s).
Every field is checked before anything is allocated or any native entropy decoder sees
the bytes: a damaged header, table or frame raises :class:`CodecError`, never a crash or
garbage. :func:`decode_container` decodes only containers that record every frame's
padded size (not version 1): the size in the header is checked against it first. The CRCs
catch damage and partial edits, not a forger who rewrites every field consistently: such a
file hands crafted bytes to the codec's native entropy decoder, which is not memory safe.

Bits per pixel count every byte a decoder needs beyond the header and table: the frames'
bytes and their side payloads (CompressAI and DCVC count the frames' bytes; the side
payload is part of the stream too). :attr:`Container.side_bytes` is the side overhead.
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

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput
from enhancer.codecs.stream import CodecStream
from enhancer.data.paths import check_regular_input, write_atomic
from enhancer.utils.rate import bpp_from_bytes

MAGIC = b"ENHC"
FORMAT_VERSION = 3
READ_VERSIONS = (1, 2, 3)
MAX_SIDE = 16384  # per dimension
MAX_PIXELS = 8192 * 4352  # per frame: 8K UHD and a little more
_PREFIX = struct.Struct("<4sBB")
_FIELDS = struct.Struct("<hHHIif8s")
_CRC = struct.Struct("<I")
_ENTRY_V1 = struct.Struct("<II")  # length, crc (as two arrays)
_ENTRY_V2 = struct.Struct("<IIHH")  # length, crc, padded height, padded width
_ENTRY = struct.Struct("<IIIIHH")  # index, length, side length, crc, padded height, width
_INDEX = struct.Struct("<I")


def frame_crc(header_crc: int, index: int, data: bytes, side: bytes) -> int:
    """CRC-32 of frame ``index`` (its bytes, then its side payload) seeded with the header's
    CRC and the index: valid only in its own slot under its own header."""
    return zlib.crc32(side, zlib.crc32(data, zlib.crc32(_INDEX.pack(index), header_crc)))


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
    # per frame: what the encoder signals beside the codec's bytes (b"": none); empty list:
    # no frame has any
    side: list[bytes] = field(default_factory=list)

    @property
    def side_bytes(self) -> int:
        """Bytes of every frame's side payload (the overhead beside the codec's bytes)."""
        return sum(len(s) for s in self.side)

    @property
    def num_bytes(self) -> int:
        """Bytes of the stream: every frame's bytes and side payload."""
        return sum(len(f) for f in self.frames) + self.side_bytes

    @property
    def bpp(self) -> float:
        return bpp_from_bytes(self.num_bytes, self.height, self.width, max(len(self.frames), 1))

    def to_bytes(self) -> bytes:
        check_frame_size(self.width, self.height)
        if len(self.padded_sizes) != len(self.frames):
            raise CodecError(
                f"{len(self.padded_sizes)} padded sizes for {len(self.frames)} frames; give "
                "each frame the (H, W) it was coded at (codec.padded_size((height, width)))"
            )
        for index, (padded_h, padded_w) in enumerate(self.padded_sizes):
            if not (0 < padded_h <= 65535 and 0 < padded_w <= 65535):
                raise CodecError(f"frame {index}: padded size {padded_w}x{padded_h} is not "
                                 "a frame size (1..65535 a side)")
        side = self.side or [b""] * len(self.frames)
        if len(side) != len(self.frames):
            raise CodecError(f"{len(side)} side payloads for {len(self.frames)} frames; give "
                             "one per frame (b'' for none)")
        name = self.codec.encode()
        if len(name) > 255:
            raise CodecError(f"codec name {self.codec[:40]!r}... is longer than 255 bytes")
        header = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)) + name
        header += _FIELDS.pack(
            self.quality, self.width, self.height, len(self.frames), self.intra_period,
            self.fps, self.weights_fingerprint,
        )
        header_crc = zlib.crc32(header)
        header += _CRC.pack(header_crc)
        table = b"".join(
            _ENTRY.pack(index, len(data), len(extra), frame_crc(header_crc, index, data, extra),
                        *size)
            for index, (data, extra, size) in enumerate(zip(self.frames, side, self.padded_sizes))
        )
        payload = b"".join(data + extra for data, extra in zip(self.frames, side))
        return header + table + _CRC.pack(zlib.crc32(table)) + payload

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
        header_crc = 0
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
        entry = {1: _ENTRY_V1, 2: _ENTRY_V2, 3: _ENTRY}[version]
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
        side_lengths = [0] * count
        if version == 3:
            entries = [_ENTRY.unpack_from(table, i * _ENTRY.size) for i in range(count)]
            for slot, (index, *_, padded_h, padded_w) in enumerate(entries):
                if index != slot:
                    raise CodecError(
                        f"{source}: frame table entry {slot} holds frame {index}: frames were "
                        "reordered, duplicated or dropped after the file was written"
                    )
                if padded_h == 0 or padded_w == 0:
                    raise CodecError(f"{source}: frame {slot} records a padded size of "
                                     f"{padded_w}x{padded_h}: the frame table is forged")
            lengths = [e[1] for e in entries]
            side_lengths = [e[2] for e in entries]
            crcs = [e[3] for e in entries]
            padded = [(e[4], e[5]) for e in entries]
        elif version == 2:
            entries = [_ENTRY_V2.unpack_from(table, i * _ENTRY_V2.size) for i in range(count)]
            lengths = [e[0] for e in entries]
            crcs = [e[1] for e in entries]
            padded = [(e[2], e[3]) for e in entries]
        else:
            lengths = list(struct.unpack_from(f"<{count}I", table, 0))
            crcs = list(struct.unpack_from(f"<{count}I", table, 4 * count))
            padded = [(0, 0)] * count
        expected = size - reader.left + sum(lengths) + sum(side_lengths)
        if size != expected:
            raise CodecError(
                f"{source} should hold {expected} bytes for its {count} frames but holds "
                f"{size}: the file is {'truncated' if size < expected else 'padded'}"
            )
        frames, side = [], []
        for index, (length, side_length, crc) in enumerate(zip(lengths, side_lengths, crcs)):
            frame = reader.take(length, f"frame {index}")
            extra = reader.take(side_length, f"the side payload of frame {index}")
            actual = (frame_crc(header_crc, index, frame, extra) if version == 3
                      else zlib.crc32(frame))
            if actual != crc:
                raise CodecError(f"{source}: frame {index} is corrupt (CRC-32 mismatch)")
            frames.append(frame)
            side.append(extra)
        padded_sizes = [] if all(p == (0, 0) for p in padded) else padded
        return cls(codec, quality, width, height, intra, fps, fingerprint, frames, padded_sizes,
                   side)

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, renamed when complete."""
        write_atomic(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Container:
        """Read a container file: its header is checked before the rest is read."""
        path = Path(path)
        check_regular_input(path, "bitstream")
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
    if len(container.padded_sizes) != len(container.frames):
        raise CodecError(
            "the bitstream records no coded size for its frames (a version-1 file or one "
            "written without padded sizes), so its frame size cannot be checked before "
            "decoding; re-encode the source with `python tools/codec.py encode`"
        )
    for index, padded in enumerate(container.padded_sizes):
        if tuple(padded) != expected:  # before any entropy decoder sees the bytes
            raise CodecError(
                f"frame {index} was coded at {padded[1]}x{padded[0]}, but a "
                f"{container.width}x{container.height} {codec.name} frame pads to "
                f"{expected[1]}x{expected[0]}: the header does not belong to these frames"
            )
    stream = CodecStream(codec, container.intra_period)
    return ((data, stream.decompress(data, size)) for data in container.frames)
