"""Bad inputs from issue 14: each is refused with one clear error, nothing is destroyed,
nothing half-written is left behind, and no native decoder ever sees damaged bytes."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.cli import run_cli
from enhancer.codecs import CodecError, load_codec
from enhancer.codecs.container import Container, decode_container, write_atomic
from enhancer.data.sequence import open_sequence, open_writer

CLIP = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"
WIDTH_OFFSET = 28  # 6-byte prefix + "bmshj2018-hyperprior" (20) + quality (2)


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


codec_tool = _tool("codec")


def run_codec(argv: list[str]) -> int:
    return run_cli(codec_tool.main, argv)


def leftovers(folder) -> list[str]:
    """Hidden temporaries (``.x.partial-*``, ``.x.*.tmp``) anywhere below ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*") if "partial" in p.name or p.suffix == ".tmp")


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


# --- 1: the header is protected -------------------------------------------------------------
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
    data = Container("x264", 30, 160, 96, intra_period=-1, frames=[b"x"]).to_bytes()
    width_at = 6 + len("x264") + 2
    with pytest.raises(CodecError, match="65534x65534"):
        Container.from_bytes(_forged(data, "x264", width_at, "<HH", 65534, 65534))
    # a billion frames in a 60-byte file
    with pytest.raises(CodecError, match="says it holds 1000000000 frames"):
        Container.from_bytes(_forged(data, "x264", width_at + 4, "<I", 10**9))
    with pytest.raises(CodecError, match="65536x96"):
        Container("x264", 30, 65536, 96, intra_period=-1, frames=[b"x"]).to_bytes()


def test_version_1_files_are_still_read():
    frames = [b"abc", b"defgh"]
    name = b"x264"
    v1 = struct.pack("<4sBB", b"ENHC", 1, len(name)) + name
    v1 += struct.pack("<hHHIif8s", 30, 160, 96, 2, -1, 25.0, bytes(8))
    v1 += struct.pack("<2I", 3, 5) + struct.pack("<2I", *(zlib.crc32(f) for f in frames))
    container = Container.from_bytes(v1 + b"".join(frames))
    assert (container.codec, container.width, container.frames) == ("x264", 160, frames)
    assert container.padded_sizes == []


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


def test_atomic_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


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


# --- 2: an output never overwrites its input ------------------------------------------
@requires_shared_data
def test_encoding_a_file_onto_itself_is_refused(tmp_path, capsys):
    clip = tmp_path / "clip_160x96.yuv"
    clip.write_bytes(CLIP.read_bytes()[: 160 * 96 * 3 // 2 * 2])
    before = clip.read_bytes()
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(clip)]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    link = tmp_path / "link.bin"
    os.link(clip, link)  # same inode, another name
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(link)]) == 2
    assert clip.read_bytes() == before
    bitstream = tmp_path / "c.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip),
                      str(bitstream)]) == 0
    kept = bitstream.read_bytes()
    assert run_codec(["decode", str(bitstream), str(bitstream)]) == 2
    assert bitstream.read_bytes() == kept
