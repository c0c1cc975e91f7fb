"""Every number an evaluation reports, declared once: name, how it is computed (frame
metrics), which way is better, how it is shown (header, tooltip, digits), its plot, its
cost class and whether BD-rates are taken on it.

Read by scoring (:mod:`enhancer.eval.scoring`: which metrics exist, the ``fast``/``full``
sets, the function per frame), results (BD-rate metrics and their direction), the HTML
report (headers, tooltips, digits) and the plots (file and axis label). Adding a metric is
adding one :class:`MetricInfo` here (and, for a learned one, its model in the scorer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from enhancer.metrics import ms_ssim, psnr, psnr_yuv, ssim

PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class MetricInfo:
    """One reported number.

    ``cost``: ``fast`` (cheap frame metrics), ``full`` (a VGG16 pass per frame, ~20x
    LPIPS-Alex on a CPU), ``set`` (over all sequences' patches: FID, KID) or None (not a
    quality score: rate, seconds). ``function``: ``(output, truth) -> (B,)`` for frame
    metrics the scorer computes directly (None: a model or a running statistic).
    """

    name: str
    header: str
    description: str  # the tooltip: unit and which way is better
    digits: int
    lower_is_better: bool | None = None  # None: not a quality (rate, time)
    cost: str | None = None
    plot: tuple[str, str] | None = None  # (file name, axis label) of its rate-quality plot
    bd_rate: bool = False  # BD-rate of enhanced vs decoded is reported on it
    function: Callable[[Tensor, Tensor], Tensor] | None = None


def _psnr_rgb(output: Tensor, truth: Tensor) -> Tensor:
    return psnr(output, truth, max_db=PSNR_CAP_DB)


def _psnr_yuv(output: Tensor, truth: Tensor) -> Tensor:
    return psnr_yuv(output, truth, max_db=PSNR_CAP_DB)


METRICS = (
    MetricInfo("bpp", "bpp", "bits per pixel", 4),
    MetricInfo("bitrate_kbps", "kbps", "bitrate, kbit/s at the sequence's frame rate", 1),
    MetricInfo("psnr_rgb", "PSNR RGB", "dB, higher is better", 2, False, "fast",
               ("rd_psnr_rgb.png", "PSNR RGB (dB), higher is better"), True, _psnr_rgb),
    MetricInfo("psnr_yuv", "PSNR YUV", "dB, (6Y+U+V)/8, higher is better", 2, False, "fast",
               ("rd_psnr_yuv.png", "PSNR YUV 6:1:1 (dB), higher is better"), True, _psnr_yuv),
    MetricInfo("ms_ssim", "MS-SSIM", "higher is better", 4, False, "fast",
               ("rd_ms_ssim.png", "MS-SSIM RGB, higher is better"), False, ms_ssim),
    MetricInfo("ssim", "SSIM", "higher is better", 4, False, "fast", function=ssim),
    MetricInfo("lpips_alex", "LPIPS Alex", "lower is better", 4, True, "fast",
               ("rp_lpips_alex.png", "LPIPS (AlexNet), lower is better"), True),
    MetricInfo("lpips_vgg", "LPIPS VGG", "lower is better", 4, True, "full",
               ("rp_lpips_vgg.png", "LPIPS (VGG), lower is better"), True),
    MetricInfo("dists", "DISTS", "lower is better", 4, True, "full",
               ("rp_dists.png", "DISTS, lower is better"), True),
    MetricInfo("temporal", "temporal", "mean |frame difference error|, lower is better", 4,
               True, "fast"),
    MetricInfo("fid", "FID/256", "over all sequences' 256x256 patches, lower is better", 2,
               True, "set"),
    MetricInfo("kid", "KID/256", "over all sequences' 256x256 patches, lower is better", 4,
               True, "set"),
    MetricInfo("encode_s_per_frame", "encode s/f",
               "seconds per frame (with the encoder's reconstruction)", 3),
    MetricInfo("decode_s_per_frame", "decode s/f", "seconds per frame", 3),
    MetricInfo("enhance_s_per_frame", "enhance s/f", "seconds per frame", 3),
)
REGISTRY = {info.name: info for info in METRICS}


def names(cost: str | tuple[str, ...]) -> tuple[str, ...]:
    """The metrics of cost class ``cost`` (or any of several), in declaration order."""
    costs = (cost,) if isinstance(cost, str) else cost
    return tuple(info.name for info in METRICS if info.cost in costs)
