"""Entropy-coder strings in one frame record: a u32 length before each (adapters share it)."""

from __future__ import annotations

import struct

from enhancer.codecs.base import CodecError


def pack_strings(strings: list[bytes]) -> bytes:
    """Concatenate entropy-coder strings with a u32 length before each."""
    return b"".join(struct.pack("<I", len(s)) + s for s in strings)


def unpack_strings(data: bytes, count: int) -> list[bytes]:
    """Inverse of :func:`pack_strings`; raises CodecError on truncated data."""
    strings, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(data):
            raise CodecError(f"frame data truncated: expected {count} strings, data ends at byte {offset}")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise CodecError(
                f"frame data truncated: a string of {length} bytes at byte {offset}, "
                f"only {len(data) - offset} left"
            )
        strings.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise CodecError(f"frame data has {len(data) - offset} unexpected trailing bytes")
    return strings
