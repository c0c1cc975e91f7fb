"""Building blocks of the U-Net: time embedding, ResNet block, linear attention, resampling.

CDC-style (Yang & Mandt, NeurIPS 2023; Ho et al. 2020): every ResNet block is
modulated by an embedding of the diffusion time, low resolutions add a cheap
linear attention (Shen et al. 2021, O(N) in the number of pixels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the continuous time ``t`` in [0, 1], then an MLP.

    ``t`` is scaled by 1000 before the sinusoids so that the frequencies match
    the usual discrete-step embedding (Ho et al. 2020).
    """

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        """(B,) time in [0, 1] -> (B, out_dim)."""
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
        angles = 1000.0 * t.float()[:, None] * freqs[None, :]  # (B, half)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a time-dependent scale and shift between them."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, time_emb: Tensor) -> Tensor:
        """x (B, in_ch, H, W), time_emb (B, time_dim) -> (B, out_ch, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(time_emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class LinearAttention(nn.Module):
    """Pre-norm residual linear attention (softmax over keys per channel), O(H*W)."""

    def __init__(self, channels: int, groups: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            heads = 1
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q = q.softmax(dim=-2) * (c // self.heads) ** -0.5  # over channels
        k = k.softmax(dim=-1)  # over pixels
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # (B, heads, d, d)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, c, h, w)
        return x + self.to_out(out)


class Downsample(nn.Module):
    """Halve the resolution with a strided 3x3 convolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest neighbour then a 3x3 convolution (no checkerboard)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
