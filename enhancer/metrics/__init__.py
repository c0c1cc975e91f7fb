"""Image and video quality metrics: PSNR (RGB, Y, YUV 4:2:0), MS-SSIM, LPIPS, DISTS,
HaarPSI (piq), temporal consistency; set-level FID/KID on 256x256 patches
(:mod:`enhancer.metrics.fid`).

Every image metric takes float tensors ``(B, 3, H, W)`` in [0, 1] and returns ``(B,)``;
FID and KID score two sets of images (:class:`PatchFIDKID`).

Note: ``enhancer.metrics.lpips`` and ``enhancer.metrics.dists`` are the functions; import
helpers from the modules with ``from enhancer.metrics.lpips import LPIPSLoss``.
"""

from enhancer.metrics.dists import DISTS, get_dists_model
from enhancer.metrics.dists import dists as dists
from enhancer.metrics.haarpsi import haarpsi
from enhancer.metrics.fid import InceptionFeatures, PatchFIDKID, frechet_distance, kid, patches
from enhancer.metrics.lpips import LPIPSLoss, LPIPSWeightsNotFoundError, get_lpips_model
from enhancer.metrics.lpips import lpips as lpips
from enhancer.metrics.msssim import ms_ssim, ssim
from enhancer.metrics.psnr import mse_to_psnr, psnr, psnr_y, psnr_yuv, psnr_yuv_components
from enhancer.metrics.temporal import TemporalConsistency, temporal_consistency

__all__ = [
    "DISTS",
    "InceptionFeatures",
    "LPIPSLoss",
    "LPIPSWeightsNotFoundError",
    "PatchFIDKID",
    "TemporalConsistency",
    "dists",
    "frechet_distance",
    "get_dists_model",
    "get_lpips_model",
    "kid",
    "lpips",
    "ms_ssim",
    "mse_to_psnr",
    "patches",
    "psnr",
    "psnr_y",
    "psnr_yuv",
    "psnr_yuv_components",
    "ssim",
    "temporal_consistency",
]
