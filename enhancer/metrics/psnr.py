"""PSNR on RGB, on luma, and the codec-standard YUV 4:2:0 PSNR.

All functions take float tensors in ``[0, data_range]`` and return one value per image,
shape ``(B,)``, in dB. They measure the tensors as given: to score 8-bit output the way
codec papers do, round both images to the 8-bit grid first.

Identical images have zero error and their PSNR is ``inf`` (IEEE infinity, not an error).
Pass ``max_db`` (for example 100.0) to cap it when the values are averaged.

YUV follows DCVC's test conditions (DCVC-FM's test scripts): BT.709 full-range on [0, 1] values,
chroma centred on 0.5, 4:2:0 chroma by 2x2 averaging, and

    PSNR_YUV = (6 * PSNR_Y + PSNR_U + PSNR_V) / 8

The colour conversion is written here and not imported from ``enhancer.data.color``
because metrics sit below data in the layering; tests check that both agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# BT.709 luma weights; Kg = 1 - Kr - Kb.
BT709_KR = 0.2126
BT709_KB = 0.0722

YUVPlanes = tuple[Tensor, Tensor]  # y (B, 1, H, W), uv (B, 2, H/2, W/2)


def check_image_pair(x: Tensor, y: Tensor, channels: int | None = 3) -> None:
    """Raise ValueError unless ``x`` and ``y`` are float ``(B, C, H, W)`` of equal shape."""
    for name, tensor in (("x", x), ("y", y)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 4 or (channels is not None and tensor.shape[1] != channels):
            expected = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
            raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(
                f"{name} must be a float tensor in [0, 1], got {tensor.dtype}; "
                "convert 8-bit images with x.float() / 255"
            )
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")


def _mse_to_psnr(mse: Tensor, data_range: float, max_db: float | None) -> Tensor:
    """Per-image MSE ``(B,)`` (float64) -> PSNR in dB ``(B,)``; MSE 0 gives inf or max_db."""
    psnr_db = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> +inf
    if max_db is not None:
        psnr_db = psnr_db.clamp(max=max_db)
    return psnr_db


def _mse_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error over all but the batch dimension, in float64: ``(B,)``."""
    return (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, max_db: float | None = None) -> Tensor:
    """PSNR in dB over all channels of ``x``, ``y`` ``(B, C, H, W)``: returns ``(B,)`` float32.

    Identical images give ``inf`` unless ``max_db`` caps it.
    """
    check_image_pair(x, y, channels=None)
    return _mse_to_psnr(_mse_per_image(x, y), data_range, max_db).float()


def rgb_to_yuv420(rgb: Tensor) -> YUVPlanes:
    """RGB ``(B, 3, H, W)`` in [0, 1] -> BT.709 ``y (B, 1, H, W)``, ``uv (B, 2, H/2, W/2)``.

    Full range on [0, 1] values with chroma offset 0.5 (the convention DCVC uses and
    ``enhancer.data.color.rgb_to_yuv420`` implements); chroma is 2x2-averaged.
    """
    height, width = rgb.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(
            f"YUV 4:2:0 needs an even width and height, got {width}x{height}; pad the frame "
            "to a multiple of 2 first"
        )
    kr, kb = BT709_KR, BT709_KB
    kg = 1.0 - kr - kb
    red, green, blue = rgb.unbind(dim=1)  # each (B, H, W)
    luma = kr * red + kg * green + kb * blue
    cb = 0.5 * (blue - luma) / (1.0 - kb) + 0.5
    cr = 0.5 * (red - luma) / (1.0 - kr) + 0.5
    luma = luma.unsqueeze(1).clamp(0.0, 1.0)  # (B, 1, H, W)
    uv444 = torch.stack((cb, cr), dim=1).clamp(0.0, 1.0)  # (B, 2, H, W)
    return luma, F.avg_pool2d(uv444, kernel_size=2, stride=2)  # uv: (B, 2, H/2, W/2)


def rgb_to_luma(rgb: Tensor) -> Tensor:
    """RGB ``(B, 3, H, W)`` in [0, 1] -> BT.709 luma ``(B, 1, H, W)`` (any H, W)."""
    kr, kb = BT709_KR, BT709_KB
    red, green, blue = rgb.unbind(dim=1)
    luma = kr * red + (1.0 - kr - kb) * green + kb * blue
    return luma.unsqueeze(1).clamp(0.0, 1.0)


def psnr_y(x: Tensor, y: Tensor, data_range: float = 1.0, max_db: float | None = None) -> Tensor:
    """PSNR of BT.709 luma between RGB images ``(B, 3, H, W)``: returns ``(B,)``.

    Luma tensors ``(B, 1, H, W)`` are accepted too and compared as they are.
    """
    check_image_pair(x, y, channels=None)
    if x.shape[1] == 3:
        x, y = rgb_to_luma(x), rgb_to_luma(y)
    elif x.shape[1] != 1:
        raise ValueError(
            f"psnr_y expects RGB (B, 3, H, W) or luma (B, 1, H, W), got {tuple(x.shape)}"
        )
    return psnr(x, y, data_range, max_db)


def _as_yuv_planes(image: Tensor | YUVPlanes, name: str) -> YUVPlanes:
    """Accept RGB ``(B, 3, H, W)`` or a ``(y, uv)`` 4:2:0 pair; return the pair."""
    if isinstance(image, Tensor):
        if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(
                f"{name} must be float RGB (B, 3, H, W) or a (y, uv) tuple of 4:2:0 planes, "
                f"got {tuple(image.shape)} {image.dtype}"
            )
        return rgb_to_yuv420(image)
    if not (isinstance(image, (tuple, list)) and len(image) == 2):
        raise TypeError(
            f"{name} must be an RGB tensor or a (y, uv) tuple, got {type(image).__name__}"
        )
    luma, uv = image
    if luma.dim() != 4 or luma.shape[1] != 1 or uv.dim() != 4 or uv.shape[1] != 2:
        raise ValueError(
            f"{name} planes must be y (B, 1, H, W) and uv (B, 2, H/2, W/2), got "
            f"{tuple(luma.shape)} and {tuple(uv.shape)}"
        )
    if tuple(uv.shape[-2:]) != (luma.shape[-2] // 2, luma.shape[-1] // 2):
        raise ValueError(
            f"{name}: chroma {tuple(uv.shape[-2:])} is not half of luma {tuple(luma.shape[-2:])}"
            " (expected 4:2:0)"
        )
    return luma, uv


def psnr_yuv_components(
    x: Tensor | YUVPlanes,
    y: Tensor | YUVPlanes,
    data_range: float = 1.0,
    max_db: float | None = None,
) -> dict[str, Tensor]:
    """PSNR of each 4:2:0 plane and their (6Y + U + V) / 8 mix, each ``(B,)``.

    ``x`` and ``y`` are RGB ``(B, 3, H, W)`` in [0, 1] (converted with BT.709, H and W
    even) or precomputed planes ``(y (B, 1, H, W), uv (B, 2, H/2, W/2))``.
    Returns ``{"y", "u", "v", "yuv"}``. Identical planes give inf (or ``max_db``).
    """
    luma_x, uv_x = _as_yuv_planes(x, "x")
    luma_y, uv_y = _as_yuv_planes(y, "y")
    check_image_pair(luma_x, luma_y, channels=1)
    check_image_pair(uv_x, uv_y, channels=2)
    psnr_luma = _mse_to_psnr(_mse_per_image(luma_x, luma_y), data_range, max_db)
    psnr_u = _mse_to_psnr(_mse_per_image(uv_x[:, :1], uv_y[:, :1]), data_range, max_db)
    psnr_v = _mse_to_psnr(_mse_per_image(uv_x[:, 1:], uv_y[:, 1:]), data_range, max_db)
    psnr_mix = (6.0 * psnr_luma + psnr_u + psnr_v) / 8.0
    return {
        "y": psnr_luma.float(),
        "u": psnr_u.float(),
        "v": psnr_v.float(),
        "yuv": psnr_mix.float(),
    }


def psnr_yuv(
    x: Tensor | YUVPlanes,
    y: Tensor | YUVPlanes,
    data_range: float = 1.0,
    max_db: float | None = None,
) -> Tensor:
    """YUV 4:2:0 PSNR ``(6 * PSNR_Y + PSNR_U + PSNR_V) / 8`` per image: ``(B,)``.

    Inputs as in :func:`psnr_yuv_components`.
    """
    return psnr_yuv_components(x, y, data_range, max_db)["yuv"]


def mse_to_psnr(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a scalar MSE (for sequence-level averages of MSE); 0 -> inf."""
    if mse < 0:
        raise ValueError(f"MSE must be >= 0, got {mse}")
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
