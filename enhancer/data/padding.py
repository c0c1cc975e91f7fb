"""Replicate padding to a codec's required multiple, and the exact crop back."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Smallest (H, W) >= (height, width) that are multiples of ``multiple``."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to_multiple(frame: Tensor, multiple: int) -> Tensor:
    """Replicate-pad ``(..., H, W)`` on the bottom and right to a multiple of ``multiple``."""
    if multiple <= 1:
        return frame
    height, width = frame.shape[-2:]
    target_h, target_w = padded_size(height, width, multiple)
    if (target_h, target_w) == (height, width):
        return frame
    return F.pad(frame, (0, target_w - width, 0, target_h - height), mode="replicate")


def crop(frame: Tensor, height: int, width: int) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``height x width``."""
    return frame[..., :height, :width]
