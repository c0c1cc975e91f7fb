"""HaarPSI (Reisenhofer et al. 2018), piq's implementation: a full-reference similarity
from Haar wavelet responses, in [0, 1], higher is better. Nothing here trains on it or
chooses by it (training uses LPIPS and MSE, the encoder's maps LPIPS, MSE and DISTS), so
it is the evaluation's independent check that a gain is not one metric being gamed."""

from __future__ import annotations

from torch import Tensor

from enhancer.metrics.psnr import check_image_pair


def haarpsi(output: Tensor, truth: Tensor) -> Tensor:
    """``output``, ``truth`` (B, 3, H, W) in [0, 1] -> (B,) HaarPSI (1: identical)."""
    import piq

    check_image_pair(output, truth)
    return piq.haarpsi(output.float().clamp(0, 1), truth.float().clamp(0, 1), data_range=1.0,
                       reduction="none")
