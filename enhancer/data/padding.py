"""Replicate padding to a codec's required multiple, the exact crop back, and centre crops."""

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


def centre_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """``(top, left)`` of the centred ``crop_h x crop_w`` window of a ``height x width``
    frame; an odd margin leaves its extra pixel at the bottom or right."""
    return (height - crop_h) // 2, (width - crop_w) // 2


def centre_crop(frame: Tensor, crop_h: int, crop_w: int) -> Tensor:
    """The centred ``crop_h x crop_w`` window of ``(..., H, W)`` (a view)."""
    top, left = centre_crop_box(*frame.shape[-2:], crop_h, crop_w)
    return frame[..., top : top + crop_h, left : left + crop_w]
