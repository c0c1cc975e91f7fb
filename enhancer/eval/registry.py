"""Every number an evaluation reports, declared once: name, how it is computed, which way is
better, how it is shown (header, tooltip, digits), its plot, its cost class, whether
BD-rates are taken on it and whether the run's printed table shows it.

Read at call time by scoring (:mod:`enhancer.eval.scoring`: which metrics exist, the
``fast``/``full`` sets, the function or model per frame, the smallest frame it takes),
results (the row columns, averages, BD-rates, CompressAI keys), the printed table
(:mod:`enhancer.eval.report`), the HTML report (headers, tooltips, digits) and the plots
(file and axis label). Adding a metric is one :class:`MetricInfo` in :data:`METRICS` (or
:func:`register` at run time); docs/evaluation.md#adding-a-metric shows how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from enhancer.metrics import (
    get_dists_model,
    get_lpips_model,
    haarpsi,
    ms_ssim,
    psnr,
    psnr_yuv,
    ssim,
)
from enhancer.metrics.lpips import LPIPS_MIN_SIDE
from enhancer.metrics.msssim import MS_SSIM_MIN_SIDE, SSIM_MIN_SIDE

PSNR_CAP_DB = 100.0
COSTS = ("fast", "full", "set", None)


@dataclass(frozen=True)
class MetricInfo:
    """One reported number.

    ``cost``: ``fast`` (cheap frame metrics), ``full`` (a VGG16 pass per frame, ~20x
    LPIPS-Alex on a CPU), ``set`` (over all sequences' patches: FID, KID; not a row
    column) or None (not a quality score: rate, seconds; filled in by the runner).
    A frame metric has either ``function`` ``(output, truth) -> (B,)`` or ``model``
    ``device -> object`` with ``features(x)`` and ``distance(features, features) -> (B,)``
    (the truth's features are computed once for all outputs); neither: a running
    statistic the scorer keeps itself (``temporal``).
    """

    name: str
    header: str
    description: str  # the tooltip: unit and which way is better
    digits: int
    lower_is_better: bool | None = None  # None: not a quality (rate, time)
    cost: str | None = None
    plot: tuple[str, str] | None = None  # (file name, axis label) of its rate-quality plot
    bd_rate: bool = False  # BD-rate of enhanced vs decoded is reported on it
    printed: bool = False  # a column of the table an evaluation prints at its end
    function: Callable[[Tensor, Tensor], Tensor] | None = None
    model: Callable[[Any], Any] | None = None
    min_side: int | None = None  # smaller frames get null, and the row's notes say why
    compressai_key: str | None = None  # its key in CompressAI-layout result files

    def __post_init__(self):
        if self.cost not in COSTS:
            raise ValueError(f"metric {self.name!r}: cost {self.cost!r} is not one of {COSTS}")
        if self.function is not None and self.model is not None:
            raise ValueError(f"metric {self.name!r}: give a function or a model, not both")
        if self.bd_rate and self.lower_is_better is None:
            raise ValueError(f"metric {self.name!r}: a BD-rate needs lower_is_better True/False")


def _psnr_rgb(output: Tensor, truth: Tensor) -> Tensor:
    return psnr(output, truth, max_db=PSNR_CAP_DB)


def _psnr_yuv(output: Tensor, truth: Tensor) -> Tensor:
    return psnr_yuv(output, truth, max_db=PSNR_CAP_DB)


METRICS: dict[str, MetricInfo] = {info.name: info for info in (
    MetricInfo("bpp", "bpp", "bits per pixel", 4, printed=True, compressai_key="bpp"),
    MetricInfo("bitrate_kbps", "kbps", "bitrate, kbit/s at the sequence's frame rate", 1,
               compressai_key="bitrate"),
    MetricInfo("psnr_rgb", "PSNR RGB", "dB, higher is better", 2, lower_is_better=False,
               cost="fast", plot=("rd_psnr_rgb.png", "PSNR RGB (dB), higher is better"),
               bd_rate=True, printed=True, function=_psnr_rgb, compressai_key="psnr-rgb"),
    # (6Y+U+V)/8; CompressAI's "psnr-yuv" is (4Y+U+V)/6, so ours has a key of its own
    MetricInfo("psnr_yuv", "PSNR YUV", "dB, (6Y+U+V)/8, higher is better", 2,
               lower_is_better=False, cost="fast",
               plot=("rd_psnr_yuv.png", "PSNR YUV 6:1:1 (dB), higher is better"), bd_rate=True,
               function=_psnr_yuv, compressai_key="psnr-yuv-611"),
    MetricInfo("ms_ssim", "MS-SSIM", "higher is better", 4, lower_is_better=False, cost="fast",
               plot=("rd_ms_ssim.png", "MS-SSIM RGB, higher is better"), function=ms_ssim,
               min_side=MS_SSIM_MIN_SIDE + 1, compressai_key="ms-ssim-rgb"),
    MetricInfo("ssim", "SSIM", "higher is better", 4, lower_is_better=False, cost="fast",
               function=ssim, min_side=SSIM_MIN_SIDE, compressai_key="ssim-rgb"),
    MetricInfo("lpips_alex", "LPIPS Alex", "lower is better", 4, lower_is_better=True,
               cost="fast", plot=("rp_lpips_alex.png", "LPIPS (AlexNet), lower is better"),
               bd_rate=True, printed=True, model=lambda device: get_lpips_model("alex", device),
               min_side=LPIPS_MIN_SIDE["alex"], compressai_key="lpips"),
    MetricInfo("lpips_vgg", "LPIPS VGG", "lower is better", 4, lower_is_better=True,
               cost="full", plot=("rp_lpips_vgg.png", "LPIPS (VGG), lower is better"),
               bd_rate=True, model=lambda device: get_lpips_model("vgg", device),
               min_side=LPIPS_MIN_SIDE["vgg"], compressai_key="lpips-vgg"),
    MetricInfo("dists", "DISTS", "lower is better", 4, lower_is_better=True, cost="full",
               plot=("rp_dists.png", "DISTS, lower is better"), bd_rate=True, printed=True,
               model=get_dists_model, compressai_key="dists"),
    # Used by neither training nor the encoder's choice: the independent check.
    MetricInfo("haarpsi", "HaarPSI", "piq's HaarPSI in [0, 1], higher is better", 4,
               lower_is_better=False, cost="full",
               plot=("rp_haarpsi.png", "HaarPSI, higher is better"), bd_rate=True,
               function=haarpsi),
    MetricInfo("temporal", "temporal", "mean |frame difference error|, lower is better", 4,
               lower_is_better=True, cost="fast", printed=True, compressai_key="temporal"),
    MetricInfo("fid", "FID/256", "over all sequences' 256x256 patches, lower is better", 2,
               lower_is_better=True, cost="set", printed=True, compressai_key="fid"),
    MetricInfo("kid", "KID/256", "over all sequences' 256x256 patches, lower is better", 4,
               lower_is_better=True, cost="set", printed=True, compressai_key="kid"),
    MetricInfo("encode_s_per_frame", "encode s/f",
               "seconds per frame (with the encoder's reconstruction)", 3,
               compressai_key="encoding_time"),
    MetricInfo("decode_s_per_frame", "decode s/f", "seconds per frame", 3,
               compressai_key="decoding_time"),
    MetricInfo("enhance_s_per_frame", "enhance s/f", "seconds per frame", 3),
)}


def register(info: MetricInfo, before: str | None = None) -> MetricInfo:
    """Add ``info`` (at the end, or just before metric ``before``: the order of columns);
    every reader sees it from then on."""
    if info.name in METRICS:
        raise ValueError(f"metric {info.name!r} is already registered; pick another name")
    entries = list(METRICS.items())
    at = len(entries) if before is None else [name for name, _ in entries].index(metric(before).name)
    entries.insert(at, (info.name, info))
    METRICS.clear()
    METRICS.update(entries)
    return info


def unregister(name: str) -> None:
    """Remove metric ``name`` (what :func:`register` added)."""
    del METRICS[metric(name).name]


def metric(name: str) -> MetricInfo:
    """The declaration of ``name``; an unknown name is a ``KeyError`` listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(METRICS)}") from None


def names(cost: str | tuple[str | None, ...] | None) -> tuple[str, ...]:
    """The metrics of cost class ``cost`` (or any of several), in declaration order."""
    costs = cost if isinstance(cost, tuple) else (cost,)
    return tuple(info.name for info in METRICS.values() if info.cost in costs)


def frame_metrics() -> tuple[str, ...]:
    """Every metric scored per frame (``fast`` and ``full``)."""
    return names(("fast", "full"))


def scored_metrics() -> tuple[str, ...]:
    """Every name ``--metrics`` takes besides the presets: frame and set metrics."""
    return frame_metrics() + names("set")


def metric_presets() -> dict[str, tuple[str, ...]]:
    """The named sets ``--metrics`` takes: ``fast`` leaves out the VGG16 ones, ``full`` is
    every frame metric (FID/KID are opt-in: Inception on every patch is slow on a CPU)."""
    return {"fast": names("fast"), "full": frame_metrics()}


def metric_choices() -> tuple[str, ...]:
    """What ``--metrics`` accepts: the presets, then every metric."""
    return (*metric_presets(), *scored_metrics())


def expand_metrics(requested: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Metric names with the presets (``fast``, ``full``) expanded, in order, once each."""
    presets = metric_presets()
    expanded: list[str] = []
    for name in requested:
        for one in presets.get(name, (name,)):
            if one not in expanded:
                expanded.append(one)
    return tuple(expanded)


def row_metrics() -> tuple[str, ...]:
    """The metric columns of a result row (all but the set-level ones), in order."""
    return tuple(name for name, info in METRICS.items() if info.cost != "set")


def bd_metrics() -> dict[str, bool]:
    """The metrics BD-rates are taken on -> whether lower is better."""
    return {name: info.lower_is_better for name, info in METRICS.items() if info.bd_rate}


def printed_metrics() -> tuple[str, ...]:
    """The columns of the table an evaluation prints (set-level ones when the run has them)."""
    return tuple(name for name, info in METRICS.items() if info.printed)


def plots() -> dict[str, tuple[str, str]]:
    """Metric -> (file name, axis label) of its rate-quality plot."""
    return {name: info.plot for name, info in METRICS.items() if info.plot}
