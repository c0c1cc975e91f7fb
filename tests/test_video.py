"""Compressed source video (enhancer/data/video.py): damage is refused, never concealed."""

from __future__ import annotations

import pytest
import torch

from enhancer.data.sequence import open_sequence, open_writer


def _damaged_mp4(tmp_path):
    """An 8-frame MP4 with bytes of frame 4 (a P-frame) flipped, and its intact twin."""
    av = pytest.importorskip("av")
    torch.manual_seed(0)
    path = tmp_path / "source.mp4"
    with open_writer(path, width=64, height=64, fps=25) as writer:
        for _ in range(8):
            writer.write(torch.rand(1, 3, 64, 64))
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    position, size = packets[4]
    for offset in range(position + size // 3, position + size // 3 + 40):
        data[offset] ^= 0x55
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return path, damaged


def test_a_damaged_source_video_is_refused_not_concealed(tmp_path):
    intact, damaged = _damaged_mp4(tmp_path)
    with open_sequence(intact) as video:
        assert len(list(video.frames())) == 8
    with open_sequence(damaged) as video:
        frames = video.frames()
        with pytest.raises(ValueError, match=r"damaged.mp4: the video is damaged at frame [2-5] "
                                             r"\(counted from 0; .*\); .* repair or re-export"):
            list(frames)
