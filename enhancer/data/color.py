"""YCbCr <-> RGB conversion on torch tensors, matching DCVC's test conditions.

Convention (the one microsoft/DCVC uses in ``src/transforms/functional.py``):

- 8-bit samples are divided by 255 (10-bit by 1023); luma and chroma then lie in [0, 1]
  and chroma is centred on 0.5. The *full-range* matrix is applied to these values
  as they are: no 16..235 studio-range expansion, exactly as DCVC reads UVG.
- ``Y  = Kr*R + Kg*G + Kb*B``
  ``Cb = 0.5 * (B - Y) / (1 - Kb) + 0.5``,  ``Cr = 0.5 * (R - Y) / (1 - Kr) + 0.5``
  with BT.709 ``(Kr, Kb) = (0.2126, 0.0722)`` (default) or BT.601 ``(0.299, 0.114)``.
- 4:4:4 -> 4:2:0: average of each 2x2 chroma block.
- 4:2:0 -> 4:4:4: ``upsample="bilinear"`` (default) is DCVC's
  ``scipy.ndimage.zoom(uv, 2, order=1)``, which equals torch's bilinear interpolation
  with ``align_corners=True``; ``upsample="nearest"`` repeats each chroma sample 2x2.
- Every output is clamped to [0, 1], as in DCVC.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# (Kr, Kb) per matrix; Kg = 1 - Kr - Kb.
MATRICES: dict[str, tuple[float, float]] = {
    "bt709": (0.2126, 0.0722),
    "bt601": (0.299, 0.114),
}
UPSAMPLE_MODES = ("bilinear", "nearest")


def _weights(matrix: str) -> tuple[float, float, float]:
    if matrix not in MATRICES:
        raise ValueError(f"unknown colour matrix {matrix!r}; choose one of {sorted(MATRICES)}")
    kr, kb = MATRICES[matrix]
    return kr, 1.0 - kr - kb, kb


def _check_rgb(rgb: Tensor) -> None:
    if rgb.dim() != 4 or rgb.shape[1] != 3 or not rgb.is_floating_point():
        raise ValueError(
            f"expected a float RGB tensor of shape (B, 3, H, W), got {tuple(rgb.shape)} "
            f"{rgb.dtype}"
        )


def rgb_to_yuv444(rgb: Tensor, matrix: str = "bt709") -> tuple[Tensor, Tensor]:
    """RGB ``(B, 3, H, W)`` in [0, 1] -> ``y (B, 1, H, W)``, ``uv (B, 2, H, W)`` in [0, 1]."""
    _check_rgb(rgb)
    kr, kg, kb = _weights(matrix)
    r, g, b = rgb.unbind(dim=1)
    y = kr * r + kg * g + kb * b
    cb = 0.5 * (b - y) / (1.0 - kb) + 0.5
    cr = 0.5 * (r - y) / (1.0 - kr) + 0.5
    y = y.unsqueeze(1).clamp(0.0, 1.0)  # (B, 1, H, W)
    uv = torch.stack((cb, cr), dim=1).clamp(0.0, 1.0)  # (B, 2, H, W)
    return y, uv


def yuv444_to_rgb(y: Tensor, uv: Tensor, matrix: str = "bt709") -> Tensor:
    """``y (B, 1, H, W)``, ``uv (B, 2, H, W)`` in [0, 1] -> RGB ``(B, 3, H, W)`` in [0, 1]."""
    if y.dim() != 4 or y.shape[1] != 1 or uv.dim() != 4 or uv.shape[1] != 2:
        raise ValueError(
            f"expected y (B, 1, H, W) and uv (B, 2, H, W), got {tuple(y.shape)} and "
            f"{tuple(uv.shape)}"
        )
    if y.shape[-2:] != uv.shape[-2:]:
        raise ValueError(
            f"4:4:4 planes must have the same size, got y {tuple(y.shape[-2:])} and "
            f"uv {tuple(uv.shape[-2:])}; use yuv420_to_rgb for subsampled chroma"
        )
    kr, kg, kb = _weights(matrix)
    cb, cr = uv[:, 0:1], uv[:, 1:2]
    r = y + (2.0 - 2.0 * kr) * (cr - 0.5)
    b = y + (2.0 - 2.0 * kb) * (cb - 0.5)
    g = (y - kr * r - kb * b) / kg
    return torch.cat((r, g, b), dim=1).clamp(0.0, 1.0)  # (B, 3, H, W)


def downsample_chroma(uv: Tensor) -> Tensor:
    """4:4:4 chroma ``(B, 2, H, W)`` -> 4:2:0 ``(B, 2, H/2, W/2)`` by 2x2 averaging."""
    height, width = uv.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(
            f"4:2:0 needs an even width and height, got {width}x{height}; "
            "pad the frame first (enhancer.data.pad_to_multiple(frame, 2))"
        )
    return F.avg_pool2d(uv, kernel_size=2, stride=2)


def upsample_chroma(uv: Tensor, upsample: str = "bilinear") -> Tensor:
    """4:2:0 chroma ``(B, 2, h, w)`` -> ``(B, 2, 2h, 2w)``; see the module docstring."""
    if upsample == "bilinear":
        return F.interpolate(uv, scale_factor=2, mode="bilinear", align_corners=True)
    if upsample == "nearest":
        return F.interpolate(uv, scale_factor=2, mode="nearest")
    raise ValueError(f"unknown chroma upsampling {upsample!r}; choose one of {UPSAMPLE_MODES}")


def rgb_to_yuv420(rgb: Tensor, matrix: str = "bt709") -> tuple[Tensor, Tensor]:
    """RGB ``(B, 3, H, W)`` in [0, 1] -> ``y (B, 1, H, W)``, ``uv (B, 2, H/2, W/2)``."""
    y, uv444 = rgb_to_yuv444(rgb, matrix)
    return y, downsample_chroma(uv444)


def yuv420_to_rgb(
    y: Tensor, uv: Tensor, matrix: str = "bt709", upsample: str = "bilinear"
) -> Tensor:
    """``y (B, 1, H, W)``, ``uv (B, 2, H/2, W/2)`` in [0, 1] -> RGB ``(B, 3, H, W)`` in [0, 1]."""
    if y.dim() != 4 or uv.dim() != 4 or tuple(uv.shape[-2:]) != (
        y.shape[-2] // 2,
        y.shape[-1] // 2,
    ):
        raise ValueError(
            f"expected y (B, 1, H, W) and uv (B, 2, H/2, W/2), got {tuple(y.shape)} and "
            f"{tuple(uv.shape)}"
        )
    return yuv444_to_rgb(y, upsample_chroma(uv, upsample), matrix)


# ---------------------------------------------------------------------------
# uint8 / uint16 numpy planes <-> float tensors

def max_value(bit_depth: int) -> int:
    """Largest code value at ``bit_depth`` bits (255 for 8-bit, 1023 for 10-bit)."""
    return (1 << bit_depth) - 1


def planes_to_tensors(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, bit_depth: int = 8
) -> tuple[Tensor, Tensor]:
    """Integer planes ``Y (H, W)``, ``U, V (h, w)`` -> ``y (1, 1, H, W)``, ``uv (1, 2, h, w)``.

    Values are divided by ``2**bit_depth - 1`` and land in [0, 1] as float32.
    """
    if u.shape != v.shape:
        raise ValueError(f"U and V planes differ in shape: {u.shape} vs {v.shape}")
    scale = 1.0 / max_value(bit_depth)
    y_t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32) * scale)
    uv_t = torch.from_numpy(np.stack((u, v)).astype(np.float32) * scale)
    return y_t[None, None], uv_t[None]


def tensors_to_planes(
    y: Tensor, uv: Tensor, bit_depth: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``y (1, 1, H, W)``, ``uv (1, 2, h, w)`` in [0, 1] -> rounded integer planes Y, U, V.

    Returns uint8 for 8-bit and uint16 for deeper samples.
    """
    if y.dim() != 4 or y.shape[:2] != (1, 1) or uv.dim() != 4 or uv.shape[:2] != (1, 2):
        raise ValueError(
            f"expected y (1, 1, H, W) and uv (1, 2, h, w), got {tuple(y.shape)} and "
            f"{tuple(uv.shape)}"
        )
    peak = max_value(bit_depth)
    dtype = np.uint8 if bit_depth <= 8 else np.uint16

    def quantise(plane: Tensor) -> np.ndarray:
        values = (plane.detach().float().cpu() * peak).round().clamp(0, peak)
        return values.numpy().astype(dtype)

    return quantise(y[0, 0]), quantise(uv[0, 0]), quantise(uv[0, 1])


def rgb_to_planes(
    rgb: Tensor, matrix: str = "bt709", bit_depth: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB ``(1, 3, H, W)`` in [0, 1] -> integer 4:2:0 planes ``Y (H, W)``, ``U, V (H/2, W/2)``."""
    if rgb.dim() != 4 or rgb.shape[0] != 1:
        raise ValueError(f"expected one frame of shape (1, 3, H, W), got {tuple(rgb.shape)}")
    y, uv = rgb_to_yuv420(rgb.detach().float().cpu(), matrix)
    return tensors_to_planes(y, uv, bit_depth)


def planes_to_rgb(
    y: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    matrix: str = "bt709",
    bit_depth: int = 8,
    upsample: str = "bilinear",
) -> Tensor:
    """Integer planes (4:2:0 or 4:4:4) -> RGB ``(1, 3, H, W)`` float32 in [0, 1]."""
    y_t, uv_t = planes_to_tensors(y, u, v, bit_depth)
    if u.shape == y.shape:
        return yuv444_to_rgb(y_t, uv_t, matrix)
    return yuv420_to_rgb(y_t, uv_t, matrix, upsample)
