"""tools/codec.py end to end, and the .bin container's error handling."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA, decode_chunks, requires_shared_data

from enhancer.codecs import CodecError, load_codec
from enhancer.codecs.container import Container
from enhancer.data.sequence import open_sequence

CLIP = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"

spec = importlib.util.spec_from_file_location("codec_cli", REPO / "tools" / "codec.py")
codec_cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(codec_cli)


def run(argv: list[str]) -> int:
    return codec_cli.run_cli(codec_cli.main, argv)


@requires_shared_data
@pytest.mark.parametrize("extension", [".y4m", ".yuv", ".mp4"])
def test_x264_encode_decode_round_trip(tmp_path, capsys, extension):
    bitstream = tmp_path / "clip.bin"
    assert run(["encode", "--codec", "x264", "--quality", "28", "--frames", "3",
                "--intra-period", "2", str(CLIP), str(bitstream)]) == 0
    printed = capsys.readouterr().out
    assert "bpp" in printed and "PSNR-RGB" in printed
    container = Container.load(bitstream)
    assert (container.codec, container.quality, container.intra_period) == ("x264", 28, 2)
    assert (container.width, container.height, len(container.frames)) == (160, 96, 3)

    decoded_path = tmp_path / f"decoded{extension}"
    assert run(["decode", str(bitstream), str(decoded_path)]) == 0
    assert f"{container.bpp:.4f} bpp" in capsys.readouterr().out
    with open_sequence(decoded_path, width=160, height=96) as reader:
        decoded = list(reader.frames())
    assert len(decoded) == 3
    codec = load_codec("x264", 28)
    expected = [out.decoded for out in decode_chunks(codec, container.frames, (96, 160), 2)]
    tolerance = 0.06 if extension == ".mp4" else 1.5 / 255  # mp4 re-encodes; yuv/y4m round to 8 bit
    for got, want in zip(decoded, expected):
        assert (got - want).abs().mean() < tolerance


def _hyperprior_q1_weights(weights: Path):
    """bmshj2018-hyperprior q1 (random weights) and its state dict saved as ``weights``, the
    file layout of CompressAI's zoo."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = load_codec("bmshj2018-hyperprior", 1)
    torch.save(codec.model.state_dict(), weights)
    return codec, weights


@requires_shared_data
def test_learned_codec_round_trip_with_a_zoo_checkpoint(tmp_path, capsys):
    codec, weights = _hyperprior_q1_weights(tmp_path / "bmshj2018-hyperprior-1.pth.tar")
    bitstream = tmp_path / "clip.bin"
    argv = ["encode", "--codec", "bmshj2018-hyperprior", "--quality", "1", "--frames", "2",
            "--checkpoint", str(weights), str(CLIP), str(bitstream)]
    assert run(argv) == 0
    assert run(["decode", "--checkpoint", str(weights), str(bitstream), str(tmp_path / "d.y4m")]) == 0
    # Other weights than the encoder's: refused before decoding garbage.
    other = tmp_path / "other.pth.tar"
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in codec.model.state_dict().items()}
    torch.save(state, other)
    assert run(["decode", "--checkpoint", str(other), str(bitstream), str(tmp_path / "e.y4m")]) == 2
    assert "other bmshj2018-hyperprior weights" in capsys.readouterr().err
    assert not (tmp_path / "e.y4m").exists()


def test_learned_codec_without_weights_is_refused(tmp_path, capsys):
    assert run(["encode", "--codec", "ssf", "--quality", "3", str(CLIP), str(tmp_path / "o.bin")]) == 2
    assert "needs weights: pass --checkpoint PATH" in capsys.readouterr().err


@requires_shared_data
def test_bad_input_files(tmp_path, capsys):
    bad_yuv = tmp_path / "Bad_160x96_30fps.yuv"
    bad_yuv.write_bytes(np.zeros(160 * 96 * 3 // 2 + 7, np.uint8).tobytes())
    assert run(["encode", "--codec", "x264", "--quality", "30", str(bad_yuv), str(tmp_path / "o.bin")]) == 2
    assert "23040 bytes per frame" in capsys.readouterr().err
    no_size = tmp_path / "clip.yuv"
    no_size.write_bytes(b"\0" * 100)
    assert run(["encode", "--codec", "x264", "--quality", "30", str(no_size), str(tmp_path / "o.bin")]) == 2
    assert "clip.yuv" in capsys.readouterr().err
    assert not (tmp_path / "o.bin").exists()


@requires_shared_data
def test_container_damage_is_detected(tmp_path):
    bitstream = tmp_path / "clip.bin"
    assert run(["encode", "--codec", "x265", "--quality", "30", "--frames", "2", str(CLIP),
                str(bitstream)]) == 0
    data = bitstream.read_bytes()
    with pytest.raises(CodecError, match="truncated"):
        Container.from_bytes(data[:-5])
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    with pytest.raises(CodecError, match="frame 1 is corrupt"):
        Container.from_bytes(bytes(flipped))
    with pytest.raises(CodecError, match="not an enhancer bitstream"):
        Container.from_bytes(b"RIFF" + data[4:])
    newer = bytearray(data)
    newer[4] = 99
    with pytest.raises(CodecError, match="format version 99"):
        Container.from_bytes(bytes(newer))
    with pytest.raises(CodecError, match="does not exist"):
        Container.load(tmp_path / "missing.bin")
    # Decoding a damaged file leaves no half-written output behind.
    (tmp_path / "damaged.bin").write_bytes(bytes(flipped))
    assert run(["decode", str(tmp_path / "damaged.bin"), str(tmp_path / "out.y4m")]) == 2
    assert not (tmp_path / "out.y4m").exists()


@requires_shared_data
def test_ssf_round_trip_with_random_weights(tmp_path, capsys):
    """--checkpoint random draws fixed-seed weights: a later decode process gets the same."""
    bitstream = tmp_path / "ssf.bin"
    assert run(["encode", "--codec", "ssf", "--quality", "3", "--frames", "2",
                "--checkpoint", "random", str(CLIP), str(bitstream)]) == 0
    assert "bpp" in capsys.readouterr().out
    assert run(["decode", "--checkpoint", "random", str(bitstream), str(tmp_path / "d.y4m")]) == 0
    with open_sequence(tmp_path / "d.y4m") as reader:
        assert reader.info.num_frames == 2


# The right weights for the quality.
@requires_shared_data
def test_a_checkpoint_of_another_quality_is_refused(tmp_path, capsys):
    # q1 and q2 have the same shapes
    codec, weights = _hyperprior_q1_weights(tmp_path / "bmshj2018-hyperprior-1-7eb97409.pth.tar")
    argv = ["encode", "--codec", "bmshj2018-hyperprior", "--quality", "2", "--frames", "1",
            "--checkpoint", str(weights), str(CLIP), str(tmp_path / "o.bin")]
    assert run(argv) == 2
    assert "is a quality 1 file, but --quality is 2" in capsys.readouterr().err
    assert not (tmp_path / "o.bin").exists()
    # Our own codec files (a training run's codec.pth.tar) record their codec and quality.
    from enhancer.pipeline.codec_files import write_codec_sidecar

    ours = tmp_path / "run" / "codec.pth.tar"
    ours.parent.mkdir()
    torch.save(codec.model.state_dict(), ours)
    write_codec_sidecar(ours, codec)
    argv[argv.index(str(weights))] = str(ours)
    assert run(argv) == 2
    assert "holds bmshj2018-hyperprior q1 weights" in capsys.readouterr().err
    argv[argv.index("2")] = "1"
    assert run(argv) == 0


@requires_shared_data
def test_ssf_small_encodes_with_a_bundled_enhancers_codec(tmp_path, capsys):
    bitstream = tmp_path / "s.bin"
    assert run(["encode", "--codec", "ssf-small", "--quality", "1", "--frames", "2",
                "--checkpoint", "ssf_small_q1", str(CLIP), str(bitstream)]) == 0
    assert run(["decode", "--checkpoint", "ssf_small_q1", str(bitstream),
                str(tmp_path / "d.y4m")]) == 0
    with open_sequence(tmp_path / "d.y4m") as reader:
        assert reader.info.num_frames == 2
    capsys.readouterr()
    assert run(["encode", "--codec", "ssf-small", "--quality", "2", "--frames", "1",
                "--checkpoint", "ssf_small_q1", str(CLIP), str(tmp_path / "t.bin")]) == 2
    assert "holds a ssf-small q1 codec, not ssf-small q2" in capsys.readouterr().err
    # names are names: a path-like name does not reach outside enhancer/weights
    assert run(["encode", "--codec", "ssf-small", "--quality", "1", "--frames", "1",
                "--checkpoint", "../weights/ssf_small_q1", str(CLIP),
                str(tmp_path / "u.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # codecs without weights refuse a checkpoint, as load_codec does
    assert run(["encode", "--codec", "x264", "--quality", "30", "--checkpoint", "w.pt",
                str(CLIP), str(tmp_path / "v.bin")]) == 2
    assert "has no weights; drop --checkpoint" in capsys.readouterr().err


@requires_shared_data
def test_odd_sized_frames_decode_to_png(tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "odd"
    frames.mkdir()
    for index in range(2):
        rgb = (np.random.default_rng(index).random((95, 161, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(frames / f"im{index + 1:05d}.png")
    bitstream = tmp_path / "odd.bin"
    assert run(["encode", "--codec", "bmshj2018-hyperprior", "--quality", "1",
                "--checkpoint", "random", str(frames), str(bitstream)]) == 0
    assert run(["decode", "--checkpoint", "random", str(bitstream),
                str(tmp_path / "o.y4m")]) == 2
    assert "write a folder of PNG frames" in capsys.readouterr().err
    assert run(["decode", "--checkpoint", "random", str(bitstream),
                str(tmp_path / "decoded")]) == 0
    with open_sequence(tmp_path / "decoded") as reader:
        assert (reader.info.width, reader.info.height, reader.info.num_frames) == (161, 95, 2)


def test_unclear_input_errors_are_clear(tmp_path, capsys):
    tiny = tmp_path / "tiny_1x1.yuv"
    tiny.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="even width and height, got 1x1"):
        open_sequence(tiny)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="junk.mp4 is not a readable video"):
        open_sequence(junk)
    for frames in ("0", "-3"):
        assert run(["encode", "--codec", "x264", "--quality", "30", "--frames", frames,
                    str(tiny), str(tmp_path / "o.bin")]) == 2
        assert "frames must be at least 1" in capsys.readouterr().err
    short = tmp_path / "short.bin"
    short.write_bytes(b"ENHC\x02")
    assert run(["decode", str(short), str(tmp_path / "o.y4m")]) == 2
    assert "truncated inside its header" in capsys.readouterr().err
