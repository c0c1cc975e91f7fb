"""Diffusion: noise schedule, parameterisation wrapper and samplers (free functions).

- :mod:`~enhancer.diffusion.schedule`: continuous-time cosine schedule, t in [0, 1].
- :mod:`~enhancer.diffusion.parameterization`: :class:`ResidualDiffusion`, which wraps a
  network and owns prediction type (x0 / eps / v), target (residual / image) and loss.
- :mod:`~enhancer.diffusion.samplers`: :func:`sample_ddim` / :class:`DDIMScheduler` over
  any ``(x_t, t) -> x0`` denoiser.
- :mod:`~enhancer.diffusion.sampling`: :class:`Sampling`, the one value that says how the
  residual is sampled (checkpoints, CLI, API, evaluation and students all build one).
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
from enhancer.diffusion.sampling import GAMMA_RANGE, NOISE_MODES, Sampling
from enhancer.diffusion.schedule import alpha_sigma, logsnr, snr, t_from_logsnr, timesteps

__all__ = [
    "GAMMA_RANGE",
    "NOISE_MODES",
    "PREDICTIONS",
    "TARGETS",
    "DDIMScheduler",
    "ResidualDiffusion",
    "Sampling",
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
