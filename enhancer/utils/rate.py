"""Bits per pixel from real byte counts."""

from __future__ import annotations


def bpp_from_bytes(num_bytes: int, height: int, width: int, num_frames: int = 1) -> float:
    """Bits per pixel of ``num_bytes`` coding ``num_frames`` frames of ``height`` x ``width``.

    ``bpp = 8 * num_bytes / (height * width * num_frames)``; pixels are counted at the
    original (unpadded) size.
    """
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
    if height <= 0 or width <= 0 or num_frames <= 0:
        raise ValueError(
            f"height, width and num_frames must be positive, got {height}, {width}, {num_frames}"
        )
    return 8.0 * num_bytes / (height * width * num_frames)
