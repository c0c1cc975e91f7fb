"""MS-SSIM (and SSIM) per image, through ``pytorch_msssim``.

MS-SSIM uses 5 scales with an 11-px Gaussian window, so the coarsest scale needs the
image to be larger than (11 - 1) * 2**4 = 160 px on each side. Smaller images raise a
ValueError here rather than the library's bare assertion; use :func:`ssim` for them.
"""

from __future__ import annotations

import pytorch_msssim
from torch import Tensor

from enhancer.metrics.psnr import check_image_pair

WIN_SIZE = 11
MS_SSIM_LEVELS = 5
MS_SSIM_MIN_SIDE = (WIN_SIZE - 1) * 2 ** (MS_SSIM_LEVELS - 1)  # 160: sides must be larger
SSIM_MIN_SIDE = WIN_SIZE  # sides must be at least this


def ms_ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MS-SSIM between ``x`` and ``y`` ``(B, 3, H, W)`` in [0, data_range]: ``(B,)``.

    Higher is better; identical images give 1. Both sides must exceed 160 px.
    """
    check_image_pair(x, y, channels=None)
    height, width = x.shape[-2:]
    if min(height, width) <= MS_SSIM_MIN_SIDE:
        raise ValueError(
            f"MS-SSIM needs images larger than {MS_SSIM_MIN_SIDE} px per side "
            f"(5 scales, 11-px window), got {width}x{height}; use a larger crop or "
            "enhancer.metrics.ssim for small images"
        )
    return pytorch_msssim.ms_ssim(
        x.float(), y.float(), data_range=data_range, size_average=False, win_size=WIN_SIZE
    )


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Single-scale SSIM (11-px Gaussian window) per image ``(B,)``; sides must be >= 11 px."""
    check_image_pair(x, y, channels=None)
    height, width = x.shape[-2:]
    if min(height, width) < SSIM_MIN_SIDE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_MIN_SIDE} px per side, got {width}x{height}"
        )
    return pytorch_msssim.ssim(
        x.float(), y.float(), data_range=data_range, size_average=False, win_size=WIN_SIZE
    )
