"""Video/image I/O, colour conversion, padding and datasets, on real clips from shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from enhancer.data import (
    ImageFolderDataset,
    VideoClipDataset,
    Vimeo90kSeptuplet,
    centre_crop,
    crop,
    open_sequence,
    open_writer,
    pad_to_multiple,
    padded_size,
    parse_yuv_name,
    planes_to_rgb,
    planes_to_tensors,
    read_image,
    rgb_to_planes,
    rgb_to_yuv420,
    rgb_to_yuv444,
    tensors_to_planes,
    write_image,
    yuv420_to_rgb,
    yuv444_to_rgb,
)

DATA = SHARED_DATA
CISCO = DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"  # 160x96, 5 frames
RACEHORSES = DATA / "video/compressai/C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv"
SPARKS_10BIT = DATA / "video/vmaf/sparks_ref_480x270_5f.yuv420p10le.yuv"
REALSHORT = DATA / "video/imageio/realshort.mp4"  # 320x240, 36 frames
COCKATOO_444 = DATA / "video/imageio/cockatoo.mp4"  # 1280x720 yuv444p
CISCO_H264 = DATA / "video/openh264/Cisco_Men_whisper_640x320_CABAC_Bframe_9.264"
KODIM = DATA / "images/kodak/kodim01.png"  # 768x512

needs_data = pytest.mark.skipif(
    not CISCO.exists(), reason=f"shared test data not found at {DATA} (see shared/data/README.md)"
)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, peak: float) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(peak**2 / np.mean((a - b) ** 2)))


def kodak_rgb(height: int = 128, width: int = 192) -> torch.Tensor:
    """A crop of kodim01 as (1, 3, H, W) in [0, 1], exactly on the 8-bit grid."""
    rgb = read_image(KODIM)[200 : 200 + height, 300 : 300 + width]
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


# ---------------------------------------------------------------------------
# raw YUV names, sizes and streaming

def test_parse_yuv_names() -> None:
    uvg = parse_yuv_name("Beauty_1920x1080_120fps_420_8bit_YUV.yuv")
    assert (uvg.width, uvg.height, uvg.fps, uvg.bit_depth) == (1920, 1080, 120.0, 8)
    hevc = parse_yuv_name("C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv")
    assert (hevc.width, hevc.height, hevc.fps, hevc.bit_depth) == (832, 480, 30.0, 8)
    cisco = parse_yuv_name("CiscoVT2people_160x96_6fps.yuv")
    assert (cisco.width, cisco.height, cisco.fps, cisco.bit_depth) == (160, 96, 6.0, None)
    vmaf = parse_yuv_name("/some/dir_8x8/src01_ref_160x90_48f.yuv")  # folder is ignored
    assert (vmaf.width, vmaf.height, vmaf.fps) == (160, 90, None)
    assert parse_yuv_name("sparks_ref_480x270_5f.yuv420p10le.yuv").bit_depth == 10
    assert parse_yuv_name("Foo_1920x1080_50fps_10bit_420.yuv").bit_depth == 10
    with pytest.raises(ValueError, match="444 chroma"):
        parse_yuv_name("Foo_1920x1080_yuv444p.yuv")


def test_yuv_name_without_size_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.yuv"
    path.write_bytes(bytes(384))
    with pytest.raises(ValueError, match=r"cannot read the frame size from 'x.yuv'.*width=/height="):
        open_sequence(path)
    assert open_sequence(path, width=16, height=16).info.num_frames == 1


def test_yuv_file_size_not_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip_16x16_25fps.yuv"
    path.write_bytes(bytes(2 * 384 + 16))  # 16x16 4:2:0 = 384 bytes per frame
    with pytest.raises(ValueError) as error:
        open_sequence(path)
    message = str(error.value)
    for expected in ("16x16", "384 bytes per frame", "784 bytes", "16 bytes left"):
        assert expected in message


def test_odd_size_is_rejected_for_420(tmp_path: Path) -> None:
    path = tmp_path / "odd_15x16.yuv"
    path.write_bytes(bytes(360))
    with pytest.raises(ValueError, match="even width and height, got 15x16"):
        open_sequence(path)
    with pytest.raises(ValueError, match="even"):
        open_writer(tmp_path / "out.yuv", width=15, height=16)


@needs_data
def test_explicit_size_wins_over_the_name() -> None:
    with open_sequence(CISCO, width=96, height=160, fps=25) as video:  # 115200 = 5 x 23040
        assert (video.info.width, video.info.height, video.info.fps) == (96, 160, 25.0)
        assert video.info.num_frames == 5


@needs_data
def test_streaming_read_equals_whole_file_read() -> None:
    whole = np.fromfile(CISCO, dtype=np.uint8).reshape(5, 160 * 96 * 3 // 2)
    with open_sequence(CISCO) as video:
        assert (video.info.width, video.info.height, video.info.fps) == (160, 96, 6.0)
        assert video.info.num_frames == 5
        frames = list(video.yuv_frames())
        tail = list(video.yuv_frames(start=3, count=2))
    assert len(frames) == 5
    for index, (y, u, v) in enumerate(frames):
        assert y.shape == (96, 160) and u.shape == v.shape == (48, 80) and y.dtype == np.uint8
        np.testing.assert_array_equal(np.concatenate([y.ravel(), u.ravel(), v.ravel()]),
                                      whole[index])
    for (y, _, _), (y_ref, _, _) in zip(tail, frames[3:]):
        np.testing.assert_array_equal(y, y_ref)


@needs_data
def test_hevc_style_name_opens() -> None:
    with open_sequence(RACEHORSES) as video:
        assert (video.info.width, video.info.height, video.info.fps) == (832, 480, 30.0)
        assert video.info.num_frames == 2
        rgb = next(video.frames(start=1))
    assert rgb.shape == (1, 3, 480, 832) and rgb.dtype == torch.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and rgb.std() > 0.05


@needs_data
def test_asking_for_too_many_frames_names_the_count() -> None:
    with open_sequence(CISCO) as video:
        with pytest.raises(ValueError, match="frames 3..8 .* has only 5 frames"):
            video.frames(start=3, count=6)
        with pytest.raises(ValueError, match="has only 5 frames"):
            video.yuv_frames(start=6)


@needs_data
def test_10bit_yuv_is_read_and_scaled() -> None:
    raw = np.fromfile(SPARKS_10BIT, dtype="<u2", count=480 * 270)  # Y of frame 0
    with open_sequence(SPARKS_10BIT) as video:
        assert video.info.bit_depth == 10 and video.info.num_frames == 5
        y8, _, _ = next(video.yuv_frames())
        rgb = next(iter(video))
    assert raw.max() > 255  # really 10-bit samples
    np.testing.assert_array_equal(y8, np.minimum((raw.reshape(270, 480) + 2) >> 2, 255))
    luma = rgb_to_yuv444(rgb)[0][0, 0].numpy()
    assert psnr(luma, raw.reshape(270, 480) / 1023.0, 1.0) > 35  # clamping only at gamut edges


# ---------------------------------------------------------------------------
# writers: raw, y4m, mp4, PNG folders, atomic close

@needs_data
def test_yuv_write_read_round_trip_is_bit_exact(tmp_path: Path) -> None:
    out = tmp_path / "copy_160x96_6fps.yuv"
    with open_sequence(CISCO) as video, open_writer(out, width=160, height=96, fps=6) as writer:
        for y, u, v in video.yuv_frames():
            writer.write_yuv(y, u, v)
    assert out.read_bytes() == CISCO.read_bytes()


@needs_data
def test_y4m_round_trip_is_bit_exact(tmp_path: Path) -> None:
    out = tmp_path / "cisco.y4m"
    with open_sequence(CISCO) as video, open_writer(out, width=160, height=96, fps=6) as writer:
        for y, u, v in video.yuv_frames():
            writer.write_yuv(y, u, v)
    assert out.read_bytes().startswith(b"YUV4MPEG2 W160 H96 F6:1 ")
    with open_sequence(out) as copy, open_sequence(CISCO) as source:
        assert (copy.info.width, copy.info.height, copy.info.fps) == (160, 96, 6.0)
        assert copy.info.num_frames == 5
        for planes, planes_ref in zip(copy.yuv_frames(), source.yuv_frames()):
            for plane, plane_ref in zip(planes, planes_ref):
                np.testing.assert_array_equal(plane, plane_ref)


def test_y4m_variants_and_frame_parameters(tmp_path: Path) -> None:
    y = np.arange(32, dtype=np.uint8).reshape(4, 8)
    u, v = np.full((2, 4), 7, np.uint8), np.full((2, 4), 9, np.uint8)
    body = y.tobytes() + u.tobytes() + v.tobytes()
    path = tmp_path / "ntsc.y4m"
    header = b"YUV4MPEG2 W8 H4 F30000:1001 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2\n"
    second = (y + 1).tobytes() + v.tobytes() + u.tobytes()  # U and V swapped
    path.write_bytes(header + b"FRAME\n" + body + b"FRAME Ixyz\n" + second)  # frame params
    with open_sequence(path) as video:
        assert video.info.fps == pytest.approx(29.97002997)
        frames = list(video.yuv_frames())
    assert len(frames) == 2
    for plane, plane_ref in zip(frames[0] + frames[1], (y, u, v, y + 1, v, u)):
        np.testing.assert_array_equal(plane, plane_ref)
    (tmp_path / "c444.y4m").write_bytes(b"YUV4MPEG2 W8 H4 F25:1 C444\nFRAME\n" + bytes(96))
    with pytest.raises(ValueError, match="C444 is not supported.*C420jpeg"):
        open_sequence(tmp_path / "c444.y4m")
    (tmp_path / "short.y4m").write_bytes(header + b"FRAME\n" + body[:-1])
    with pytest.raises(ValueError, match="truncated"):
        open_sequence(tmp_path / "short.y4m")


def test_y4m_frame_rate_ratio(tmp_path: Path) -> None:
    planes = (np.zeros((4, 8), np.uint8), np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.uint8))
    for fps, header in ((29.97, b"F30000:1001"), (12.5, b"F25:2"), (120.0, b"F120:1")):
        with open_writer(tmp_path / "rate.y4m", width=8, height=4, fps=fps) as writer:
            writer.write_yuv(*planes)
        assert header in (tmp_path / "rate.y4m").read_bytes()[:40]


@needs_data
def test_mp4_write_then_read_is_close(tmp_path: Path) -> None:
    out = tmp_path / "cisco.mp4"
    with open_sequence(CISCO) as video:
        originals = list(video.frames())
    with open_writer(out, width=160, height=96, fps=6, crf=18) as writer:
        for rgb in originals:
            writer.write(rgb)
    with open_sequence(out) as decoded:
        assert (decoded.info.width, decoded.info.height) == (160, 96)
        assert decoded.info.num_frames == 5 and decoded.info.fps == pytest.approx(6.0)
        for rgb, rgb_ref in zip(decoded, originals):
            assert psnr(rgb, rgb_ref, 1.0) > 30


@needs_data
def test_mp4_lossless_keeps_planes_sample_for_sample(tmp_path: Path) -> None:
    """crf=0 is lossless: the planes we write are the planes we read (no range change)."""
    out = tmp_path / "lossless.mkv"
    with open_sequence(CISCO) as video:
        source = list(video.yuv_frames(count=2))
    with open_writer(out, width=160, height=96, fps=6, crf=0) as writer:
        for planes in source:
            writer.write_yuv(*planes)
    with open_sequence(out) as decoded:
        for planes, planes_ref in zip(decoded.yuv_frames(), source):
            for plane, plane_ref in zip(planes, planes_ref):
                np.testing.assert_array_equal(plane, plane_ref)


@needs_data
def test_mp4_reading_and_seeking() -> None:
    with open_sequence(REALSHORT) as video:
        info = video.info
        assert (info.width, info.height, info.num_frames) == (320, 240, 36)
        assert info.fps == pytest.approx(30.02, abs=0.01)
        linear = [y for y, _, _ in video.yuv_frames(count=23)]
        seeked = [y for y, _, _ in video.yuv_frames(start=20, count=3)]
        first = next(iter(video))
    assert first.shape == (1, 3, 240, 320) and first.std() > 0.05
    assert not np.array_equal(linear[0], linear[1])  # real motion
    for y, y_ref in zip(seeked, linear[20:]):
        np.testing.assert_array_equal(y, y_ref)


@needs_data
def test_raw_h264_frame_count_and_end() -> None:
    with open_sequence(CISCO_H264) as video:
        assert (video.info.width, video.info.height, video.info.num_frames) == (640, 320, 9)
        assert len(list(video.yuv_frames(start=7))) == 2
        with pytest.raises(ValueError, match="has only 9 frames"):
            video.frames(count=10)


@needs_data
def test_yuv444_video_keeps_chroma_for_rgb() -> None:
    with open_sequence(COCKATOO_444) as video:
        y, u, v = next(video.yuv_frames())
        rgb = next(iter(video))  # from the 4:4:4 planes
    assert y.shape == (720, 1280) and u.shape == v.shape == (360, 640)
    assert rgb.shape == (1, 3, 720, 1280)
    rgb_from_420 = planes_to_rgb(y, u, v)
    assert 35 < psnr(rgb_from_420, rgb, 1.0) < 80  # close, but not identical: chroma was kept


@needs_data
def test_png_folder_round_trip(tmp_path: Path) -> None:
    patch = kodak_rgb(64, 96)
    frames = [patch, patch.flip(-1), patch.flip(-2)]
    out = tmp_path / "frames"
    with open_writer(out, width=96, height=64) as writer:
        for rgb in frames:
            writer.write(rgb)
    assert sorted(p.name for p in out.iterdir()) == ["im00001.png", "im00002.png", "im00003.png"]
    with open_sequence(out, fps=24) as video:
        assert (video.info.width, video.info.height, video.info.num_frames) == (96, 64, 3)
        assert video.info.fps == 24.0
        for rgb, rgb_ref in zip(video, frames):
            torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=0)


@needs_data
@pytest.mark.parametrize("kind", ["yuv", "y4m", "pyav", "png"])
def test_every_reader_speaks_the_reader_contract(kind: str, tmp_path: Path) -> None:
    """Each reader type, on a real clip: info, RGB frames, 4:2:0 planes, close and ``with``;
    ``open_sequence`` hands out exactly what the reader gives."""
    from enhancer.data.images import ImageFolderReader
    from enhancer.data.reader import FrameReader, SequenceInfo
    from enhancer.data.video import PyAVReader
    from enhancer.data.y4m import Y4mReader
    from enhancer.data.yuv import YuvReader

    path, size = CISCO, (160, 96, 5)
    if kind == "y4m":  # the same real frames in the other containers
        path = tmp_path / "cisco.y4m"
        with open_sequence(CISCO) as video, open_writer(path, width=160, height=96) as writer:
            for planes in video.yuv_frames():
                writer.write_yuv(*planes)
    elif kind == "png":
        path = tmp_path / "cisco"
        with open_sequence(CISCO) as video, open_writer(path, width=160, height=96) as writer:
            for rgb in video.frames():
                writer.write(rgb)
    elif kind == "pyav":
        path, size = REALSHORT, (320, 240, 36)
    make = {"yuv": YuvReader, "y4m": Y4mReader, "pyav": PyAVReader, "png": ImageFolderReader}
    with make[kind](path) as reader:
        assert isinstance(reader, FrameReader)
        info = reader.info
        assert isinstance(info, SequenceInfo) and info.path == path and info.fps > 0
        assert (info.width, info.height, info.num_frames) == size
        rgb = list(reader.frames(1, 2))
        planes = list(reader.yuv_frames(1, 2))
        assert len(rgb) == len(planes) == 2
        for frame, (y, u, v) in zip(rgb, planes):
            assert frame.shape == (1, 3, size[1], size[0]) and frame.dtype == torch.float32
            assert 0 <= frame.min() and frame.max() <= 1 and frame.std() > 0.05
            assert y.shape == (size[1], size[0]) and u.shape == v.shape == (size[1] // 2,
                                                                            size[0] // 2)
            assert y.dtype == u.dtype == v.dtype == np.uint8
            from_planes = planes_to_rgb(y, u, v)  # the two forms agree
            if kind == "png":  # RGB is stored, the planes are converted from it
                assert psnr(from_planes, frame, 1.0) > 35
            else:  # the planes are stored, RGB is converted from them
                torch.testing.assert_close(from_planes, frame, rtol=0, atol=0)
        with open_sequence(path) as video:
            assert video.info == info
            for frame, frame_ref in zip(video.frames(1, 2), rgb):
                torch.testing.assert_close(frame, frame_ref, rtol=0, atol=0)
            for ours, theirs in zip(video.yuv_frames(1, 2), planes):
                for plane, plane_ref in zip(ours, theirs):
                    np.testing.assert_array_equal(plane, plane_ref)
    reader.close()  # closing twice is harmless


def test_unknown_extensions_list_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    path.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match=r"unknown extension \.gif; supported: .yuv, .y4m, .mp4"):
        open_sequence(path)
    with pytest.raises(ValueError, match=r"unknown extension \.gif; supported: .yuv, .y4m, .mp4"):
        open_writer(path, width=16, height=16)
    with pytest.raises(FileNotFoundError, match="missing.yuv"):
        open_sequence(tmp_path / "missing.yuv")


@pytest.mark.parametrize("name", ["out.yuv", "out.y4m", "out.mp4", "out_frames"])
def test_writer_is_atomic(tmp_path: Path, name: str) -> None:
    y = np.full((16, 32), 100, np.uint8)
    u = v = np.full((8, 16), 128, np.uint8)
    with (
        pytest.raises(RuntimeError, match="boom"),
        open_writer(tmp_path / name, width=32, height=16) as writer,
    ):
        writer.write_yuv(y, u, v)
        assert not (tmp_path / name).exists()  # only a temporary exists while writing
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no output and no temporary left behind
    with open_writer(tmp_path / name, width=32, height=16) as writer:
        writer.write_yuv(y, u, v)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    with open_sequence(tmp_path / name, width=32, height=16) as video:
        decoded_y, _, _ = next(video.yuv_frames())
    assert np.abs(decoded_y.astype(int) - 100).max() <= 2


def test_writer_refuses_a_non_empty_folder_and_empty_output(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        open_writer(tmp_path / "frames", width=16, height=16)
    with (
        pytest.raises(ValueError, match="no frames were written"),
        open_writer(tmp_path / "empty.yuv", width=16, height=16),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# ---------------------------------------------------------------------------
# colour

def test_known_colours_bt709() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).T.reshape(1, 3, 1, 3)
    y, uv = rgb_to_yuv444(rgb)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([1.0, 0.2126, 0.0722]))
    torch.testing.assert_close(uv[0, :, 0, 0], torch.tensor([0.5, 0.5]))  # white: no chroma
    torch.testing.assert_close(uv[0, 1, 0, 1], torch.tensor(1.0))  # red: Cr at its maximum
    torch.testing.assert_close(uv[0, 0, 0, 2], torch.tensor(1.0))  # blue: Cb at its maximum
    y601, _ = rgb_to_yuv444(rgb, matrix="bt601")
    torch.testing.assert_close(y601[0, 0, 0], torch.tensor([1.0, 0.299, 0.114]))
    with pytest.raises(ValueError, match="unknown colour matrix 'bt2020'"):
        rgb_to_yuv420(rgb, matrix="bt2020")


@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
def test_yuv444_round_trip_is_exact(matrix: str) -> None:
    rgb = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    y, uv = rgb_to_yuv444(rgb, matrix)
    torch.testing.assert_close(yuv444_to_rgb(y, uv, matrix), rgb, rtol=0, atol=1e-6)


@needs_data
@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_yuv420_round_trip_on_a_photo(upsample: str) -> None:
    rgb = kodak_rgb(256, 256)
    y, uv = rgb_to_yuv420(rgb)
    assert y.shape == (1, 1, 256, 256) and uv.shape == (1, 2, 128, 128)
    back = yuv420_to_rgb(y, uv, upsample=upsample)
    assert back.shape == rgb.shape and 0 <= back.min() and back.max() <= 1
    assert psnr(back, rgb, 1.0) > 40  # measured 46.5 (bilinear) / 45.5 (nearest) on kodim01


@needs_data
def test_yuv_to_rgb_to_yuv_keeps_luma_on_real_planes() -> None:
    with open_sequence(CISCO) as video:
        y, u, v = next(video.yuv_frames())
    y2, u2, v2 = rgb_to_planes(planes_to_rgb(y, u, v))
    luma_error = np.abs(y2.astype(int) - y)
    assert (luma_error <= 1).mean() > 0.95  # measured 98.6%; the rest is gamut clamping
    assert psnr(u2, u, 255) > 30 and psnr(v2, v, 255) > 30


def test_matches_dcvc_convention() -> None:
    """Full-range BT.709 matrix on /255 values, 2x2 chroma mean, bilinear = scipy zoom order 1."""
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    rgb = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    y, uv = rgb_to_yuv420(rgb)
    bt709 = torch.tensor([[0.2126, 0.7152, 0.0722],
                          [-0.2126 / 1.8556, -0.7152 / 1.8556, 0.5],
                          [0.5, -0.7152 / 1.5748, -0.0722 / 1.5748]])
    ycbcr = torch.einsum("ij,bjhw->bihw", bt709, rgb) + torch.tensor([0, 0.5, 0.5])[:, None, None]
    torch.testing.assert_close(y[0, 0], ycbcr[0, 0])
    chroma_mean = ycbcr[0, 1:].reshape(2, 4, 2, 6, 2).mean(dim=(2, 4))
    torch.testing.assert_close(uv[0], chroma_mean)
    upsampled = scipy_ndimage.zoom(uv[0].numpy(), (1, 2, 2), order=1)
    expected = yuv444_to_rgb(y, torch.from_numpy(upsampled)[None])
    torch.testing.assert_close(yuv420_to_rgb(y, uv), expected, rtol=0, atol=1e-6)


def test_plane_tensor_helpers_round_trip() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    u, v = rng.integers(0, 256, (2, 3, 4), dtype=np.uint8)
    y_t, uv_t = planes_to_tensors(y, u, v)
    assert y_t.shape == (1, 1, 6, 8) and uv_t.shape == (1, 2, 3, 4) and y_t.dtype == torch.float32
    assert y_t.max() <= 1.0
    for plane, plane_ref in zip(tensors_to_planes(y_t, uv_t), (y, u, v)):
        np.testing.assert_array_equal(plane, plane_ref)


# ---------------------------------------------------------------------------
# padding

def test_centre_crop_takes_the_middle_window() -> None:
    from enhancer.data.padding import centre_crop_box

    frame = torch.arange(7 * 10).reshape(1, 1, 7, 10)  # odd margins: 3 rows, 6 columns
    assert centre_crop_box(7, 10, 4, 4) == (1, 3)
    assert torch.equal(centre_crop(frame, 4, 4), frame[..., 1:5, 3:7])
    assert torch.equal(centre_crop(frame, 7, 10), frame)


def test_odd_size_pad_crop_round_trip() -> None:
    frame = torch.rand(1, 3, 170, 250)  # (B, 3, H, W) with H, W not multiples of 64
    assert padded_size(170, 250, 64) == (192, 256)
    padded = pad_to_multiple(frame, 64)
    assert padded.shape == (1, 3, 192, 256)
    torch.testing.assert_close(padded[..., 169:, 249], frame[..., 169:, 249].expand(1, 3, 23))
    torch.testing.assert_close(crop(padded, 170, 250), frame, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# datasets

@needs_data
def test_video_clip_dataset_shapes_and_determinism() -> None:
    dataset = VideoClipDataset([CISCO, REALSHORT], clip_len=3, crop_size=64,
                               max_frames_per_video=8, seed=3, samples_per_video=2)
    assert len(dataset) == 4
    clip = dataset[1]  # from realshort.mp4
    assert clip.shape == (3, 3, 64, 64) and clip.dtype == torch.float32
    assert 0 <= clip.min() and clip.max() <= 1
    torch.testing.assert_close(dataset[1], clip)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1], clip)


@needs_data
def test_video_clip_dataset_full_frames_equal_the_reader() -> None:
    dataset = VideoClipDataset(CISCO, clip_len=5, crop_size=None)
    with open_sequence(CISCO) as video:
        expected = torch.cat(list(video))
    torch.testing.assert_close(dataset[0], expected)


@needs_data
def test_video_clip_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CiscoVT2people_160x96_6fps.yuv is 160x96, smaller "
                                         r"than the 128x128 crop"):
        VideoClipDataset([CISCO], clip_len=2, crop_size=128)
    with pytest.raises(ValueError, match="has 5 usable frames, fewer than clip_len=6"):
        VideoClipDataset([CISCO], clip_len=6, crop_size=64)
    (tmp_path / "notes.txt").write_text("no videos here")
    with pytest.raises(ValueError, match="no videos found"):
        VideoClipDataset(tmp_path, clip_len=2, crop_size=64)


@needs_data
def test_image_folder_dataset(tmp_path: Path) -> None:
    big = (kodak_rgb(64, 96)[0].permute(1, 2, 0) * 255).round().byte().numpy()
    write_image(tmp_path / "a.png", big)
    write_image(tmp_path / "sub_small.png", big[:40, :40])
    dataset = ImageFolderDataset(tmp_path, crop_size=32, random_crop=False)
    assert len(dataset) == 2
    item = dataset[0]
    assert item.shape == (3, 32, 32)
    torch.testing.assert_close(item, torch.from_numpy(big[16:48, 32:64]).permute(2, 0, 1) / 255.0)
    assert ImageFolderDataset(tmp_path, crop_size=32, seed=1)[1].shape == (3, 32, 32)
    with pytest.raises(ValueError, match=r"sub_small.png is 40x40, smaller than the 48x48 crop"):
        ImageFolderDataset(tmp_path, crop_size=48)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path / "empty", crop_size=32)


def test_vimeo90k_septuplet(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, 48, 64, 3), dtype=np.uint8)
    for entry in ("00001/0001", "00001/0002"):
        folder = tmp_path / "sequences" / entry
        folder.mkdir(parents=True)
        for index, rgb in enumerate(frames, start=1):
            write_image(folder / f"im{index}.png", rgb)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (tmp_path / "sep_testlist.txt").write_text("00001/0002\n")

    train = Vimeo90kSeptuplet(tmp_path, split="train", clip_len=3, crop_size=32)
    assert len(train) == 2 and train[0].shape == (3, 3, 32, 32)
    test = Vimeo90kSeptuplet(tmp_path, split="test", clip_len=7, crop_size=None)
    expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(test[0], expected)

    with pytest.raises(ValueError, match=r"im1.png is 64x48, smaller than the 64x64 crop"):
        Vimeo90kSeptuplet(tmp_path, split="train", crop_size=64)
    (tmp_path / "sep_trainlist.txt").unlink()
    with pytest.raises(FileNotFoundError, match="sep_trainlist.txt not found; expected"):
        Vimeo90kSeptuplet(tmp_path, split="train")


def test_video_clip_cache_serves_the_decoded_frames():
    """cache_frames=True serves the same clips from memory (exactly, for full frames)."""
    from enhancer.data.datasets import VideoClipDataset

    clip = DATA / "video" / "imageio" / "realshort.mp4"
    if not clip.is_file():
        pytest.skip(f"needs {clip}")
    options = {"clip_len": 2, "max_frames_per_video": 6, "samples_per_video": 3}
    cached = VideoClipDataset([clip], crop_size=None, cache_frames=True, **options)
    direct = VideoClipDataset([clip], crop_size=None, **options)
    for index in range(3):
        assert torch.equal(cached[index], direct[index])
    assert len(cached._planes) == 1 and len(cached._planes[0]) == 6
    cropped = VideoClipDataset([clip], crop_size=32, cache_frames=True, **options)
    assert cropped[0].shape == (2, 3, 32, 32)


def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    expected = np.round(ramp / 65535 * 255).astype(np.uint8)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb[..., 1], expected)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png is not a readable image"):
        read_image(tmp_path / "junk.png")
