"""``ssf-small``: a ScaleSpaceFlow narrow enough to train on a CPU and ship in the package.

Same structure, scale-space warping and coding order as CompressAI's ``ScaleSpaceFlow``
(its adapter is :class:`enhancer.codecs.compressai_codecs.SSF`), with narrow transforms
and hyperpriors whose hyper-latent sits at 1/64 of the padded frame (not 1/128)::

    img / res / motion:  x ──_four_strided(conv)──▶ y ──SmallHyperprior──▶ y_hat
                         y_hat ──_four_strided(deconv)──▶ x_hat
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import QReLU
from compressai.models.base import CompressionModel
from compressai.models.utils import conv, deconv
from compressai.models.video.google import ScaleSpaceFlow
from compressai.ops import quantize_ste
from torch import Tensor, nn

from enhancer.codecs.base import CodecAdapter, CodecError
from enhancer.codecs.compressai_codecs import SSF
from enhancer.codecs.registry import register_codec


def _four_strided(layer: Callable[..., nn.Module], in_planes: int, mid_planes: int,
                  out_planes: int) -> nn.Sequential:
    """SSF's encoder (``layer=conv``, to 1/16) or decoder (``deconv``, from 1/16):
    four 5x5 stride-2 layers with ReLUs between them."""
    planes = [in_planes, mid_planes, mid_planes, mid_planes, out_planes]
    layers: list[nn.Module] = []
    for index, (c_in, c_out) in enumerate(itertools.pairwise(planes)):
        if index:
            layers.append(nn.ReLU(inplace=True))
        layers.append(layer(c_in, c_out, kernel_size=5, stride=2))
    return nn.Sequential(*layers)


class _QReLUSynthesis(nn.Module):
    """Hyper-synthesis of the scales, ending in SSF's QReLU (scales stay in [0, 255])."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.deconv1 = deconv(in_planes, in_planes, kernel_size=5, stride=2)
        self.deconv2 = deconv(in_planes, in_planes, kernel_size=5, stride=2)
        self.conv3 = conv(in_planes, out_planes, kernel_size=3, stride=1)

    def forward(self, z_hat: Tensor) -> Tensor:
        x = QReLU.apply(self.deconv1(z_hat), 8, 100)
        x = QReLU.apply(self.deconv2(x), 8, 100)
        return QReLU.apply(self.conv3(x), 8, 100)


class SmallHyperprior(CompressionModel):
    """SSF's mean-scale hyperprior, with a narrow hyper-latent at 1/64 (two stride-2 layers).

    Same interface as the hyperprior inside CompressAI's ``ScaleSpaceFlow``:
    ``forward(y) -> (y_hat, {"y", "z"})``, ``compress(y) -> (y_hat, {"strings", "shape"})``,
    ``decompress(strings, shape) -> y_hat``.
    """

    def __init__(self, planes: int, hyper_planes: int):
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(hyper_planes)
        self.hyper_encoder = nn.Sequential(
            conv(planes, hyper_planes, kernel_size=3, stride=1), nn.ReLU(inplace=True),
            conv(hyper_planes, hyper_planes, kernel_size=5, stride=2), nn.ReLU(inplace=True),
            conv(hyper_planes, hyper_planes, kernel_size=5, stride=2),
        )
        self.hyper_decoder_mean = nn.Sequential(
            deconv(hyper_planes, hyper_planes, kernel_size=5, stride=2), nn.ReLU(inplace=True),
            deconv(hyper_planes, hyper_planes, kernel_size=5, stride=2), nn.ReLU(inplace=True),
            conv(hyper_planes, planes, kernel_size=3, stride=1),
        )
        self.hyper_decoder_scale = _QReLUSynthesis(hyper_planes, planes)
        self.gaussian_conditional = GaussianConditional(None)

    def _params(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        return self.hyper_decoder_scale(z_hat), self.hyper_decoder_mean(z_hat)

    def forward(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z_hat, z_likelihoods = self.entropy_bottleneck(self.hyper_encoder(y))
        scales, means = self._params(z_hat)
        _, y_likelihoods = self.gaussian_conditional(y, scales, means)
        y_hat = quantize_ste(y - means) + means
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def compress(self, y: Tensor) -> tuple[Tensor, dict[str, Any]]:
        z = self.hyper_encoder(y)
        if not bool(torch.isfinite(z).all()):  # NaN or inf would hang the rANS coder
            raise CodecError("the hyper-latent holds non-finite values (NaN or inf): the codec "
                             "weights overflow float32 (a diverged run); use an earlier checkpoint")
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales, means = self._params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means)
        y_hat = self.gaussian_conditional.quantize(y, "dequantize", means)
        return y_hat, {"strings": [y_strings, z_strings], "shape": z.shape[-2:]}

    def decompress(self, strings: list, shape: torch.Size) -> Tensor:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales, means = self._params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        return self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype, means)


class SmallScaleSpaceFlow(ScaleSpaceFlow):
    """CompressAI's ``ScaleSpaceFlow`` with narrow layers (0.57 M parameters, 1/60 of the original).

    Same structure, scale-space warping (inherited) and coding order: image, motion
    and residual auto-encoders, each with a mean-scale hyperprior. Differences: the
    transforms have ``mid_planes`` channels and the latents ``latent_planes``; the
    hyperpriors are :class:`SmallHyperprior` (hyper-latent at 1/64, not 1/128), so
    frames pad to a multiple of 64.
    """

    def __init__(self, latent_planes: int = 48, mid_planes: int = 24, hyper_planes: int = 16,
                 num_levels: int = 5, sigma0: float = 1.5, scale_field_shift: float = 1.0):
        CompressionModel.__init__(self)  # ScaleSpaceFlow.__init__ would build the full model
        self.img_encoder = _four_strided(conv, 3, mid_planes, latent_planes)
        self.img_decoder = _four_strided(deconv, latent_planes, mid_planes, 3)
        self.img_hyperprior = SmallHyperprior(latent_planes, hyper_planes)
        self.res_encoder = _four_strided(conv, 3, mid_planes, latent_planes)
        self.res_decoder = _four_strided(deconv, 2 * latent_planes, mid_planes, 3)
        self.res_hyperprior = SmallHyperprior(latent_planes, hyper_planes)
        self.motion_encoder = _four_strided(conv, 2 * 3, mid_planes, latent_planes)
        self.motion_decoder = _four_strided(deconv, latent_planes, mid_planes, 2 + 1)
        self.motion_hyperprior = SmallHyperprior(latent_planes, hyper_planes)
        self.sigma0 = sigma0
        self.num_levels = num_levels
        self.scale_field_shift = scale_field_shift


@register_codec("ssf-small")
class SSFSmall(SSF):
    """A small ScaleSpaceFlow (:class:`SmallScaleSpaceFlow`, 0.57 M parameters) for CPUs and tests.

    Not a published model: an SSF-style codec narrow enough to train on a CPU and to
    ship inside the package. Its bundled weights (qualities 1-3, MSE, trained here) live
    in the bundled enhancers ``ssf_small_q1`` .. ``ssf_small_q3``.
    """

    qualities = (1, 2, 3)
    zoo_name = None  # not a published model: its weights are in the bundled enhancers
    pad_multiple = 64
    latent_channels = 96
    hyper_stride = 64

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        CodecAdapter.__init__(self, quality)
        self.model = SmallScaleSpaceFlow()
        self._init_weights(checkpoint)


__all__ = ["SSFSmall", "SmallHyperprior", "SmallScaleSpaceFlow"]
