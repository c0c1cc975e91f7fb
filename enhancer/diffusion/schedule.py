"""Continuous-time cosine noise schedule.

Diffusion time ``t`` runs from 0 (clean) to 1 (pure noise)::

    x_t = alpha(t) * x0 + sigma(t) * eps,     alpha^2 + sigma^2 = 1  (variance preserving)

The schedule is Nichol & Dhariwal's cosine, ``alpha^2(t) = cos^2(pi t / 2)``,
i.e. ``logsnr(t) = log(alpha^2 / sigma^2) = -2 log tan(pi t / 2)``, written in
continuous time with the log-SNR clipped to [LOGSNR_MIN, LOGSNR_MAX] at the ends
(Kingma et al. 2021, Hoogeboom et al. 2023) instead of Nichol's offset ``s`` and
beta clipping: t = 0 still has a tiny noise (sigma = 5.5e-4) and t = 1 a tiny
signal (alpha = 5.5e-4), so every conversion between x0, eps and v stays finite.
CDC (Yang & Mandt) uses the same cosine schedule on 8193 discrete steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOGSNR_MIN = -15.0  # at t = 1
LOGSNR_MAX = 15.0  # at t = 0

_ANGLE_MIN = math.atan(math.exp(-0.5 * LOGSNR_MAX))
_ANGLE_MAX = math.atan(math.exp(-0.5 * LOGSNR_MIN))


def _as_tensor(t: Tensor | float) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.float()


def logsnr(t: Tensor | float) -> Tensor:
    """log(alpha^2 / sigma^2) at time t in [0, 1]; decreasing from LOGSNR_MAX to LOGSNR_MIN."""
    t = _as_tensor(t)
    return -2.0 * torch.log(torch.tan(_ANGLE_MIN + t * (_ANGLE_MAX - _ANGLE_MIN)))


def t_from_logsnr(value: Tensor | float) -> Tensor:
    """Inverse of :func:`logsnr`."""
    value = _as_tensor(value)
    return (torch.atan(torch.exp(-0.5 * value)) - _ANGLE_MIN) / (_ANGLE_MAX - _ANGLE_MIN)


def snr(t: Tensor | float) -> Tensor:
    """Signal-to-noise ratio alpha^2 / sigma^2 at time t."""
    return torch.exp(logsnr(t))


def alpha_sigma(t: Tensor | float) -> tuple[Tensor, Tensor]:
    """(alpha, sigma) at time t, same shape as t, with alpha^2 + sigma^2 = 1."""
    value = logsnr(t)
    return torch.sigmoid(value).sqrt(), torch.sigmoid(-value).sqrt()


def timesteps(steps: int, device: torch.device | str | None = None,
              t_start: float = 1.0) -> Tensor:
    """``steps + 1`` sampling times, evenly spaced from ``t_start`` down to 0 (clean).

    A sampler takes ``steps`` denoising steps, from ``times[i]`` to ``times[i + 1]``.
    ``t_start = 1`` starts from pure noise; ``t_start < 1`` starts part-way (DIRAC-style).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    return torch.linspace(t_start, 0.0, steps + 1, device=device)
