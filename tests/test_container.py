"""The ``.bin`` container (enhancer/codecs/container.py): its format (version 3 with frame
indices and side payloads; versions 1 and 2 still read), its checks before any native
decoder sees a byte, and fuzzing: flipped bytes and forgeries with valid CRCs."""

from __future__ import annotations

import random
import struct
import tracemalloc
import warnings
import zlib

import pytest
import torch
from conftest import SHARED_DATA, leftovers, requires_shared_data, run_codec

from enhancer.codecs import CodecError, load_codec
from enhancer.codecs.container import Container, decode_container, frame_crc

CLIP = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"
WIDTH_OFFSET = 28  # 6-byte prefix + "bmshj2018-hyperprior" (20) + quality (2)
FIELDS_SIZE = 26  # quality .. weights fingerprint
ENTRY_SIZE = 20  # v3: index, length, side length, crc, padded height, padded width


def x264_container(**fields) -> Container:
    values = {"codec": "x264", "quality": 30, "width": 160, "height": 96, "intra_period": -1,
              "frames": [b"x"], "padded_sizes": [(96, 160)]}
    return Container(**{**values, **fields})


@pytest.fixture(scope="module")
def hyperprior_bitstream(tmp_path_factory):
    """One 160x96 frame of bmshj2018-hyperprior q1 with --checkpoint random."""
    if not CLIP.is_file():
        pytest.skip("shared test clip missing")
    path = tmp_path_factory.mktemp("hp") / "clip.bin"
    assert run_codec(["encode", "--codec", "bmshj2018-hyperprior", "--quality", "1", "--frames",
                      "1", "--checkpoint", "random", str(CLIP), str(path)]) == 0
    return path


def _patched(data: bytes, offset: int, fmt: str, *values) -> bytes:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, offset, *values)
    return bytes(patched)


# --- the header is protected -------------------------------------------------------------
@requires_shared_data
@pytest.mark.parametrize("size", [(224, 96), (160, 160), (320, 192), (2048, 2048), (162, 96),
                                  (65534, 65534)])
def test_a_changed_frame_size_is_refused_before_decoding(hyperprior_bitstream, tmp_path, capsys,
                                                         size):
    data = _patched(hyperprior_bitstream.read_bytes(), WIDTH_OFFSET, "<HH", *size)
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(data)
    assert run_codec(["decode", "--checkpoint", "random", str(damaged),
                      str(tmp_path / "o.y4m")]) == 2
    assert "header is corrupt" in capsys.readouterr().err
    assert not (tmp_path / "o.y4m").exists() and leftovers(tmp_path) == []


@requires_shared_data
def test_frames_of_another_size_never_reach_the_entropy_decoder(hyperprior_bitstream):
    """A header rewritten with a valid CRC still cannot claim another padded size."""
    container = Container.load(hyperprior_bitstream)
    assert container.padded_sizes == [(128, 192)]
    container.width = 224  # pads to 256: the frame was coded at 192
    forged = Container.from_bytes(container.to_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        codec = load_codec("bmshj2018-hyperprior", 1)
    forged.weights_fingerprint = container.weights_fingerprint
    with pytest.raises(CodecError, match="frame 0 was coded at 192x128"):
        next(decode_container(codec, forged))


def _forged(data: bytes, name: str, offset: int, fmt: str, *values) -> bytes:
    """``data`` with a header field changed and its header CRC recomputed (a forgery)."""
    header_end = 6 + len(name) + 26
    header = _patched(data[:header_end], offset, fmt, *values)
    return header + struct.pack("<I", zlib.crc32(header)) + data[header_end + 4:]


def test_frame_size_and_count_are_capped_before_allocating():
    data = x264_container().to_bytes()
    width_at = 6 + len("x264") + 2
    with pytest.raises(CodecError, match="65534x65534"):
        Container.from_bytes(_forged(data, "x264", width_at, "<HH", 65534, 65534))
    # a billion frames in a 60-byte file
    with pytest.raises(CodecError, match="says it holds 1000000000 frames"):
        Container.from_bytes(_forged(data, "x264", width_at + 4, "<I", 10**9))
    with pytest.raises(CodecError, match="65536x96"):
        x264_container(width=65536).to_bytes()


def test_version_1_files_are_still_read_but_not_decoded_unchecked():
    frames = [b"abc", b"defgh"]
    name = b"x264"
    v1 = struct.pack("<4sBB", b"ENHC", 1, len(name)) + name
    v1 += struct.pack("<hHHIif8s", 30, 160, 96, 2, -1, 25.0, bytes(8))
    v1 += struct.pack("<2I", 3, 5) + struct.pack("<2I", *(zlib.crc32(f) for f in frames))
    container = Container.from_bytes(v1 + b"".join(frames))
    assert (container.codec, container.width, container.frames) == ("x264", 160, frames)
    assert container.padded_sizes == [] and container.side == [b"", b""]
    # It records no coded size, so nothing could check its header against its frames.
    with pytest.raises(CodecError, match="records no coded size"):
        decode_container(load_codec("x264", 30), container)


def _version_2(container: Container, padded_sizes: list[tuple[int, int]]) -> bytes:
    """``container`` written as version 2 did (no index, no side payload)."""
    name = container.codec.encode()
    header = struct.pack("<4sBB", b"ENHC", 2, len(name)) + name
    header += struct.pack("<hHHIif8s", container.quality, container.width, container.height,
                          len(container.frames), container.intra_period, container.fps,
                          container.weights_fingerprint)
    table = b"".join(struct.pack("<IIHH", len(f), zlib.crc32(f), *size)
                     for f, size in zip(container.frames, padded_sizes))
    return (header + struct.pack("<I", zlib.crc32(header)) + table
            + struct.pack("<I", zlib.crc32(table)) + b"".join(container.frames))


def test_version_2_files_are_still_read_and_their_padded_size_always_checked():
    frames = [b"abc", b"defgh"]
    written = x264_container(frames=frames, padded_sizes=[(96, 160)] * 2)
    container = Container.from_bytes(_version_2(written, [(96, 160)] * 2))
    assert (container.frames, container.padded_sizes) == (frames, [(96, 160)] * 2)
    assert container.side == [b"", b""] and container.num_bytes == 8
    # A forged header (1024x1024) with a 0x0 padded size and valid CRCs: once this skipped
    # the size check and decoded garbage; now it is refused before any decoder runs.
    forged = x264_container(frames=frames, width=1024, height=1024)
    codec = load_codec("x264", 30)
    container = Container.from_bytes(_version_2(forged, [(0, 0)] * 2))
    with pytest.raises(CodecError, match="records no coded size"):
        decode_container(codec, container)
    container = Container.from_bytes(_version_2(written, [(96, 160), (0, 0)]))
    with pytest.raises(CodecError, match="frame 1 was coded at 0x0"):
        decode_container(codec, container)


def test_short_and_foreign_files_get_clear_messages(tmp_path):
    with pytest.raises(CodecError, match="truncated inside its header"):
        Container.from_bytes(b"ENHC\x02")
    with pytest.raises(CodecError, match="is a folder"):
        Container.load(tmp_path)
    # The header is read first: a big foreign file is refused without reading it.
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.write(b"RIFF")
        handle.truncate(1 << 30)  # sparse: no disk used
    tracemalloc.start()
    with pytest.raises(CodecError, match="not an enhancer bitstream"):
        Container.load(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


# --- fuzz: flipped bytes decode bit-exactly or raise CodecError --------------------------
@requires_shared_data
def test_fuzzed_containers_never_crash_or_leave_files(hyperprior_bitstream, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        hyperprior = load_codec("bmshj2018-hyperprior", 1)
    x264_bin = tmp_path / "x264.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "40", "--frames", "2",
                      str(CLIP), str(x264_bin)]) == 0
    cases = [(hyperprior_bitstream.read_bytes(), hyperprior), (x264_bin.read_bytes(), None)]
    references = []
    for data, codec in cases:
        container = Container.from_bytes(data)
        codec = codec or load_codec("x264", 40)
        references.append((codec, [out.decoded for _, out in decode_container(codec, container)]))
    rng = random.Random(14)
    outcomes = {"refused": 0, "exact": 0}
    for seed in range(300):
        (data, _), (codec, expected) = cases[seed % 2], references[seed % 2]
        fuzzed = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            fuzzed[rng.randrange(len(fuzzed))] ^= rng.randint(1, 255)
        try:
            container = Container.from_bytes(bytes(fuzzed))
            decoded = [out.decoded for _, out in decode_container(codec, container)]
        except CodecError:
            outcomes["refused"] += 1
            continue
        assert all(torch.equal(a, b) for a, b in zip(decoded, expected)), seed
        outcomes["exact"] += 1
    assert outcomes["refused"] >= 290
    # Through the tool: refused with exit 2 and no file (final or partial) left.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for seed in range(20):
        fuzzed = bytearray(cases[1][0])
        fuzzed[rng.randrange(len(fuzzed))] ^= 0x5A
        damaged = out_dir / "in.bin"
        damaged.write_bytes(bytes(fuzzed))
        assert run_codec(["decode", str(damaged), str(out_dir / "o.y4m")]) == 2
        assert sorted(p.name for p in out_dir.iterdir()) == ["in.bin"]




# --- version 3: side payloads and frame indices ------------------------------------------
def test_side_payloads_round_trip_and_count_in_the_bitrate():
    frames, side = [b"frame-0", b"frame-one", b"f2"], [b"\x01\x02", b"", b"map"]
    container = x264_container(frames=frames, padded_sizes=[(96, 160)] * 3, side=side, fps=25.0)
    read = Container.from_bytes(container.to_bytes())
    assert (read.frames, read.side, read.padded_sizes) == (frames, side, [(96, 160)] * 3)
    assert read.side_bytes == 5 and read.num_bytes == 18 + 5
    assert read.bpp == pytest.approx(8 * 23 / (160 * 96 * 3))
    # Without side payloads every frame reads back with empty side bytes.
    plain = Container.from_bytes(x264_container(frames=frames, padded_sizes=[(96, 160)] * 3)
                                 .to_bytes())
    assert plain.side == [b""] * 3 and plain.side_bytes == 0 and plain.num_bytes == 18
    with pytest.raises(CodecError, match="2 side payloads for 3 frames"):
        x264_container(frames=frames, padded_sizes=[(96, 160)] * 3, side=side[:2]).to_bytes()
    with pytest.raises(CodecError, match="0 padded sizes for 1 frames"):
        x264_container(padded_sizes=[]).to_bytes()


def test_a_damaged_side_payload_is_refused():
    data = x264_container(frames=[b"abc", b"de"], padded_sizes=[(96, 160)] * 2,
                          side=[b"", b"map"]).to_bytes()
    damaged = bytearray(data)
    damaged[-1] ^= 0x10  # the last byte of frame 1's side payload
    with pytest.raises(CodecError, match="frame 1 is corrupt"):
        Container.from_bytes(bytes(damaged))
    with pytest.raises(CodecError, match="should hold 92 bytes .* holds 90: the file is trunc"):
        Container.from_bytes(data[:-2])


def _table_offset(container: Container) -> int:
    return 6 + len(container.codec.encode()) + FIELDS_SIZE + 4


def _with_table(data: bytes, container: Container, entries: list[tuple]) -> bytes:
    """``data`` with its frame table replaced and the table CRC recomputed (a forgery)."""
    start = _table_offset(container)
    table = b"".join(struct.pack("<IIIIHH", *entry) for entry in entries)
    end = start + len(table)
    return data[:start] + table + struct.pack("<I", zlib.crc32(table)) + data[end + 4:]


def _entries(data: bytes, container: Container) -> list[tuple]:
    start = _table_offset(container)
    return [struct.unpack_from("<IIIIHH", data, start + i * ENTRY_SIZE)
            for i in range(len(container.frames))]


def test_the_frame_table_carries_frame_indices():
    """Swapped or duplicated frames, with every CRC an attacker can recompute, are refused."""
    container = x264_container(frames=[b"I-frame", b"P-one", b"P-two"],
                               padded_sizes=[(96, 160)] * 3)
    data = container.to_bytes()
    entries = _entries(data, container)
    assert [e[0] for e in entries] == [0, 1, 2]
    swapped = _with_table(data, container, [entries[0], entries[2], entries[1]])
    with pytest.raises(CodecError, match="entry 1 holds frame 2"):
        Container.from_bytes(swapped)
    duplicated = _with_table(data, container, [entries[0], entries[1], entries[1]])
    with pytest.raises(CodecError, match="entry 2 holds frame 1"):
        Container.from_bytes(duplicated)
    # Renumbered entries too: a frame's CRC is bound to its slot.
    renumbered = [(slot, *entry[1:]) for slot, entry in enumerate(
        [entries[0], entries[2], entries[1]])]
    payload_start = _table_offset(container) + 3 * ENTRY_SIZE + 4
    moved = _with_table(data, container, renumbered)
    moved = moved[:payload_start] + b"I-frameP-twoP-one"
    with pytest.raises(CodecError, match="frame 1 is corrupt"):
        Container.from_bytes(moved)
    # A 0x0 padded size cannot be written into a version 3 table.
    zero = _with_table(data, container, [entries[0], (*entries[1][:4], 0, 0), entries[2]])
    with pytest.raises(CodecError, match="frame 1 records a padded size of 0x0"):
        Container.from_bytes(zero)


def test_a_frame_crc_binds_the_frame_to_its_header():
    container = x264_container()
    data = container.to_bytes()
    (entry,) = _entries(data, container)
    header = data[:_table_offset(container) - 4]
    assert entry[3] == frame_crc(zlib.crc32(header), 0, b"x", b"")
    forged = _forged(data, "x264", 6 + 4 + 10, "<i", 8)  # intra -1 -> 8, header CRC valid
    with pytest.raises(CodecError, match="frame 0 is corrupt"):
        Container.from_bytes(forged)


# --- forgeries with valid CRCs --------------------------------------------------------------
@requires_shared_data
def test_forged_containers_with_valid_crcs_are_refused(hyperprior_bitstream):
    """Headers and tables rewritten with their CRCs recomputed, and whole files re-serialised
    with a forged frame size: refused before decoding, or (a size that pads to the same
    coded size) decoded at the size the header states.

    Out of reach by design: a forger who also rewrites the recorded padded sizes can hand
    any bytes to CompressAI's rANS decoder, which is not memory safe on crafted input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        hyperprior = load_codec("bmshj2018-hyperprior", 1)
    x264 = load_codec("x264", 40)
    x264_frames = [torch.rand(1, 3, 96, 160) for _ in range(3)]
    x264_stream = x264_container(
        quality=40, frames=[data for data, _ in x264.encode_sequence(x264_frames)],
        padded_sizes=[(96, 160)] * 3, side=[b"", b"s", b""])
    cases = [(hyperprior_bitstream.read_bytes(), hyperprior), (x264_stream.to_bytes(), x264)]
    rng = random.Random(37)
    refused = 0
    for seed in range(240):
        data, codec = cases[seed % 2]
        original = Container.from_bytes(data)
        name, kind = original.codec, seed % 3
        header_end = 6 + len(name) + FIELDS_SIZE
        forged = bytearray(data)
        if kind == 0:  # header fields changed, header CRC recomputed
            for _ in range(rng.randint(1, 3)):
                forged[rng.randrange(6 + len(name), header_end)] ^= rng.randint(1, 255)
            forged[header_end:header_end + 4] = struct.pack(
                "<I", zlib.crc32(bytes(forged[:header_end])))
        elif kind == 1:  # table entries changed, table CRC recomputed
            start = header_end + 4
            end = start + ENTRY_SIZE * len(original.frames)
            for _ in range(rng.randint(1, 3)):
                forged[rng.randrange(start, end)] ^= rng.randint(1, 255)
            forged[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(forged[start:end])))
        else:  # the whole file re-serialised with a forged size (every CRC valid)
            forgery = Container.from_bytes(data)
            forgery.width, forgery.height = rng.choice(
                [(1024, 1024), (224, 96), (160, 160), (320, 192), (96, 160), (162, 96)])
            forged = bytearray(forgery.to_bytes())
        try:
            container = Container.from_bytes(bytes(forged))
            decoded = [out.decoded for _, out in decode_container(codec, container)]
        except CodecError:
            refused += 1
            continue
        assert kind == 2 or bytes(forged) == data, seed  # only a re-serialisation decodes
        assert all(frame.shape[-2:] == (container.height, container.width) for frame in decoded)
    assert refused >= 200


def test_bad_x264_fingerprint_message():
    container = Container("x264", 30, 160, 96, intra_period=-1, weights_fingerprint=b"\1" * 8,
                          frames=[b"x"])
    with pytest.raises(CodecError, match="but x264 has none"):
        next(decode_container(load_codec("x264", 30), container))
