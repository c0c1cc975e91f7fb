"""Scores per frame (every frame metric of :mod:`enhancer.eval.registry`: PSNR, MS-SSIM,
SSIM, LPIPS, DISTS, ...) and running means per output stream; the Inception patch features
of each stream for the set-level FID/KID (:mod:`enhancer.eval.setlevel`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from enhancer.eval.registry import METRICS, frame_metrics, metric, names, scored_metrics
from enhancer.metrics import TemporalConsistency
from enhancer.metrics.fid import WEIGHTS_MISSING, InceptionFeatures, InceptionWeightsNotFoundError


class FrameScorer:
    """Per-frame metrics for the requested names; unavailable perceptual metrics are dropped.

    ``fid``/``kid`` load the Inception network (``inception_weights``, else torch hub's
    cache): :meth:`patch_features` then gives each frame's patch features. Without the
    weights one line (logged here, once) says how to get them, both are dropped and
    ``unavailable`` says why for the summary; weights of the wrong layout raise.
    """

    def __init__(self, metrics: tuple[str, ...], device: str | torch.device,
                 log: Callable[[str], None] = print,
                 inception_weights: str | os.PathLike | None = None):
        known = scored_metrics()
        unknown = sorted(set(metrics) - set(known))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(known)} "
                             "(enhancer.eval.registry declares them)")
        self.models: dict[str, Any] = {}  # a metric's model: features() and distance()
        self.metrics = [m for m in metrics if m in frame_metrics()]
        self.set_metrics = [m for m in metrics if m in names("set")]
        self.inception: InceptionFeatures | None = None
        self.unavailable: str | None = None
        self._reference_key: tuple[Tensor, int] | None = None  # the last ground truth scored
        self._references: dict[str, list[Tensor]] = {}  # its features per perceptual metric
        if self.set_metrics:
            try:
                self.inception = InceptionFeatures(inception_weights, device)
            except InceptionWeightsNotFoundError as err:
                log(f"warning: {'/'.join(self.set_metrics)} unavailable, left empty: {err}")
                self.unavailable = (f"{WEIGHTS_MISSING} when this ran: not computed (its "
                                    "warning said where to put them)")
                self.set_metrics = []
            else:
                if not self.inception.published:
                    log(f"warning: {self.inception.path} is not the published Inception file "
                        f"(sha256 {self.inception.sha256[:12]}...): fid/kid are plumbing only")
        for name in [m for m in self.metrics if metric(m).model is not None]:
            try:
                self.models[name] = metric(name).model(device)
            except FileNotFoundError as err:
                log(f"warning: {name} is unavailable ({err}); its column stays empty")
                self.metrics.remove(name)

    @torch.inference_mode()
    def __call__(self, output: Tensor, truth: Tensor) -> dict[str, float]:
        """Scores of ``output`` against ``truth``, both ``(1, 3, H, W)`` in [0, 1].

        LPIPS and DISTS keep the :meth:`reference` (features, statistics) of the last
        ``truth`` seen: scoring several outputs (the decode, every variant) against the same
        ground-truth tensor runs the network on it once.
        """
        scores = {}
        height, width = truth.shape[-2:]
        for name in self.metrics:
            if name in self.too_small(height, width):
                scores[name] = math.nan  # null in the row
            elif METRICS[name].function is not None:
                scores[name] = METRICS[name].function(output, truth).item()
            elif name in self.models:
                model = self.models[name]
                reference = self._reference_features(name, truth)
                scores[name] = model.distance(model.features(output), reference).item()
        return scores

    def _reference_features(self, name: str, truth: Tensor) -> list:
        """``truth``'s reference for metric ``name``, computed once per ground-truth tensor."""
        key = (truth, truth._version)
        if self._reference_key is None or self._reference_key[0] is not truth or \
                self._reference_key[1] != truth._version:
            self._reference_key, self._references = key, {}
        if name not in self._references:
            self._references[name] = self.models[name].reference(truth)
        return self._references[name]

    def too_small(self, height: int, width: int) -> dict[str, str]:
        """The requested metrics frames of ``height x width`` are too small for, each with
        the reason the row gives."""
        sides = {name: METRICS[name].min_side for name in self.metrics}
        return {name: f"{name} null: {width}x{height} frames are below the {side} px a side "
                      "it needs"
                for name, side in sides.items() if side is not None and min(height, width) < side}

    def patch_features(self, frame: Tensor) -> np.ndarray | None:
        """Inception features ``(P, 2048)`` of ``frame``'s 256x256 patches; None without fid/kid."""
        return self.inception.patch_features(frame) if self.set_metrics else None


class StreamStats:
    """Running means of one output stream's per-frame scores, temporal consistency, timing."""

    def __init__(self, scorer: FrameScorer):
        self.scorer = scorer
        self.sums: dict[str, float] = {}
        self.frames = 0
        self.seconds = 0.0
        self.temporal = TemporalConsistency() if "temporal" in scorer.metrics else None
        self.features: list[np.ndarray] = []  # patch features per frame, with fid/kid
        self.notes: dict[str, str] = {}  # metric -> why it is null
        self.strength_bytes = 0  # signalled strength maps sent with this stream

    def add(self, output: Tensor, truth: Tensor) -> None:
        self.notes.update(self.scorer.too_small(*truth.shape[-2:]))
        for name, value in self.scorer(output, truth).items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if self.temporal is not None:
            self.temporal.update(output, truth)
        features = self.scorer.patch_features(output)
        if features is not None:
            self.features.append(features)
        self.frames += 1

    def means(self) -> dict[str, float | None]:
        means: dict[str, float | None] = {k: v / self.frames for k, v in self.sums.items()}
        if self.temporal is not None:
            means["temporal"] = self.temporal.compute() if self.frames >= 2 else None
        if self.notes:
            means["notes"] = "; ".join(self.notes[name] for name in sorted(self.notes))
        return means
