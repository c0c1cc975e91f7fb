"""The strength map inside an H.264 or HEVC stream: user-data-unregistered SEI NAL units.

Every player skips SEI messages it does not know, so a stream that carries its maps this
way still plays anywhere, and its decode is unchanged; the enhancer finds the map in each
access unit (our UUID identifies it)::

    H.264: 00 00 00 01 | 06 (SEI)          | 05 (user data unregistered) | size | UUID | map | 80
    HEVC:  00 00 00 01 | 4E 01 (prefix SEI) | 05                          | size | UUID | map | 80

The payload is escaped with emulation-prevention bytes (00 00 0x -> 00 00 03 0x) as the
standards require. Access units come as Annex-B (start codes: raw .264/.265, our encoder's
packets) or length-prefixed (MP4/MKV, 4-byte lengths); both are read.
"""

from __future__ import annotations

import uuid

from enhancer.strength.strength_map import StrengthMapError

STRENGTH_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "enhancer/strength-map/v1").bytes
USER_DATA_UNREGISTERED = 5
CODECS = ("h264", "hevc")
_START = b"\x00\x00\x00\x01"


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _unescape(ebsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in ebsp:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _header(codec: str) -> bytes:
    if codec == "h264":
        return b"\x06"  # nal_ref_idc 0, type 6
    if codec == "hevc":
        return bytes([39 << 1, 1])  # PREFIX_SEI_NUT, layer 0, temporal id 0
    raise StrengthMapError(f"SEI carriage is defined for {CODECS}, not {codec!r}")


def sei_nal(payload: bytes, codec: str) -> bytes:
    """One Annex-B SEI NAL unit (start code included) carrying ``payload``."""
    body = STRENGTH_UUID + payload
    size = len(body)
    message = bytes([USER_DATA_UNREGISTERED]) + b"\xff" * (size // 255) + bytes([size % 255])
    return b"\x00\x00\x01" + _header(codec) + _escape(message + body + b"\x80")


def _is_vcl(nal: bytes, codec: str) -> bool:
    if not nal:
        return False
    if codec == "h264":
        return 1 <= nal[0] & 0x1F <= 5
    return (nal[0] >> 1) & 0x3F <= 31


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, start codes removed."""
    units, position = [], 0
    starts = []
    while True:
        found = data.find(b"\x00\x00\x01", position)
        if found < 0:
            break
        starts.append(found)
        position = found + 3
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        unit = data[start + 3:end]
        if i + 1 < len(starts):
            unit = unit.rstrip(b"\x00") if unit.endswith(b"\x00") else unit
        units.append(unit)
    return units


def _split_length_prefixed(data: bytes) -> list[bytes] | None:
    units, position = [], 0
    while position + 4 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        if length == 0 or position + 4 + length > len(data):
            return None
        units.append(data[position + 4:position + 4 + length])
        position += 4 + length
    return units if position == len(data) else None


def insert_sei(access_unit: bytes, payload: bytes, codec: str) -> bytes:
    """``access_unit`` (Annex-B) with an SEI NAL unit carrying ``payload`` placed before its
    first slice (after parameter sets, as SEI must precede the VCL units)."""
    nal = sei_nal(payload, codec)
    position = 0
    while True:
        found = access_unit.find(b"\x00\x00\x01", position)
        if found < 0:
            raise StrengthMapError(f"no slice NAL unit in a {len(access_unit)}-byte {codec} "
                                   "access unit; it is not Annex-B")
        if _is_vcl(access_unit[found + 3:found + 5], codec):
            start = found - 1 if found > 0 and access_unit[found - 1] == 0 else found
            return access_unit[:start] + nal + access_unit[start:]
        position = found + 3


def find_sei(access_unit: bytes, codec: str) -> bytes | None:
    """The strength-map payload of ``access_unit`` (Annex-B or 4-byte length-prefixed), or
    None when it carries none."""
    units = split_annexb(access_unit) if b"\x00\x00\x01" in access_unit[:4] else None
    if units is None:
        units = _split_length_prefixed(access_unit) or split_annexb(access_unit)
    header = _header(codec)
    for unit in units:
        if not unit.startswith(header):
            continue
        rbsp = _unescape(unit[len(header):])
        position = 0
        while position + 2 <= len(rbsp) and rbsp[position] != 0x80:
            kind = 0
            while rbsp[position] == 0xFF:
                kind, position = kind + 255, position + 1
            kind, position = kind + rbsp[position], position + 1
            size = 0
            while position < len(rbsp) and rbsp[position] == 0xFF:
                size, position = size + 255, position + 1
            if position >= len(rbsp):
                break
            size, position = size + rbsp[position], position + 1
            body = rbsp[position:position + size]
            position += size
            if kind == USER_DATA_UNREGISTERED and body[:16] == STRENGTH_UUID:
                return body[16:]
    return None


# --- where a frame's map travels -------------------------------------------------------------
# Registered codecs whose frames are H.264/HEVC access units: their maps travel inside the
# stream as SEI (the file still plays anywhere); every other codec's maps travel beside the
# frame, as the .bin container's per-frame side payload.
SEI_CODECS = {"x264": "h264", "x265": "hevc"}


def attach_strength(codec: str, frame_bytes: bytes, strength_bytes: bytes) -> tuple[bytes, bytes]:
    """``(frame bytes, side payload)`` carrying ``strength_bytes`` for a frame of ``codec``."""
    if not strength_bytes:
        return frame_bytes, b""
    if codec in SEI_CODECS:
        return insert_sei(frame_bytes, strength_bytes, SEI_CODECS[codec]), b""
    return frame_bytes, strength_bytes


def carried_strength(codec: str, frame_bytes: bytes, side: bytes = b"") -> bytes | None:
    """The coded strength map a frame of ``codec`` carries (its side payload, or its SEI),
    or None when it carries none (the checkpoint's default strength then applies)."""
    if side:
        return side
    if codec in SEI_CODECS and frame_bytes:
        return find_sei(frame_bytes, SEI_CODECS[codec])
    return None
