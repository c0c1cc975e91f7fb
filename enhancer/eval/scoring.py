"""Scores per frame (PSNR, MS-SSIM, SSIM, LPIPS, DISTS) and running means per output stream."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from enhancer.metrics import (
    TemporalConsistency,
    get_dists_model,
    get_lpips_model,
    ms_ssim,
    psnr,
    psnr_yuv,
    ssim,
)
from enhancer.metrics.msssim import MS_SSIM_MIN_SIDE

ALL_METRICS = ("psnr_rgb", "psnr_yuv", "ms_ssim", "ssim", "lpips_alex", "lpips_vgg", "dists",
               "temporal")
PSNR_CAP_DB = 100.0


class FrameScorer:
    """Per-frame metrics for the requested names; unavailable perceptual metrics are dropped."""

    def __init__(self, metrics: tuple[str, ...], device: str | torch.device,
                 log: Callable[[str], None] = print):
        unknown = sorted(set(metrics) - set(ALL_METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_METRICS)}")
        self.models: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
        self.metrics = list(metrics)
        for name, build in (("lpips_alex", lambda: get_lpips_model("alex", device)),
                            ("lpips_vgg", lambda: get_lpips_model("vgg", device)),
                            ("dists", lambda: get_dists_model(device))):
            if name not in metrics:
                continue
            try:
                self.models[name] = build()
            except FileNotFoundError as err:
                log(f"warning: {name} is unavailable ({err}); its column stays empty")
                self.metrics.remove(name)

    @torch.no_grad()
    def __call__(self, output: Tensor, truth: Tensor) -> dict[str, float]:
        """Scores of ``output`` against ``truth``, both ``(1, 3, H, W)`` in [0, 1]."""
        scores = {}
        height, width = truth.shape[-2:]
        for name in self.metrics:
            if name == "psnr_rgb":
                scores[name] = psnr(output, truth, max_db=PSNR_CAP_DB).item()
            elif name == "psnr_yuv":
                scores[name] = psnr_yuv(output, truth, max_db=PSNR_CAP_DB).item()
            elif name == "ms_ssim":
                small = min(height, width) <= MS_SSIM_MIN_SIDE
                scores[name] = math.nan if small else ms_ssim(output, truth).item()
            elif name == "ssim":
                scores[name] = ssim(output, truth).item()
            elif name in self.models:
                scores[name] = self.models[name](output, truth).item()
        return scores


class StreamStats:
    """Running means of one output stream's per-frame scores, temporal consistency, timing."""

    def __init__(self, scorer: FrameScorer):
        self.scorer = scorer
        self.sums: dict[str, float] = {}
        self.frames = 0
        self.seconds = 0.0
        self.temporal = TemporalConsistency() if "temporal" in scorer.metrics else None

    def add(self, output: Tensor, truth: Tensor) -> None:
        for name, value in self.scorer(output, truth).items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if self.temporal is not None:
            self.temporal.update(output, truth)
        self.frames += 1

    def means(self) -> dict[str, float | None]:
        means: dict[str, float | None] = {k: v / self.frames for k, v in self.sums.items()}
        if self.temporal is not None:
            means["temporal"] = self.temporal.compute() if self.frames >= 2 else None
        return means
