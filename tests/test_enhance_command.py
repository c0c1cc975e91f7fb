"""enhancer-enhance (tools/enhance.py): any H.264/HEVC file or .bin in, enhanced video out;
and the API at every rate point the bundled x264 model was trained for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.cli import run_cli
from enhancer.codecs import CodecError, load_codec
from enhancer.codecs.container import Container, decode_container
from enhancer.codecs.conventional import (
    X265_CRF_ON_X264_SCALE,
    crf_from_qp,
    encoder_crf,
    equivalent_crf,
)
from enhancer.commands.codec import main as codec_main
from enhancer.commands.enhance import main as enhance_main
from enhancer.data.color import rgb_to_planes
from enhancer.data.sequence import open_sequence, open_writer
from enhancer.pipeline import Rollout, load_enhancer
from enhancer.pipeline.stream import VideoStream, open_bitstream

pytestmark = requires_shared_data

FOREIGN_MP4 = SHARED_DATA / "video" / "imageio" / "realshort.mp4"  # 320x240 H.264, not ours
SOURCE = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"
MODEL = "x264_temporal_tiny"  # trained on x264 CRF 24..40


def enhance(argv: list[str]) -> int:
    return run_cli(enhance_main, [*argv, "--no-progress"])


def encode(source: Path, out: Path, codec: str, quality: int, frames: int = 2,
           *extra: str) -> Path:
    argv = ["encode", "--codec", codec, "--quality", str(quality), "--frames", str(frames),
            *extra, str(source), str(out)]
    assert run_cli(codec_main, argv) == 0
    return out


def planes_of(path: Path) -> list[tuple[np.ndarray, ...]]:
    with open_sequence(path) as video:
        return list(video.yuv_frames())


def expected_planes(frames) -> list[tuple[np.ndarray, ...]]:
    return [rgb_to_planes(frame) for frame in frames]


def write_stream(path: Path, encoder: str, options: dict[str, str], frames: int = 2,
                 size: tuple[int, int] = (64, 48), container: str | None = None) -> Path:
    """A stream made with PyAV directly (as anyone else would make one), not by our codecs."""
    import av

    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(encoder, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            samples = rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(samples, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


@pytest.fixture(scope="module")
def model():
    return load_enhancer(MODEL)


@pytest.fixture(scope="module")
def rate_points(tmp_path_factory):
    """x264 .bin files of the same two frames at CRF 24, 32 and 40 (tools/codec.py encode)."""
    folder = tmp_path_factory.mktemp("rates")
    return {crf: encode(SOURCE, folder / f"q{crf}.bin", "x264", crf) for crf in (24, 32, 40)}


def manual_rollout(model, container: Container, quality: int):
    """What the model gives for ``container`` when told ``quality``: the rollout by hand."""
    codec = load_codec(container.codec, container.quality)
    rollout = Rollout(model, seed=0, quality=quality)
    return [rollout.enhance(out.decoded, out.latent)
            for _, out in decode_container(codec, container)]


# --- any rate point through the API -----------------------------------------------------
def test_the_api_takes_every_rate_point_the_model_was_trained_for(model, rate_points):
    told = {}
    for crf, path in rate_points.items():
        frames = list(model.enhance(path, seed=0))  # failed for any CRF but 32 before
        expected = manual_rollout(model, Container.load(path), quality=crf)
        assert len(frames) == len(expected) == 2
        for frame, enhanced in zip(frames, expected):
            assert torch.equal(frame.enhanced, enhanced)
        told[crf] = frames[-1].enhanced
    # The model is told the stream's CRF: telling it another one changes the output.
    other = manual_rollout(model, Container.load(rate_points[24]), quality=40)[-1]
    assert not torch.equal(told[24], other)


def test_a_rate_point_outside_the_trained_range_names_the_range(model, tmp_path):
    path = encode(SOURCE, tmp_path / "q45.bin", "x264", 45, frames=1)
    with pytest.raises(CodecError, match=r"x264 CRF 24\.\.40"):
        model.enhance(path)
    assert enhance([str(path), str(tmp_path / "out.y4m")]) == 2
    assert not (tmp_path / "out.y4m").exists()


def test_a_learned_codec_stays_one_model_per_quality(tmp_path, capsys):
    bitstream = encode(SOURCE, tmp_path / "ssf2.bin", "ssf-small", 2, 1,
                       "--checkpoint", "ssf_small_q2")
    q1 = load_enhancer("ssf_small_q1")
    with pytest.raises(CodecError, match="the bundled model for it is ssf_small_q2"):
        q1.enhance(bitstream)
    capsys.readouterr()
    assert enhance([str(bitstream), str(tmp_path / "o.y4m"), "--enhancer", "ssf_small_q1"]) == 2
    assert "ssf_small_q2" in capsys.readouterr().err
    # Without --enhancer the model that serves q2 is picked.
    assert enhance([str(bitstream), str(tmp_path / "o.y4m")]) == 0
    assert "ssf_small_q2 on ssf-small q2" in capsys.readouterr().out
    assert len(planes_of(tmp_path / "o.y4m")) == 1


# --- the command ------------------------------------------------------------------------
def test_enhances_an_h264_mp4_this_project_did_not_encode(model, tmp_path, capsys):
    out = tmp_path / "enhanced.mp4"
    assert enhance([str(FOREIGN_MP4), str(out), "--frames", "3"]) == 0
    report = capsys.readouterr().out
    stream = open_bitstream(FOREIGN_MP4)
    assert isinstance(stream, VideoStream) and stream.codec == "x264"
    assert "mean P-frame QP" in stream.quality_source  # the file has no x264 SEI
    assert f"x264 q{stream.quality} ({stream.quality_source})" in report
    expected = [f.enhanced for f, _ in zip(model.enhance(FOREIGN_MP4, seed=0), range(3))]
    written = planes_of(out)
    assert len(written) == 3 and written[0][0].shape == (240, 320)
    for planes, enhanced in zip(written, expected_planes(expected)):  # near-lossless x264
        error = np.mean((planes[0].astype(float) - enhanced[0].astype(float)) ** 2)
        assert 10 * np.log10(255**2 / error) > 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enhanced.mp4"]


def test_an_annex_b_stream_with_b_frames(tmp_path):
    annex_b = SHARED_DATA / "video" / "openh264" / "Cisco_Men_whisper_640x320_CABAC_Bframe_9.264"
    stream = open_bitstream(annex_b)
    assert (stream.codec, stream.width, stream.height, stream.num_frames) == ("x264", 640, 320, 9)
    decoded = list(stream.decode())
    assert len(decoded) == 9 and all(data for data, _ in decoded)
    assert sum(len(data) for data, _ in decoded) <= annex_b.stat().st_size
    assert enhance([str(annex_b), str(tmp_path / "o.y4m"), "--frames", "2"]) == 0
    assert len(planes_of(tmp_path / "o.y4m")) == 2


@pytest.mark.parametrize("crf", [24, 32, 40])
def test_enhances_a_bin_at_three_rate_points(model, rate_points, crf, tmp_path, capsys):
    out = tmp_path / "enhanced.y4m"
    assert enhance([str(rate_points[crf]), str(out)]) == 0
    assert f"{MODEL} on x264 q{crf} (.bin header)" in capsys.readouterr().out
    expected = manual_rollout(model, Container.load(rate_points[crf]), quality=crf)
    for planes, want in zip(planes_of(out), expected_planes(expected), strict=True):
        for got, plane in zip(planes, want):
            assert np.array_equal(got, plane)


def test_an_x265_bin_is_served_by_the_x264_model_on_its_crf_scale(model, tmp_path, capsys):
    bitstream = encode(SOURCE, tmp_path / "h.bin", "x265", 30, frames=1)
    assert enhance([str(bitstream), str(tmp_path / "o.y4m")]) == 0
    assert f"{MODEL} on x265 q30 (.bin header)" in capsys.readouterr().out
    told = 30 + X265_CRF_ON_X264_SCALE
    expected = manual_rollout(model, Container.load(bitstream), quality=told)
    for planes, want in zip(planes_of(tmp_path / "o.y4m"), expected_planes(expected),
                            strict=True):
        assert np.array_equal(planes[0], want[0])


def test_lossless_mkv_holds_exactly_the_enhanced_frames(rate_points, tmp_path):
    import av

    assert enhance([str(rate_points[32]), str(tmp_path / "o.y4m")]) == 0
    assert enhance([str(rate_points[32]), str(tmp_path / "o.mkv"), "--lossless"]) == 0
    with av.open(str(tmp_path / "o.mkv")) as archive:
        assert archive.streams.video[0].codec_context.name == "ffv1"
    for lossless, exact in zip(planes_of(tmp_path / "o.mkv"), planes_of(tmp_path / "o.y4m"),
                               strict=True):
        for got, plane in zip(lossless, exact):
            assert np.array_equal(got, plane)


def test_side_by_side_writes_decoded_then_enhanced(rate_points, tmp_path):
    side = tmp_path / "side.y4m"
    assert enhance([str(rate_points[32]), str(side), "--side-by-side"]) == 0
    decoded = tmp_path / "decoded.y4m"
    assert run_cli(codec_main, ["decode", str(rate_points[32]), str(decoded)]) == 0
    for both, left in zip(planes_of(side), planes_of(decoded), strict=True):
        assert both[0].shape == (96, 320)
        assert np.array_equal(both[0][:, :160], left[0])


def test_odd_frame_sizes(model, tmp_path, capsys):
    with open_sequence(SOURCE) as video:
        frames = [frame[..., :93, :157] for frame in video.frames(count=2)]
    with open_writer(tmp_path / "odd", width=157, height=93) as writer:  # PNG frames
        for frame in frames:
            writer.write(frame)
    bitstream = encode(tmp_path / "odd", tmp_path / "odd.bin", "x264", 32)
    out = tmp_path / "enhanced"
    assert enhance([str(bitstream), str(out)]) == 0  # a PNG folder takes any size
    pictures = sorted(out.iterdir())
    assert len(pictures) == 2
    from PIL import Image

    assert Image.open(pictures[0]).size == (157, 93)
    capsys.readouterr()
    assert enhance([str(bitstream), str(tmp_path / "odd.mp4")]) == 2  # 4:2:0 needs even sizes
    assert "PNG" in capsys.readouterr().err
    assert not (tmp_path / "odd.mp4").exists()


def test_crf_from_the_encoders_sei_and_the_quality_flag(tmp_path, capsys):
    x264 = write_stream(tmp_path / "a.mkv", "libx264", {"crf": "27"}, size=(64, 48))
    stream = open_bitstream(x264)
    assert (stream.codec, stream.quality, stream.quality_source) == ("x264", 27,
                                                                     "x264 SEI crf=27")
    assert open_bitstream(x264, quality=30).quality == 30
    # Each frame's packet bytes stay reachable: the first holds x264's SEI.
    packets = [data for data, _ in stream.decode()]
    assert len(packets) == 2 and b"x264 - core" in packets[0]
    x265 = write_stream(tmp_path / "b.mkv", "libx265",
                        {"crf": "30", "x265-params": "log-level=error"}, container="matroska")
    stream = open_bitstream(x265)
    assert (stream.codec, stream.quality) == ("x265", 30)
    assert equivalent_crf(30, "x265", "x264") == 30 + X265_CRF_ON_X264_SCALE
    out = tmp_path / "b.y4m"
    assert enhance([str(x265), str(out)]) == 0
    assert f"{MODEL} on x265 q30 (x265 SEI crf=30)" in capsys.readouterr().out
    assert len(planes_of(out)) == 2


def test_encoder_info_parsing():
    sei = b"\x05\xff x264 - core 164 r3095 - options: cabac=1 rc=crf crf=23.5 qcomp=0.60\x00"
    assert encoder_crf(b"junk" + sei) == ("x264", 23.5)
    assert encoder_crf(b"x264 - core 164 - options: rc=abr bitrate=500\x00 crf=20") is None
    assert crf_from_qp(27.6) == 28 and crf_from_qp(60.0) == 51


# --- interrupted: nothing half-written ---------------------------------------------------
def test_sigterm_mid_run_leaves_nothing(rate_points, tmp_path, monkeypatch, capsys):
    original = Rollout.enhance

    def enhance_then_terminate(self, *args, **kwargs):
        enhanced = original(self, *args, **kwargs)
        if self.index == 1:  # after the first frame is enhanced
            os.kill(os.getpid(), signal.SIGTERM)
        return enhanced

    monkeypatch.setattr(Rollout, "enhance", enhance_then_terminate)
    for name in ("out.y4m", "out.mp4", "frames"):
        assert enhance([str(rate_points[32]), str(tmp_path / name)]) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_to_the_tool_in_a_subprocess(tmp_path):
    out = tmp_path / "out.y4m"  # written frame by frame (an MP4 appears only at its end)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "enhance.py"),
                                str(FOREIGN_MP4), str(out), "--no-progress"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    frame_bytes = 320 * 240 * 3 // 2
    # Mid-run: the temporary output holds at least one enhanced frame.
    while process.poll() is None and not any(p.stat().st_size > frame_bytes
                                             for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().endswith("terminated")
    assert list(tmp_path.iterdir()) == []


# --- bad input: one line naming the value and the fix, exit 2, nothing written -----------
def run_bad(argv: list[str], folder: Path, capsys) -> str:
    before = sorted(folder.rglob("*"))
    assert enhance(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(folder.rglob("*")) == before
    return err


def test_bad_inputs(rate_points, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    err = run_bad([str(text), str(tmp_path / "o.mp4")], tmp_path, capsys)
    assert "neither an enhancer .bin nor a video" in err and "H.264/HEVC" in err

    raw = tmp_path / "raw.y4m"
    with open_writer(raw, width=16, height=16) as writer:
        writer.write(torch.rand(1, 3, 16, 16))
    err = run_bad([str(raw), str(tmp_path / "o.mp4")], tmp_path, capsys)
    assert "uncompressed video: code it first" in err

    mpeg4 = write_stream(tmp_path / "m.avi", "mpeg4", {}, container="avi")
    err = run_bad([str(mpeg4), str(tmp_path / "o.mp4")], tmp_path, capsys)
    assert "mpeg4 stream; no bundled model serves it" in err
    assert f"{MODEL}: x264/x265 CRF 24..40" in err and "ssf_small_q2: ssf-small q2" in err

    hevc = write_stream(tmp_path / "h.mkv", "libx265",
                        {"crf": "30", "x265-params": "log-level=error:info=0"},
                        container="matroska")
    err = run_bad([str(hevc), str(tmp_path / "o.mp4")], tmp_path, capsys)
    assert "no quality can be read" in err and "--quality" in err
    assert enhance([str(hevc), str(tmp_path / "h.y4m"), "--quality", "30"]) == 0  # the fix
    assert f"{MODEL} on x265 q30 (given)" in capsys.readouterr().out
    (tmp_path / "h.y4m").unlink()

    err = run_bad([str(rate_points[32]), str(tmp_path / "o.mp4"), "--quality", "28"],
                  tmp_path, capsys)
    assert "drop --quality 28" in err
    err = run_bad([str(rate_points[32]), str(tmp_path / "o.mp4"), "--lossless"], tmp_path,
                  capsys)
    assert "name the output .mkv" in err


def test_bad_outputs(rate_points, tmp_path, capsys):
    bitstream = tmp_path / "clip.bin"
    bitstream.write_bytes(rate_points[32].read_bytes())
    (tmp_path / "folder.mp4").mkdir()
    err = run_bad([str(bitstream), str(tmp_path / "folder.mp4")], tmp_path, capsys)
    assert "is a folder" in err and "file name" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.png").write_bytes(b"x")
    err = run_bad([str(bitstream), str(tmp_path / "full")], tmp_path, capsys)
    assert "not an empty folder" in err
    err = run_bad([str(bitstream), os.devnull], tmp_path, capsys)
    assert "device" in err
    err = run_bad([str(bitstream), str(bitstream)], tmp_path, capsys)
    assert "is the input" in err and bitstream.read_bytes() == rate_points[32].read_bytes()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    err = run_bad([str(bitstream), str(blocker / "o.mp4")], tmp_path, capsys)
    assert "not a writable folder" in err and "folder you can write" in err
