"""Samplers: DDIM (Song et al. 2021) in continuous time, over any x0-denoiser.

A denoiser is any callable ``denoise_fn(x_t, t) -> x0`` with ``x_t`` (B, C, H, W)
and ``t`` (B,) in [0, 1]; bind the conditioning with a closure::

    residual = sample_ddim(lambda x, t: diffusion.denoise(x, t, cond),
                           decoded.shape, steps=10, gamma=0.8, generator=gen)

The result is the clean signal in the wrapper's units; turn it into a frame with
``diffusion.decode_target`` (and apply the pipeline's residual scale there, not here).

The number of steps is chosen per call. :class:`DDIMScheduler` is the same
algorithm step by step, diffusers-style (``set_timesteps(n)`` then ``step(...)``);
:func:`sample_ddim` is a loop over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from enhancer.diffusion.schedule import alpha_sigma, timesteps

Denoiser = Callable[[Tensor, Tensor], Tensor]


class DDIMScheduler:
    """DDIM update from time ``timesteps[i]`` to ``timesteps[i + 1]`` (1 -> 0).

    ``eta = 0`` is deterministic DDIM; ``eta = 1`` matches the ancestral DDPM
    variance. The last step (to t = 0) returns the x0 estimate itself.
    """

    def __init__(self) -> None:
        self.timesteps: Tensor | None = None

    def set_timesteps(self, steps: int, device: torch.device | str | None = None,
                      t_start: float = 1.0) -> None:
        """Use ``steps`` evenly spaced steps from ``t_start`` to 0 (``steps + 1`` times)."""
        self.timesteps = timesteps(steps, device=device, t_start=t_start)

    @property
    def num_steps(self) -> int:
        if self.timesteps is None:
            raise RuntimeError("call set_timesteps(steps) before sampling")
        return len(self.timesteps) - 1

    def step(self, x0_pred: Tensor, step_index: int, sample: Tensor, eta: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
        """One DDIM step.

        Args:
            x0_pred:    (B, C, H, W) denoiser output at ``timesteps[step_index]``.
            step_index: 0 .. num_steps - 1.
            sample:     (B, C, H, W) the current x_t.
            eta:        0 deterministic; > 0 adds fresh noise drawn from ``generator``.

        Returns:
            x at ``timesteps[step_index + 1]``.
        """
        if not 0 <= step_index < self.num_steps:
            raise IndexError(f"step_index {step_index} out of range 0..{self.num_steps - 1}")
        t, t_next = self.timesteps[step_index], self.timesteps[step_index + 1]
        if t_next <= 0:
            return x0_pred
        alpha, sigma = alpha_sigma(t)
        alpha_next, sigma_next = alpha_sigma(t_next)
        eps = (sample - alpha * x0_pred) / sigma
        # Song et al. (2021) eq. 16 with alpha_bar = alpha^2.
        noise_std = eta * sigma_next / sigma * (1 - (alpha / alpha_next) ** 2).clamp(min=0).sqrt()
        x_next = alpha_next * x0_pred + (sigma_next**2 - noise_std**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            fresh = torch.randn(sample.shape, generator=generator, device=sample.device,
                                dtype=sample.dtype)
            x_next = x_next + noise_std * fresh
        return x_next


def sample_ddim(denoise_fn: Denoiser, shape: Sequence[int], steps: int, eta: float = 0.0,
                gamma: float = 1.0, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                start_noise: Tensor | None = None, t_start: float = 1.0,
                start_mean: Tensor | None = None) -> Tensor:
    """Run DDIM from noise at ``t_start`` (default 1) to the clean signal at t = 0.

    Args:
        denoise_fn:  ``(x_t, t) -> x0``, ``t`` of shape (B,).
        shape:       (B, C, H, W) of the sample.
        steps:       number of denoiser calls (1, 10, 100, ...).
        eta:         0: deterministic given the start noise; > 0: stochastic (seeded by
                     ``generator``).
        gamma:       start-noise scale, ``x_1 = gamma * noise`` (CDC decodes with 0.8).
        generator:   torch.Generator (on ``device``) for the start noise and eta noise.
        device, dtype: of the sample (default: ``start_noise``'s, else CPU float32).
        start_noise: (B, C, H, W) standard normal start noise to use instead of drawing
                     it, e.g. the same noise for consecutive video frames.
        t_start:     where the reverse process begins. 1: pure noise, ``x_1 = gamma *
                     noise``. < 1 (DIRAC-style late start): ``x = alpha(t_start) *
                     start_mean + gamma * sigma(t_start) * noise``, then ``steps`` steps
                     from ``t_start`` to 0: the sample stays closer to ``start_mean``.
        start_mean:  (B, C, H, W) the clean-signal guess a late start diffuses from
                     (zero residual = the decoded frame); None: zeros.

    Returns:
        (B, C, H, W) the sampled clean signal (wrapper units).

    Differentiable when called with gradients enabled (a few-step student is trained
    through it); inference callers run it under ``torch.no_grad()``.
    """
    shape = tuple(shape)
    if start_noise is not None:
        if tuple(start_noise.shape) != shape:
            raise ValueError(f"start_noise {tuple(start_noise.shape)} does not match shape {shape}")
        noise = start_noise.to(device=device or start_noise.device, dtype=dtype or start_noise.dtype)
    else:
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps, device=noise.device, t_start=t_start)
    x = ddim_start(noise, gamma, t_start, start_mean)
    for i in range(steps):
        t = scheduler.timesteps[i].expand(shape[0])  # float32 whatever the sample dtype
        x0_pred = denoise_fn(x, t)
        x = scheduler.step(x0_pred, i, x, eta=eta, generator=generator)
    return x


def ddim_start(noise: Tensor, gamma: float = 1.0, t_start: float = 1.0,
               start_mean: Tensor | None = None) -> Tensor:
    """The sample :func:`sample_ddim` begins from at ``t_start``: ``gamma * noise`` at 1,
    else ``alpha(t_start) * start_mean + gamma * sigma(t_start) * noise``."""
    if t_start >= 1.0:
        return gamma * noise
    alpha, sigma = alpha_sigma(torch.tensor(t_start))
    x = gamma * sigma.item() * noise
    if start_mean is not None:
        x = x + alpha.item() * start_mean.to(x)
    return x


def ddim_path(x0: Tensor, x_start: Tensor, t_start: float, t: Tensor) -> Tensor:
    """Where deterministic DDIM (``eta = 0``) from ``x_start`` at ``t_start`` is at time
    ``t`` ((B,), in [0, t_start]) when its denoiser returns ``x0`` at every step.

    DDIM keeps the implied noise ``(x - alpha * x0) / sigma`` fixed while ``x0`` does
    not change, so for any number of steps::

        x_t = alpha(t) * x0 + sigma(t) / sigma(t_start) * (x_start - alpha(t_start) * x0)

    These are the inputs a one-step model meets at intermediate times when run with more
    steps (:class:`enhancer.train.losses.ClipLoss`'s ``consistency_weight`` trains on them).
    """
    alpha_s, sigma_s = alpha_sigma(torch.tensor(float(t_start)))
    alpha_t, sigma_t = alpha_sigma(t.float())
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha_t, sigma_t = alpha_t.view(shape).to(x0), sigma_t.view(shape).to(x0)
    return alpha_t * x0 + sigma_t / sigma_s.item() * (x_start - alpha_s.item() * x0)
