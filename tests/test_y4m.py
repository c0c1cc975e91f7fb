"""Y4M and raw 4:2:0 headers and samples a reader must not take at face value
(enhancer/data/y4m.py, enhancer/data/yuv.py)."""

from __future__ import annotations

import numpy as np
import pytest

from enhancer.data.sequence import open_sequence

WIDTH, HEIGHT = 8, 4


def _y4m(tmp_path, header: bytes, sample=0, dtype=np.uint8):
    planes = np.full(WIDTH * HEIGHT * 3 // 2, sample, dtype=dtype).tobytes()
    path = tmp_path / "clip.y4m"
    path.write_bytes(header + b"\n" + b"FRAME\n" + planes)
    return path


@pytest.mark.parametrize(("tag", "kind"), [(b"It", "top field first"),
                                           (b"Ib", "bottom field first"), (b"Im", "mixed")])
def test_interlaced_y4m_is_refused(tmp_path, tag, kind):
    path = _y4m(tmp_path, b"YUV4MPEG2 W8 H4 F25:1 " + tag + b" C420jpeg")
    with pytest.raises(ValueError, match=f"I{tag[1:].decode()} marks interlaced video "
                                         f"\\({kind}\\); .* deinterlace it first"):
        open_sequence(path)


@pytest.mark.parametrize("tag", [b"Ip ", b"I? ", b""])
def test_progressive_or_unstated_y4m_is_read(tmp_path, tag):
    with open_sequence(_y4m(tmp_path, b"YUV4MPEG2 W8 H4 F25:1 " + tag + b"C420jpeg")) as video:
        assert (video.info.width, video.info.fps, len(list(video.frames()))) == (8, 25.0, 1)


def test_a_zero_frame_rate_denominator_is_refused(tmp_path):
    """F30:0 was read as 30 fps."""
    with pytest.raises(ValueError, match="frame rate F30:0 is invalid"):
        open_sequence(_y4m(tmp_path, b"YUV4MPEG2 W8 H4 F30:0 Ip"))


def test_ten_bit_samples_above_1023_are_refused(tmp_path):
    path = _y4m(tmp_path, b"YUV4MPEG2 W8 H4 F25:1 Ip C420p10", sample=1023, dtype="<u2")
    with open_sequence(path) as video:
        assert float(next(iter(video.frames())).max()) <= 1.0
    path = _y4m(tmp_path, b"YUV4MPEG2 W8 H4 F25:1 Ip C420p10", sample=1024, dtype="<u2")
    with open_sequence(path) as video, pytest.raises(
            ValueError, match="frame 0 holds the sample value 1024, above the 10-bit maximum "
                              "1023"):
        list(video.frames())
    raw = tmp_path / "clip_8x4_10bit.yuv"
    raw.write_bytes(np.full(WIDTH * HEIGHT * 3 // 2, 40000, dtype="<u2").tobytes())
    with open_sequence(raw) as video, pytest.raises(ValueError, match="value 40000"):
        list(video.frames())


@pytest.mark.parametrize("header, message", [
    (b"YUV4MPEG2 Wabc H96 F30:1", "Wabc is not a whole number"),
    (b"YUV4MPEG2 W160 H96 F30", "frame rate F30 is invalid"),
    (b"YUV4MPEG2 W160 H96 F0:1", "frame rate F0:1 is invalid"),
    (b"YUV4MPEG2 W160 H96 F-30:1", "frame rate F-30:1 is invalid"),
])
def test_bad_y4m_headers(tmp_path, header, message):
    path = tmp_path / "bad.y4m"
    path.write_bytes(header + b"\nFRAME\n" + bytes(160 * 96 * 3 // 2))
    with pytest.raises(ValueError, match=message):
        open_sequence(path)
