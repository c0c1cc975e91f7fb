"""Compact, checked bytes for a strength map: an adaptive arithmetic coder with contexts.

Payload of one frame's map (what the ``.bin`` container's per-frame side data and the
H.264/HEVC user-data SEI carry)::

    mode      u8     0: the previous frame's map again (nothing else follows)
                     1: an intra map (header + symbols coded with the left neighbour as context)
                     2: an inter map (symbols coded with the previous map's symbol as context)
                     3: an intra map with the tag of the enhancer it was chosen for
    [mode 1, 3] block u8 (block size / 8), rows u16, cols u16, count u8, scales count x u8
              (each scale in quarters: 5 = 1.25; count 0: the default set, no bytes follow)
    [mode 3]  model tag u16 (:func:`enhancer.strength.strength_map.model_tag`); repeat and
              inter maps carry the tag of the intra map they follow
    [mode 1, 2, 3] the block indices, row-major, arithmetic-coded
    crc8      u8     CRC-8 (polynomial 0x07) of every byte above

A map repeated from the previous frame costs 2 bytes (the roll-out sends none at all: a map
persists until replaced); an intra map of a 640x480 frame in 64-px blocks (80 blocks) with
the default scale set typically 8-14 bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from enhancer.strength.strength_map import DEFAULT_SCALES, StrengthMap, StrengthMapError

MODE_SAME, MODE_INTRA, MODE_INTER, MODE_INTRA_TAGGED = 0, 1, 2, 3
_INTRA_HEADER = struct.Struct("<BHHB")

# --- CRC-8 ----------------------------------------------------------------------------------
_CRC8_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = ((_crc << 1) ^ 0x07) & 0xFF if _crc & 0x80 else (_crc << 1) & 0xFF
    _CRC8_TABLE.append(_crc)


def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


# --- adaptive arithmetic coder (32-bit integer, E1/E2/E3 renormalisation) -------------------
_BITS = 32
_FULL = (1 << _BITS) - 1
_HALF = 1 << (_BITS - 1)
_QUARTER = 1 << (_BITS - 2)
_INCREMENT, _MAX_TOTAL = 24, 1 << 13


class _Model:
    """Adaptive symbol frequencies of one context."""

    def __init__(self, alphabet: int):
        self.freq = [1] * alphabet

    def interval(self, symbol: int) -> tuple[int, int, int]:
        low = sum(self.freq[:symbol])
        return low, low + self.freq[symbol], sum(self.freq)

    def update(self, symbol: int) -> None:
        self.freq[symbol] += _INCREMENT
        if sum(self.freq) > _MAX_TOTAL:
            self.freq = [max(1, f // 2) for f in self.freq]


class _Encoder:
    def __init__(self) -> None:
        self.low, self.high, self.pending, self.bits = 0, _FULL, 0, []

    def _emit(self, bit: int) -> None:
        self.bits.append(bit)
        self.bits.extend([1 - bit] * self.pending)
        self.pending = 0

    def encode(self, model: _Model, symbol: int) -> None:
        sym_low, sym_high, total = model.interval(symbol)
        span = self.high - self.low + 1
        self.high = self.low + span * sym_high // total - 1
        self.low = self.low + span * sym_low // total
        while True:
            if self.high < _HALF:
                self._emit(0)
            elif self.low >= _HALF:
                self._emit(1)
                self.low -= _HALF
                self.high -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.pending += 1
                self.low -= _QUARTER
                self.high -= _QUARTER
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1
        model.update(symbol)

    def finish(self) -> bytes:
        self.pending += 1
        self._emit(0 if self.low < _QUARTER else 1)
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return np.packbits(np.array(bits, dtype=np.uint8)).tobytes() if bits else b""


class _Decoder:
    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist()
        self.position = 0
        self.low, self.high, self.value = 0, _FULL, 0
        for _ in range(_BITS):
            self.value = (self.value << 1) | self._bit()

    def _bit(self) -> int:
        bit = self.bits[self.position] if self.position < len(self.bits) else 0
        self.position += 1
        return bit

    def decode(self, model: _Model) -> int:
        total = sum(model.freq)
        span = self.high - self.low + 1
        target = ((self.value - self.low + 1) * total - 1) // span
        symbol, cumulative = 0, 0
        while cumulative + model.freq[symbol] <= target:
            cumulative += model.freq[symbol]
            symbol += 1
            if symbol >= len(model.freq):
                raise StrengthMapError("the strength map's coded symbols are damaged")
        sym_low, sym_high = cumulative, cumulative + model.freq[symbol]
        self.high = self.low + span * sym_high // total - 1
        self.low = self.low + span * sym_low // total
        while True:
            if self.high < _HALF:
                pass
            elif self.low >= _HALF:
                self.low -= _HALF
                self.high -= _HALF
                self.value -= _HALF
            elif self.low >= _QUARTER and self.high < _HALF + _QUARTER:
                self.low -= _QUARTER
                self.high -= _QUARTER
                self.value -= _QUARTER
            else:
                break
            self.low, self.high = 2 * self.low, 2 * self.high + 1
            self.value = 2 * self.value + self._bit()
        model.update(symbol)
        return symbol


def _context(indices: np.ndarray, reference: np.ndarray | None, row: int, col: int) -> int:
    """A block's coding context: the previous map's symbol there (inter), else the left
    neighbour's (intra; the block above at a row start; 0 for the first block)."""
    if reference is not None:
        return int(reference[row, col])
    if col > 0:
        return int(indices[row, col - 1])
    return int(indices[row - 1, 0]) if row > 0 else 0


def encode_map(strength: StrengthMap, previous: StrengthMap | None = None) -> bytes:
    """The bytes of ``strength``; ``previous`` (the last frame's map) enables the two
    cheap modes (repeat, and inter coding) when its grid, scales and model tag match. An
    intra map with a ``model_tag`` is written in mode 3."""
    alphabet = len(strength.scales)
    same_grid = (previous is not None and previous.scales == strength.scales
                 and previous.block == strength.block
                 and previous.indices.shape == strength.indices.shape
                 and previous.model_tag == strength.model_tag)
    if same_grid and np.array_equal(previous.indices, strength.indices):
        body = bytes([MODE_SAME])
    else:
        reference = previous.indices if same_grid else None
        if reference is None:
            rows, cols = strength.indices.shape
            default = strength.scales == DEFAULT_SCALES
            tagged = strength.model_tag is not None
            header = bytes([MODE_INTRA_TAGGED if tagged else MODE_INTRA]) + _INTRA_HEADER.pack(
                strength.block // 8, rows, cols, 0 if default else alphabet)
            if not default:
                header += bytes(round(s * 4) for s in strength.scales)
            if tagged:
                header += struct.pack("<H", strength.model_tag)
        else:
            header = bytes([MODE_INTER])
        models = [_Model(alphabet) for _ in range(alphabet)]
        encoder = _Encoder()
        rows, cols = strength.indices.shape
        for row in range(rows):
            for col in range(cols):
                encoder.encode(models[_context(strength.indices, reference, row, col)],
                               int(strength.indices[row, col]))
        body = header + encoder.finish()
    return body + bytes([crc8(body)])


def decode_map(data: bytes, previous: StrengthMap | None = None,
               frame_size: tuple[int, int] | None = None) -> StrengthMap:
    """The map coded in ``data`` (see :func:`encode_map`). ``previous``: the map decoded for
    the frame before (needed by the repeat and inter modes). ``frame_size`` ``(H, W)``:
    checked against the map's grid. Damaged or mismatched bytes raise
    :class:`StrengthMapError`."""
    if len(data) < 2 or crc8(data[:-1]) != data[-1]:
        raise StrengthMapError(f"the strength map ({len(data)} bytes) is damaged (CRC-8 "
                               "mismatch); re-encode the stream")
    body, mode = data[:-1], data[0]
    if mode in (MODE_SAME, MODE_INTER) and previous is None:
        raise StrengthMapError("the strength map refers to the previous frame's map, but none "
                               "was decoded; decode the stream from its first frame")
    if mode == MODE_SAME:
        if len(body) != 1:
            raise StrengthMapError("the strength map's repeat mode carries extra bytes")
        strength = previous
    elif mode in (MODE_INTRA, MODE_INTRA_TAGGED):
        fixed = 1 + _INTRA_HEADER.size
        if len(body) < fixed:
            raise StrengthMapError("the strength map's header is truncated")
        block8, rows, cols, count = _INTRA_HEADER.unpack_from(body, 1)
        tag_bytes = 2 if mode == MODE_INTRA_TAGGED else 0
        if len(body) < fixed + count + tag_bytes or rows < 1 or cols < 1:
            raise StrengthMapError("the strength map's header is damaged")
        scales = tuple(b / 4 for b in body[fixed:fixed + count]) if count else DEFAULT_SCALES
        tag = struct.unpack_from("<H", body, fixed + count)[0] if tag_bytes else None
        strength = _decode_symbols(body[fixed + count + tag_bytes:], rows, cols, scales,
                                   block8 * 8, None, tag)
    elif mode == MODE_INTER:
        strength = _decode_symbols(body[1:], *previous.indices.shape, previous.scales,
                                   previous.block, previous.indices, previous.model_tag)
    else:
        raise StrengthMapError(f"unknown strength map mode {mode}; this enhancer reads "
                               f"modes {MODE_SAME}-{MODE_INTRA_TAGGED}: update it")
    if frame_size is not None:
        strength.check_frame_size(*frame_size)
    return strength


def _decode_symbols(data: bytes, rows: int, cols: int, scales: tuple[float, ...], block: int,
                    reference: np.ndarray | None, tag: int | None) -> StrengthMap:
    alphabet = len(scales)
    models = [_Model(alphabet) for _ in range(alphabet)]
    decoder = _Decoder(data)
    indices = np.zeros((rows, cols), dtype=np.uint8)
    for row in range(rows):
        for col in range(cols):
            indices[row, col] = decoder.decode(models[_context(indices, reference, row, col)])
    if decoder.position > len(decoder.bits) + _BITS:
        raise StrengthMapError("the strength map's coded symbols are truncated")
    return StrengthMap(block=block, scales=scales, indices=indices, model_tag=tag)
