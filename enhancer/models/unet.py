"""The temporal, latent-conditioned U-Net that predicts the residual (or the image).

Architecture after CDC (Yang & Mandt, "Lossy image compression with conditional
diffusion models", NeurIPS 2023) as used by Brenig & Timofte for residual
enhancement::

    noisy ─────────┐
    decoded ───────┼─ concat ─ pad ─ pixel_unshuffle(p) ─ stem
    prev_enhanced ─┘                                       │
                                                           ▼
    latent ─ stem ─┬─ 1x1 ─ resize ─▶ [cat] level 0: ResBlocks, (attn) ──skip──┐
                   ├─ 1x1 ─ resize ─▶ [cat] level 1  ...                      │
                   └─ ...             (first ``cond_levels`` levels)           │
                                           ...                                 │
                                      level L-1 ─ mid (ResBlock, attn, ResBlock)
                                           ...                                 │
                               up level 0: [cat skip] ResBlocks, (attn) ◀──────┘
                                           │
                           out conv ─ pixel_shuffle(p) ─ crop ─▶ (B, 3, H, W)

Level ``i`` works at 1 / (p * 2**i) of the (padded) frame, with ``dim * dim_mults[i]``
channels. Every ResBlock is modulated by the diffusion time. The codec latent is
aligned to each level geometrically: latent pixel (y, x) covers frame pixels
``[y * latent_stride, (y + 1) * latent_stride)`` (codecs pad bottom/right), so it is
resized by ``latent_stride / level_stride`` and then cropped or edge-padded to the
level's size. This keeps the alignment right whatever padding the codec used.

The network is a plain ``nn.Module``: no loss, no sampling (see :mod:`enhancer.diffusion`).
It is one module on purpose: the whole network (config, presets, blocks, latent
alignment) reads top to bottom in one file, as the picture above does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.data.padding import crop, pad_to_multiple
from enhancer.models.blocks import (
    Downsample,
    LinearAttention,
    ResBlock,
    TimeEmbedding,
    Upsample,
    group_norm,
)


@dataclass
class FrameFeatures:
    """The U-Net's conditioning work for one frame (:meth:`ResidualUNet.encode_condition`).

    stem:          (B, dims[0], H / p, W / p) the stem's response to the conditioning
                   frames, bias included (padded canvas / pixel-unshuffle factor p).
    latent_levels: the latent's features at each conditioned level (empty without one).
    quality:       (B, 4 * dim) the embedding of the decode's codec quality, added to the
                   time embedding (None: the network is not quality-conditioned).
    """

    stem: Tensor
    latent_levels: list[Tensor]
    quality: Tensor | None = None

    def tile(self, rows: slice, cols: slice, stride: int) -> FrameFeatures:
        """The features of a pixel region (``stride`` = the pixel-unshuffle factor)."""
        def region(x: Tensor, scale: int) -> Tensor:
            return x[..., rows.start // scale:rows.stop // scale, cols.start // scale:cols.stop // scale]

        return FrameFeatures(region(self.stem, stride),
                             [region(x, stride * 2**i) for i, x in enumerate(self.latent_levels)],
                             self.quality)

    @staticmethod
    def cat(parts: list[FrameFeatures]) -> FrameFeatures:
        """The features of several regions stacked along the batch (for batched tiles)."""
        quality = None if parts[0].quality is None else torch.cat([f.quality for f in parts])
        return FrameFeatures(torch.cat([f.stem for f in parts]),
                             [torch.cat(levels) for levels in zip(*[f.latent_levels for f in parts])],
                             quality)


@dataclass(frozen=True)
class UNetConfig:
    """Size of the U-Net. Defaults are CDC's (``PRESETS["cdc"]``).

    dim:             base channel count; level i has ``dim * dim_mults[i]`` channels.
    dim_mults:       one entry per resolution level (``len(dim_mults) - 1`` downsamplings).
    res_blocks:      ResNet blocks per level in the down path (the up path has as many).
    cond_levels:     the codec latent is concatenated at the first ``cond_levels`` levels
                     (CDC: 4 = full, 1/2, 1/4, 1/8 resolution).
    attn_levels:     levels with linear attention (the middle always has one).
    pixel_unshuffle: >1 runs the whole network at 1/p resolution (space-to-depth in,
                     depth-to-space out): far cheaper on CPU.
    latent_dim:      channels of the latent stem, before the per-level projections.
    stem_kernel:     kernel size of the first convolution (CDC uses 7).
    groups:          GroupNorm groups (reduced automatically to divide the channels).
    dropout:         dropout inside the ResBlocks.
    """

    dim: int = 64
    dim_mults: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    res_blocks: int = 2
    cond_levels: int = 4
    attn_levels: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    pixel_unshuffle: int = 1
    latent_dim: int = 64
    stem_kernel: int = 7
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        levels = len(self.dim_mults)
        if levels < 1 or self.dim < 1 or self.res_blocks < 1:
            raise ValueError(
                f"need dim >= 1, res_blocks >= 1 and at least one level, got dim={self.dim}, "
                f"res_blocks={self.res_blocks}, dim_mults={self.dim_mults}"
            )
        if not 0 <= self.cond_levels <= levels:
            raise ValueError(
                f"cond_levels={self.cond_levels} must be in [0, {levels}] "
                f"(the number of levels, len(dim_mults))"
            )
        bad = [level for level in self.attn_levels if not 0 <= level < levels]
        if bad:
            raise ValueError(f"attn_levels {bad} out of range: levels are 0..{levels - 1}")
        if self.pixel_unshuffle < 1:
            raise ValueError(f"pixel_unshuffle must be >= 1, got {self.pixel_unshuffle}")
        if self.stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel must be odd, got {self.stem_kernel}")

    @property
    def size_multiple(self) -> int:
        """Frames are padded internally to a multiple of this (then cropped back)."""
        return 2 ** (len(self.dim_mults) - 1) * self.pixel_unshuffle

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> UNetConfig:
        """Build from a plain dict (YAML, checkpoint); unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown UNetConfig keys {unknown}; valid keys: {sorted(known)}")
        tuples = {"dim_mults", "attn_levels"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for YAML / checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, UNetConfig] = {
    # CPU-sized: runs at half resolution, three levels, ~0.8 M parameters.
    "tiny": UNetConfig(
        dim=24,
        dim_mults=(1, 2, 3),
        res_blocks=1,
        cond_levels=3,
        attn_levels=(2,),
        pixel_unshuffle=2,
        latent_dim=32,
        stem_kernel=3,
        groups=8,
    ),
    # CDC's denoiser (dim 64, six levels, latent at full, 1/2, 1/4 and 1/8), for GPUs.
    "cdc": UNetConfig(),
}


def _res_blocks(in_ch: int, out_ch: int, time_dim: int, config: UNetConfig) -> nn.ModuleList:
    chans = [in_ch] + [out_ch] * config.res_blocks
    return nn.ModuleList(
        ResBlock(a, b, time_dim, config.groups, config.dropout) for a, b in pairwise(chans)
    )


class _DownLevel(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, time_dim: int, config: UNetConfig,
                 attention: bool, downsample: bool):
        super().__init__()
        self.blocks = _res_blocks(in_ch, out_ch, time_dim, config)
        self.attn = LinearAttention(out_ch, config.groups) if attention else nn.Identity()
        self.downsample = Downsample(out_ch, out_ch) if downsample else nn.Identity()


class _UpLevel(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, next_ch: int | None,
                 time_dim: int, config: UNetConfig, attention: bool):
        super().__init__()
        self.blocks = _res_blocks(in_ch + skip_ch, out_ch, time_dim, config)
        self.attn = LinearAttention(out_ch, config.groups) if attention else nn.Identity()
        self.upsample = Upsample(out_ch, next_ch) if next_ch is not None else nn.Identity()


def align_latent(features: Tensor, scale: float, height: int, width: int) -> Tensor:
    """Resize ``(B, C, h, w)`` latent features by ``scale`` and crop / edge-pad to (height, width).

    The latent's top-left corner is the frame's top-left corner (codecs pad
    bottom/right), so resizing by the exact stride ratio and then cropping or
    padding at the bottom/right keeps every latent pixel over the frame area it codes.
    """
    h, w = features.shape[-2:]
    pool = round(1 / scale)
    if scale < 1 and abs(pool * scale - 1) < 1e-6:
        # Coarser level, integer ratio: average exactly the latent pixels each cell covers.
        features = F.avg_pool2d(pad_to_multiple(features, pool), pool)
    elif scale != 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        mode = "bilinear" if scale > 1 else "area"
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        features = F.interpolate(features, size=size, mode=mode, **kwargs)
    features = features[..., :height, :width]
    pad_h, pad_w = height - features.shape[-2], width - features.shape[-1]
    if pad_h or pad_w:
        features = F.pad(features, (0, pad_w, 0, pad_h), mode="replicate")
    return features


class ResidualUNet(nn.Module):
    """Denoiser ``f(noisy, t | decoded, prev_enhanced, latent) -> (B, 3, H, W)``.

    Args:
        config:          network size (see :class:`UNetConfig`, :data:`PRESETS`).
        latent_channels: channels of the codec latent, or None for codecs without
                         one (x264): then ``latent`` must be None.
        latent_stride:   frame size / latent size (16 for SSF / hyperprior / DCVC
                         latents, 64 for hyper-latents). Sizes need not divide exactly.
        temporal:        True: ``prev_enhanced`` is an input (video); False: image mode.
        quality_conditioned: True: ``quality_level`` (B,) in [0, 1], the decode's codec
                         quality (:meth:`enhancer.codecs.CodecAdapter.quality_level`: x264's
                         CRF / 51), is an input, embedded like the time and added to the
                         time embedding, so one network can enhance a sharp CRF-24 decode
                         less than a blurry CRF-40 one. Its last layer starts at zero: a
                         network built from an unconditioned one's weights computes the same.

    What the output means (x0, eps or v, residual or image) is decided by the
    wrapper :class:`enhancer.diffusion.ResidualDiffusion`, not here.
    """

    def __init__(self, config: UNetConfig, latent_channels: int | None,
                 latent_stride: int = 16, temporal: bool = True,
                 quality_conditioned: bool = False):
        super().__init__()
        if latent_channels is not None and latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1 or None, got {latent_channels}")
        if latent_stride < 1:
            raise ValueError(f"latent_stride must be >= 1, got {latent_stride}")
        self.config = config
        self.latent_channels = latent_channels
        self.latent_stride = latent_stride
        self.temporal = temporal
        self.quality_conditioned = quality_conditioned

        p = config.pixel_unshuffle
        dims = [config.dim * m for m in config.dim_mults]
        levels = len(dims)
        time_dim = 4 * config.dim
        in_frames = 3 if temporal else 2  # noisy, decoded (, prev_enhanced)

        self.time_embed = TimeEmbedding(config.dim, time_dim)
        self.quality_embed = None
        if quality_conditioned:
            self.quality_embed = TimeEmbedding(config.dim, time_dim)
            nn.init.zeros_(self.quality_embed.mlp[-1].weight)
            nn.init.zeros_(self.quality_embed.mlp[-1].bias)
        self.stem = nn.Conv2d(3 * in_frames * p * p, dims[0], config.stem_kernel,
                              padding=config.stem_kernel // 2)

        conditioned = latent_channels is not None and config.cond_levels > 0
        if conditioned:
            self.latent_stem = nn.Sequential(
                nn.Conv2d(latent_channels, config.latent_dim, 1),
                nn.SiLU(),
                nn.Conv2d(config.latent_dim, config.latent_dim, 3, padding=1),
                nn.SiLU(),
            )
            self.latent_to_level = nn.ModuleList(
                nn.Conv2d(config.latent_dim, dims[i], 1) for i in range(config.cond_levels)
            )
        else:
            self.latent_stem = None
            self.latent_to_level = nn.ModuleList()

        self.down = nn.ModuleList()
        prev_ch = dims[0]
        for i, ch in enumerate(dims):
            latent_ch = ch if conditioned and i < config.cond_levels else 0
            self.down.append(_DownLevel(prev_ch + latent_ch, ch, time_dim, config,
                                        attention=i in config.attn_levels,
                                        downsample=i < levels - 1))
            prev_ch = ch

        self.mid_block1 = ResBlock(dims[-1], dims[-1], time_dim, config.groups, config.dropout)
        self.mid_attn = LinearAttention(dims[-1], config.groups)
        self.mid_block2 = ResBlock(dims[-1], dims[-1], time_dim, config.groups, config.dropout)

        self.up = nn.ModuleList()
        for i in reversed(range(levels)):
            self.up.append(_UpLevel(dims[i], dims[i], dims[i], dims[i - 1] if i > 0 else None,
                                    time_dim, config, attention=i in config.attn_levels))

        self.out_norm = group_norm(dims[0], config.groups)
        self.out_conv = nn.Conv2d(dims[0], 3 * p * p, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)  # starts by predicting 0 (= "no residual")
        nn.init.zeros_(self.out_conv.bias)

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    def _check_inputs(self, noisy: Tensor, t: Tensor, decoded: Tensor,
                      prev_enhanced: Tensor | None, latent: Tensor | None) -> Tensor:
        if noisy.ndim != 4 or noisy.shape[1] != 3:
            raise ValueError(f"noisy must be (B, 3, H, W), got {tuple(noisy.shape)}")
        if decoded.shape != noisy.shape:
            raise ValueError(
                f"decoded {tuple(decoded.shape)} must match noisy {tuple(noisy.shape)}"
            )
        if self.temporal and prev_enhanced is None:
            raise ValueError(
                "this U-Net is temporal: pass prev_enhanced (B, 3, H, W), the previous enhanced "
                "frame (use the decoded frame for the first frame), or build it with temporal=False"
            )
        if not self.temporal and prev_enhanced is not None:
            raise ValueError("prev_enhanced given, but this U-Net was built with temporal=False")
        if prev_enhanced is not None and prev_enhanced.shape != noisy.shape:
            raise ValueError(
                f"prev_enhanced {tuple(prev_enhanced.shape)} must match noisy {tuple(noisy.shape)}"
            )
        if self.latent_channels is None and latent is not None:
            raise ValueError(
                f"latent {tuple(latent.shape)} given, but this U-Net was built with "
                "latent_channels=None; build it with the codec's latent_channels"
            )
        if self.latent_channels is not None:
            if latent is None:
                raise ValueError(
                    f"this U-Net expects a codec latent with {self.latent_channels} channels; "
                    "pass latent=..., or build it with latent_channels=None"
                )
            if latent.ndim != 4 or latent.shape[1] != self.latent_channels \
                    or latent.shape[0] != noisy.shape[0]:
                raise ValueError(
                    f"latent must be (B={noisy.shape[0]}, {self.latent_channels}, h, w), "
                    f"got {tuple(latent.shape)}"
                )
        t = torch.as_tensor(t, device=noisy.device)
        if t.ndim == 0:
            t = t.expand(noisy.shape[0])
        if t.shape != (noisy.shape[0],):
            raise ValueError(f"t must be a scalar or (B={noisy.shape[0]},), got {tuple(t.shape)}")
        return t

    def encode_condition(self, decoded: Tensor, prev_enhanced: Tensor | None = None,
                         latent: Tensor | None = None,
                         quality_level: Tensor | None = None) -> FrameFeatures:
        """What the network computes from the conditioning alone: once per frame.

        The stem is linear in its input channels, so its response to ``decoded`` and
        ``prev_enhanced`` (plus its bias) is computed here and only the noisy part runs
        at every sampling step; the latent's projections to the conditioned levels are
        computed here too. :meth:`forward` with ``features=`` gives the same output as
        without, up to float rounding (CDC computes its context once per image likewise).
        """
        self._check_inputs(decoded, torch.zeros(()), decoded, prev_enhanced, latent)
        p = self.config.pixel_unshuffle
        frames = [decoded * 2 - 1]  # conditioning frames to [-1, 1]
        if prev_enhanced is not None:
            frames.append(prev_enhanced * 2 - 1)
        x = pad_to_multiple(torch.cat(frames, dim=1), self.size_multiple)
        padded_h, padded_w = x.shape[-2:]
        if p > 1:
            x = F.pixel_unshuffle(x, p)
        noisy_channels = 3 * p * p
        stem = F.conv2d(x, self.stem.weight[:, noisy_channels:], self.stem.bias,
                        padding=self.stem.padding)
        return FrameFeatures(stem, self._latent_levels(latent, padded_h, padded_w),
                             self._quality_features(quality_level, decoded.shape[0]))

    def _quality_features(self, quality_level: Tensor | None, batch: int) -> Tensor | None:
        """(B,) codec quality levels in [0, 1] -> their embedding (B, 4 * dim), or None."""
        if not self.quality_conditioned:
            if quality_level is not None:
                raise ValueError("quality_level given, but this U-Net was built with "
                                 "quality_conditioned=False")
            return None
        if quality_level is None:
            raise ValueError("this U-Net is quality-conditioned: pass quality_level (B,) in "
                             "[0, 1], the decode's CodecAdapter.quality_level")
        quality_level = torch.as_tensor(quality_level, device=self.stem.weight.device)
        if quality_level.ndim == 0:
            quality_level = quality_level.expand(batch)
        if quality_level.shape != (batch,):
            raise ValueError(f"quality_level must be a scalar or (B={batch},), "
                             f"got {tuple(quality_level.shape)}")
        return self.quality_embed(quality_level)

    def forward(self, noisy: Tensor, t: Tensor, decoded: Tensor,
                prev_enhanced: Tensor | None = None, latent: Tensor | None = None,
                quality_level: Tensor | None = None,
                features: FrameFeatures | None = None) -> Tensor:
        """Predict the denoising target.

        Args:
            noisy:         (B, 3, H, W) the noisy signal x_t (residual or image, diffusion units).
            t:             (B,) or scalar, continuous diffusion time in [0, 1]
                           (0 = clean, 1 = pure noise; see :mod:`enhancer.diffusion.schedule`).
            decoded:       (B, 3, H, W) codec output in [0, 1].
            prev_enhanced: (B, 3, H, W) previous enhanced frame in [0, 1]; required iff temporal.
            latent:        (B, C, h, w) codec latent, h ~ H / latent_stride (need not divide);
                           required iff latent_channels is not None.
            quality_level: (B,) or scalar, the decode's codec quality in [0, 1]; required
                           iff quality_conditioned.
            features:      :meth:`encode_condition` of the same conditioning (optional): a
                           sampler passes it to skip the conditioning work at every step.

        Returns:
            (B, 3, H, W) the network output (x0, eps or v; see ResidualDiffusion).
        """
        t = self._check_inputs(noisy, t, decoded, prev_enhanced, latent)
        if features is None:
            features = self.encode_condition(decoded, prev_enhanced, latent, quality_level)
        elif self.quality_conditioned and features.quality is None:
            raise ValueError("this U-Net is quality-conditioned: its features need quality_level")
        height, width = noisy.shape[-2:]
        p = self.config.pixel_unshuffle

        x = pad_to_multiple(noisy, self.size_multiple)
        if p > 1:
            x = F.pixel_unshuffle(x, p)  # (B, 3 * p^2, H / p, W / p)
        time_emb = self.time_embed(t)  # (B, 4 * dim)
        if features.quality is not None:
            time_emb = time_emb + features.quality
        latent_levels = features.latent_levels

        h = F.conv2d(x, self.stem.weight[:, : 3 * p * p], None, padding=self.stem.padding)
        h = h + features.stem
        skips = []
        for i, level in enumerate(self.down):
            if i < len(latent_levels):
                h = torch.cat([h, latent_levels[i]], dim=1)
            for block in level.blocks:
                h = block(h, time_emb)
            h = level.attn(h)
            skips.append(h)
            h = level.downsample(h)

        h = self.mid_block2(self.mid_attn(self.mid_block1(h, time_emb)), time_emb)

        for level in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level.blocks:
                h = block(h, time_emb)
            h = level.upsample(level.attn(h))

        out = self.out_conv(F.silu(self.out_norm(h)))
        if p > 1:
            out = F.pixel_shuffle(out, p)  # (B, 3, padded_h, padded_w)
        return crop(out, height, width)

    def _latent_levels(self, latent: Tensor | None, padded_h: int, padded_w: int) -> list[Tensor]:
        """Latent features for each conditioned level, aligned to that level's grid."""
        if latent is None or self.latent_stem is None:
            return []
        features = self.latent_stem(latent)
        levels = []
        for i, project in enumerate(self.latent_to_level):
            level_stride = self.config.pixel_unshuffle * 2**i
            levels.append(align_latent(project(features), self.latent_stride / level_stride,
                                       padded_h // level_stride, padded_w // level_stride))
        return levels


def build_unet(preset_or_config: str | UNetConfig, latent_channels: int | None,
               latent_stride: int = 16, temporal: bool = True,
               quality_conditioned: bool = False) -> ResidualUNet:
    """Build a :class:`ResidualUNet` from a preset name (``"tiny"``, ``"cdc"``) or a config."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(
                f"unknown U-Net preset {preset_or_config!r}; choose one of {sorted(PRESETS)} "
                "or pass a UNetConfig"
            )
        config = PRESETS[preset_or_config]
    else:
        config = preset_or_config
    return ResidualUNet(config, latent_channels, latent_stride, temporal, quality_conditioned)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
