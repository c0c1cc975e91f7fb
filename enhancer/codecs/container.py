"""The ``.bin`` container ``tools/codec.py`` writes: one file per coded sequence.

Layout (little endian)::

    magic      4s   b"ENHC"
    version    u8   FORMAT_VERSION
    name_len   u8   ; codec name (utf-8)
    quality    i16
    width      u16 ; height u16   (the unpadded frame size)
    frames     u32
    intra      i32  intra period (-1: only the first frame)
    fps        f32
    weights    8s   fingerprint of the codec weights (zeros for codecs without weights)
    lengths    u32 x frames    bytes of each frame
    crc32      u32 x frames    CRC-32 of each frame, checked before the entropy decoder runs
    payload    the frames' bytes, back to back

Bits per pixel count the frames' bytes only (the payload), as in CompressAI and DCVC.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from collections.abc import Iterator

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput, CodecStream

MAGIC = b"ENHC"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBB")
_FIELDS = struct.Struct("<hHHIif8s")


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

    @property
    def num_bytes(self) -> int:
        return sum(len(f) for f in self.frames)

    @property
    def bpp(self) -> float:
        return 8 * self.num_bytes / (self.width * self.height * max(len(self.frames), 1))

    def to_bytes(self) -> bytes:
        name = self.codec.encode()
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(name)) + name
        header += _FIELDS.pack(
            self.quality, self.width, self.height, len(self.frames), self.intra_period,
            self.fps, self.weights_fingerprint,
        )
        lengths = struct.pack(f"<{len(self.frames)}I", *(len(f) for f in self.frames))
        crcs = struct.pack(f"<{len(self.frames)}I", *(zlib.crc32(f) for f in self.frames))
        return header + lengths + crcs + b"".join(self.frames)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Container:
        if len(data) < _HEADER.size or data[:4] != MAGIC:
            raise CodecError(
                f"{source} is not an enhancer bitstream (expected magic {MAGIC!r}, "
                f"got {data[:4]!r}); encode it with `python tools/codec.py encode`"
            )
        _, version, name_len = _HEADER.unpack_from(data, 0)
        if version != FORMAT_VERSION:
            raise CodecError(
                f"{source} has container format version {version}, this enhancer reads version "
                f"{FORMAT_VERSION}; re-encode it with this version"
            )
        offset = _HEADER.size
        if len(data) < offset + name_len + _FIELDS.size:
            raise CodecError(f"{source} is truncated inside its header ({len(data)} bytes)")
        codec = data[offset : offset + name_len].decode("utf-8", errors="replace")
        offset += name_len
        quality, width, height, count, intra, fps, fingerprint = _FIELDS.unpack_from(data, offset)
        offset += _FIELDS.size
        table_end = offset + 8 * count
        if len(data) < table_end:
            raise CodecError(f"{source} is truncated inside its frame table ({count} frames)")
        lengths = struct.unpack_from(f"<{count}I", data, offset)
        crcs = struct.unpack_from(f"<{count}I", data, offset + 4 * count)
        expected = table_end + sum(lengths)
        if len(data) != expected:
            raise CodecError(
                f"{source} should hold {expected} bytes for its {count} frames but holds "
                f"{len(data)}: the file is {'truncated' if len(data) < expected else 'padded'}"
            )
        frames, offset = [], table_end
        for index, (length, crc) in enumerate(zip(lengths, crcs)):
            frame = data[offset : offset + length]
            if zlib.crc32(frame) != crc:
                raise CodecError(f"{source}: frame {index} is corrupt (CRC-32 mismatch)")
            frames.append(frame)
            offset += length
        return cls(codec, quality, width, height, intra, fps, fingerprint, frames)

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, renamed when complete."""
        write_atomic(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Container:
        path = Path(path)
        if not path.is_file():
            raise CodecError(f"bitstream {str(path)!r} does not exist")
        return cls.from_bytes(path.read_bytes(), source=str(path))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves a half-written file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
    fingerprint), then decode its frames in order: yields (frame bytes, output).

    The one check behind ``tools/codec.py decode`` and ``Enhancer.enhance(path)``;
    ``weights_hint`` says in the error how to get the right weights.
    """
    if container.codec != codec.name or container.quality != codec.quality:
        raise CodecError(
            f"the bitstream is {container.codec} q{container.quality}, "
            f"but the decoder is {codec.name} q{codec.quality}; use the matching codec"
        )
    if weights_fingerprint(codec) != container.weights_fingerprint:
        raise CodecError(
            f"the bitstream was encoded with other {container.codec} "
            f"weights (q{container.quality}, fingerprint {container.weights_fingerprint.hex()}, "
            f"decoder {weights_fingerprint(codec).hex()}); decode it with {weights_hint}"
        )
    stream = CodecStream(codec, container.intra_period)
    size = (container.height, container.width)
    for data in container.frames:
        yield data, stream.decompress(data, size)
