"""Diffusion: noise schedule, parameterisation wrapper and samplers (free functions).

- :mod:`~enhancer.diffusion.schedule`: continuous-time cosine schedule, t in [0, 1].
- :mod:`~enhancer.diffusion.parameterization`: :class:`ResidualDiffusion`, which wraps a
  network and owns prediction type (x0 / eps / v), target (residual / image) and loss.
- :mod:`~enhancer.diffusion.samplers`: :func:`sample_ddim` / :class:`DDIMScheduler` over
  any ``(x_t, t) -> x0`` denoiser.
"""

from enhancer.diffusion.parameterization import (
    PREDICTIONS,
    TARGETS,
    ResidualDiffusion,
    min_snr_weight,
    prediction_target,
    x0_from_prediction,
)
from enhancer.diffusion.samplers import DDIMScheduler, ddim_path, ddim_start, sample_ddim
from enhancer.diffusion.schedule import alpha_sigma, logsnr, snr, t_from_logsnr, timesteps

__all__ = [
    "PREDICTIONS",
    "TARGETS",
    "DDIMScheduler",
    "ResidualDiffusion",
    "alpha_sigma",
    "ddim_path",
    "ddim_start",
    "logsnr",
    "min_snr_weight",
    "prediction_target",
    "sample_ddim",
    "snr",
    "t_from_logsnr",
    "timesteps",
    "x0_from_prediction",
]
