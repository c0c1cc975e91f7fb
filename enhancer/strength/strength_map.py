"""A strength map: per block of a frame, which residual scale the enhancer applies.

::

    enhanced = decoded + expand(map) * residual        # residual: the model's, at full strength

The encoder, which has the source, chooses the map (:mod:`enhancer.strength.choose`); it
travels with the stream (:mod:`enhancer.strength.coding`); the decoder expands it to a
per-pixel scale with smooth ramps between neighbouring blocks (no visible seams).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
BLOCK_SIZES = (32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128)
MAX_SCALE = 2.0


class StrengthMapError(ValueError):
    """A strength map that does not fit its frame, its model, or is damaged."""


def check_scales(scales: tuple[float, ...]) -> None:
    if not 1 <= len(scales) <= 16:
        raise StrengthMapError(f"a scale set has 1-16 values, got {len(scales)}: {scales}")
    for scale in scales:
        if not (0.0 <= scale <= MAX_SCALE and float(scale * 4).is_integer()):
            raise StrengthMapError(f"scale {scale} is not a multiple of 0.25 in [0, {MAX_SCALE}]; "
                                   f"use e.g. {DEFAULT_SCALES}")


def check_block(block: int) -> None:
    if block not in BLOCK_SIZES:
        raise StrengthMapError(f"block size {block} is not one of {BLOCK_SIZES} (multiples "
                               "of 8 from 32 to 128 px)")


def grid_shape(height: int, width: int, block: int) -> tuple[int, int]:
    """Blocks per column and per row covering a ``height`` x ``width`` frame."""
    return math.ceil(height / block), math.ceil(width / block)


def model_tag(state_dict) -> int:
    """A 16-bit tag of an enhancer's weights (its denoiser's state dict, as float16, in key
    order): the maps a stream carries were chosen for one model, and only that model makes
    the frames the encoder saw."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in state_dict.items():
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float16).cpu().numpy().tobytes())
    return int.from_bytes(digest.digest()[:2], "little")


@dataclass(frozen=True, eq=False)
class StrengthMap:
    """``indices`` (rows, cols) uint8 into ``scales``, one per ``block`` x ``block`` block.
    ``model_tag``: which enhancer the encoder chose the map for (:func:`model_tag`; None: not
    said, as in streams written before the tag)."""

    block: int
    scales: tuple[float, ...]
    indices: np.ndarray
    model_tag: int | None = None

    def __post_init__(self) -> None:
        check_block(self.block)
        check_scales(self.scales)
        if self.indices.ndim != 2 or self.indices.dtype != np.uint8:
            raise StrengthMapError(f"indices must be a 2-D uint8 array, got "
                                   f"{self.indices.dtype} {self.indices.shape}")
        if self.indices.size and int(self.indices.max()) >= len(self.scales):
            raise StrengthMapError(f"index {int(self.indices.max())} is outside the scale set "
                                   f"{self.scales}")

    @classmethod
    def uniform(cls, height: int, width: int, block: int, scales: tuple[float, ...],
                index: int) -> StrengthMap:
        return cls(block, scales, np.full(grid_shape(height, width, block), index, np.uint8))

    def check_frame_size(self, height: int, width: int) -> None:
        expected = grid_shape(height, width, self.block)
        if tuple(self.indices.shape) != expected:
            raise StrengthMapError(
                f"the strength map has {self.indices.shape[0]}x{self.indices.shape[1]} blocks "
                f"of {self.block} px, a {width}x{height} frame needs {expected[0]}x{expected[1]}:"
                " the map belongs to another stream or frame size")

    def same_as(self, other: StrengthMap | None) -> bool:
        return (other is not None and other.block == self.block and other.scales == self.scales
                and np.array_equal(other.indices, self.indices))

    def scale_grid(self) -> np.ndarray:
        """(rows, cols) float32: the scale of every block."""
        return np.asarray(self.scales, dtype=np.float32)[self.indices]

    def mean_scale(self) -> float:
        return float(self.scale_grid().mean())

    def expand(self, height: int, width: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Tensor:
        """The per-pixel scale ``(1, 1, height, width)``: each block's value on a plateau, with
        linear ramps of about half a block between neighbours (two box filters)."""
        self.check_frame_size(height, width)
        grid = torch.from_numpy(self.scale_grid()).to(device=device, dtype=dtype)
        rows, cols = grid.shape
        # Separable: the box-filtered, nearest-upsampled grid is rows_weights @ grid @
        # cols_weights.T (each weight row has at most two non-zeros): a few ms at 1080p.
        rows_weights = _ramp_weights(height, rows, self.block, device, dtype)  # (H, rows)
        cols_weights = _ramp_weights(width, cols, self.block, device, dtype)  # (W, cols)
        return (rows_weights @ (grid @ cols_weights.T))[None, None]

    def apply(self, decoded: Tensor, residual: Tensor) -> Tensor:
        """The frame the decoder makes: ``decoded + expand(map) * residual``, clamped to [0, 1]
        (the encoder's choice scores exactly this)."""
        height, width = decoded.shape[-2:]
        return (decoded + self.expand(height, width, decoded.device, decoded.dtype)
                * residual).clamp(0, 1)


def _ramp_weights(pixels: int, blocks: int, block: int, device: torch.device | str,
                  dtype: torch.dtype) -> Tensor:
    """(pixels, blocks): per pixel, each block's weight after nearest upsampling by ``block``,
    replicate padding and a centred box of ``block // 2 + 1`` pixels (linear ramps of about
    half a block between neighbours)."""
    ramp = block // 2 + 1
    pad = ramp // 2
    nearest = torch.eye(blocks, device=device, dtype=dtype).repeat_interleave(block, 0)
    padded = F.pad(nearest.T[None], (pad, pad), mode="replicate")[0].T  # (blocks*block+2pad, blocks)
    return F.avg_pool1d(padded.T[None], ramp, stride=1)[0].T[:pixels]
