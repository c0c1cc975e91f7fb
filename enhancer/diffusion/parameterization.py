"""The diffusion wrapper: what the network predicts, what the clean signal is, the loss.

k-diffusion's split: the network (:mod:`enhancer.models`) only maps inputs to an
output; :class:`ResidualDiffusion` owns the parameterisation (x0 / eps / v
prediction, residual or image target, scaling, loss weighting); samplers
(:mod:`enhancer.diffusion.samplers`) only see a denoiser callable.

Clean signal (``target``):

- ``"residual"`` (Brenig & Timofte): ``clean = residual_gain * (x - decoded)``.
  Residuals of codecs at 25-40 dB PSNR have a standard deviation of about
  0.01-0.06; the default factor 10 brings them to 0.1-0.6, the range of CDC's
  images in [-1, 1] (std about 0.5), so the cosine schedule's noise levels
  mean the same as in CDC.
- ``"image"`` (CDC baseline): ``clean = 2 * x - 1``, the image itself.

Either way callers use :meth:`ResidualDiffusion.encode_target` /
:meth:`ResidualDiffusion.decode_target` and never special-case the target.
The pipeline forms the output frame with its own residual scale ``s``
(``Sampling.residual_scale``; docs/enhancer.md)::

    residual = diffusion.decode_target(clean, decoded) - decoded   # image units
    enhanced = decoded + s * residual                              # s = 1: full perceptual
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from enhancer.diffusion.samplers import Denoiser, ddim_start, sample_ddim
from enhancer.diffusion.sampling import Sampling
from enhancer.diffusion.schedule import alpha_sigma, snr

Prediction = Literal["x0", "eps", "v"]
Target = Literal["residual", "image"]
PREDICTIONS: tuple[str, ...] = ("x0", "eps", "v")
TARGETS: tuple[str, ...] = ("residual", "image")


def _expand(value: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1) to broadcast over ``like`` (B, C, H, W)."""
    return value.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def prediction_target(clean: Tensor, noise: Tensor, alpha: Tensor, sigma: Tensor,
                      prediction: Prediction) -> Tensor:
    """What an ideal network outputs for ``x_t = alpha * clean + sigma * noise``.

    x0: the clean signal; eps: the noise; v: ``alpha * noise - sigma * clean``
    (Salimans & Ho 2022). ``alpha``, ``sigma`` broadcast against ``clean``.
    """
    if prediction == "x0":
        return clean
    if prediction == "eps":
        return noise
    if prediction == "v":
        return alpha * noise - sigma * clean
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


def x0_from_prediction(output: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor,
                       prediction: Prediction) -> Tensor:
    """Invert :func:`prediction_target`: the clean-signal estimate from a network output."""
    if prediction == "x0":
        return output
    if prediction == "eps":
        return (x_t - sigma * output) / alpha
    if prediction == "v":
        return alpha * x_t - sigma * output
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


def min_snr_weight(t: Tensor, prediction: Prediction, gamma: float | None) -> Tensor:
    """Per-sample loss weight (B,) of min-SNR-gamma weighting (Hang et al. 2023; CDC).

    All three equal ``min(snr, gamma)`` times the MSE of the x0 estimate:
    x0: ``min(snr, gamma)``; eps: ``min(snr, gamma) / snr``; v: ``min(snr, gamma) / (snr + 1)``.
    ``gamma=None`` gives weight 1 (plain MSE on the predicted quantity).
    """
    if gamma is None:
        return torch.ones_like(t)
    ratio = snr(t)
    clipped = ratio.clamp(max=gamma)
    if prediction == "x0":
        return clipped
    if prediction == "eps":
        return clipped / ratio
    if prediction == "v":
        return clipped / (ratio + 1)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


class ResidualDiffusion(nn.Module):
    """Wraps a denoising network and owns the parameterisation and the training loss.

    Args:
        network:    called as ``network(x_t, t, **cond)`` with ``t`` (B,) in [0, 1];
                    e.g. :class:`enhancer.models.ResidualUNet`.
        prediction: what the network outputs: ``"x0"`` (CDC's choice), ``"eps"`` or ``"v"``.
        target:     ``"residual"`` (``clean = residual_gain * (x - decoded)``)
                    or ``"image"`` (``clean = 2x - 1``, the CDC baseline).
        residual_gain: see the module docstring (ignored for ``"image"``).
        clamp:      clamp x0 estimates in :meth:`denoise` so that the frame they
                    imply lies in [0, 1].

    ``cond`` everywhere is the dict of network keyword arguments:
    ``{"decoded": (B, 3, H, W) in [0, 1], "prev_enhanced": ... or absent, "latent": ...,
    "quality_level": (B,) or absent}``.
    """

    def __init__(self, network: nn.Module, prediction: Prediction = "x0",
                 target: Target = "residual", residual_gain: float = 10.0,
                 clamp: bool = True):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
        if residual_gain <= 0:
            raise ValueError(f"residual_gain must be > 0, got {residual_gain}")
        self.network = network
        self.prediction = prediction
        self.target = target
        self.residual_gain = float(residual_gain)
        self.clamp = clamp

    # -- conditioning -----------------------------------------------------------------------

    def condition(self, decoded: Tensor, latent: Tensor | None = None,
                  prev_enhanced: Tensor | None = None,
                  quality_level: float | Tensor | None = None) -> dict[str, Tensor]:
        """The network's conditioning dict, the one way it is built (inference and training).

        ``latent`` is kept only when the network takes one; ``prev_enhanced`` only when it
        is temporal, and defaults to ``decoded`` there (the first frame of a sequence);
        ``quality_level`` (the decode's codec quality in [0, 1], a number or (B,)) only
        when it is quality-conditioned, and then it is required.
        """
        cond = {"decoded": decoded}
        if getattr(self.network, "latent_channels", None) is not None:
            cond["latent"] = latent
        if getattr(self.network, "temporal", False):
            cond["prev_enhanced"] = decoded if prev_enhanced is None else prev_enhanced
        if getattr(self.network, "quality_conditioned", False):
            if quality_level is None:
                raise ValueError("this denoiser is quality-conditioned: pass quality_level, "
                                 "the decode's CodecAdapter.quality_level(quality)")
            level = torch.as_tensor(quality_level, dtype=torch.float32, device=decoded.device)
            cond["quality_level"] = level.expand(decoded.shape[0]) if level.ndim == 0 else level
        return cond

    def precompute(self, cond: dict[str, Tensor]) -> dict[str, Tensor]:
        """``cond`` plus the network's per-frame conditioning work (``features``), so that
        every sampling step of this frame reuses it. Networks without it: ``cond`` as is."""
        encode = getattr(self.network, "encode_condition", None)
        if encode is None or "features" in cond:
            return cond
        return {**cond, "features": encode(cond["decoded"], cond.get("prev_enhanced"),
                                           cond.get("latent"), cond.get("quality_level"))}

    # -- clean signal <-> frame ------------------------------------------------------------

    def encode_target(self, x: Tensor, decoded: Tensor) -> Tensor:
        """Frame ``x`` (B, 3, H, W) in [0, 1] -> the clean diffusion signal."""
        if self.target == "residual":
            return (x - decoded) * self.residual_gain
        return x * 2 - 1

    def decode_target(self, clean: Tensor, decoded: Tensor) -> Tensor:
        """Clean diffusion signal -> frame (B, 3, H, W), [0, 1] up to estimation error."""
        if self.target == "residual":
            return decoded + clean / self.residual_gain
        return (clean + 1) / 2

    # -- training ---------------------------------------------------------------------------

    @staticmethod
    def sample_t(batch: int, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """(B,) training times in [0, 1), stratified: ``(u + i / B) mod 1`` for one uniform u.

        Covers the time range evenly in every batch (Kingma et al. 2021), which
        makes the per-batch loss far less noisy than independent draws.
        """
        u = torch.rand((), device=device, generator=generator)
        return (u + torch.arange(batch, device=device) / batch) % 1.0

    def add_noise(self, clean: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward process: ``x_t = alpha(t) * clean + sigma(t) * noise``; t is (B,)."""
        alpha, sigma = alpha_sigma(t)
        return _expand(alpha, clean) * clean + _expand(sigma, clean) * noise

    def training_loss(self, clean: Tensor, cond: dict[str, Tensor | None],
                      t: Tensor | None = None, noise: Tensor | None = None,
                      min_snr_gamma: float | None = 5.0) -> dict[str, Tensor]:
        """Denoising loss for one batch.

        Args:
            clean: (B, 3, H, W) clean signal, from :meth:`encode_target`.
            cond:  network conditioning (decoded, prev_enhanced, latent).
            t:     (B,) times in [0, 1]; default :meth:`sample_t`.
            noise: (B, 3, H, W) standard normal noise; default fresh ``randn``.
            min_snr_gamma: see :func:`min_snr_weight` (CDC uses 5); None: unweighted.

        Returns:
            ``{"loss": scalar weighted MSE, "x0_pred": (B, 3, H, W) unclamped one-step
            estimate of the clean signal (for a perceptual loss on
            ``decode_target(x0_pred, decoded)``), "t": (B,)}``.
        """
        if t is None:
            t = self.sample_t(clean.shape[0], clean.device)
        if noise is None:
            noise = torch.randn_like(clean)
        alpha, sigma = alpha_sigma(t)
        alpha, sigma = _expand(alpha, clean), _expand(sigma, clean)
        x_t = alpha * clean + sigma * noise
        output = self.network(x_t, t, **cond)
        target = prediction_target(clean, noise, alpha, sigma, self.prediction)
        per_sample = (output.float() - target.float()).pow(2).mean(dim=(1, 2, 3))  # (B,)
        weight = min_snr_weight(t, self.prediction, min_snr_gamma)
        return {
            "loss": (weight * per_sample).mean(),
            "x0_pred": x0_from_prediction(output, x_t, alpha, sigma, self.prediction),
            "t": t,
        }

    # -- sampling ---------------------------------------------------------------------------

    def denoise(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor | None]) -> Tensor:
        """x0 estimate (clean-signal units) from ``x_t`` at time ``t`` ((B,) or scalar).

        This is the denoiser the samplers call:
        ``sample_ddim(lambda x, t: diffusion.denoise(x, t, cond), shape, steps)``.
        """
        t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32)  # schedule in fp32
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        alpha, sigma = alpha_sigma(t)
        alpha, sigma = _expand(alpha, x_t), _expand(sigma, x_t)
        output = self.network(x_t, t, **cond)
        x0 = x0_from_prediction(output, x_t, alpha, sigma, self.prediction)
        if self.clamp:
            decoded = cond.get("decoded")
            if decoded is None and self.target == "residual":
                raise ValueError("cond['decoded'] is required to clamp a residual x0 estimate")
            x0 = self.encode_target(self.decode_target(x0, decoded).clamp(0, 1), decoded)
        return x0

    def sample(self, denoise_fn: Denoiser, decoded: Tensor, sampling: Sampling,
               generator: torch.Generator | None = None,
               start_noise: Tensor | None = None) -> Tensor:
        """The clean signal DDIM samples for ``decoded`` (B, 3, H, W) with ``denoise_fn`` at
        ``sampling``'s steps, eta, gamma and t_start (its ``noise`` and ``residual_scale``
        are the roll-out's and the caller's).

        A late start (``t_start`` < 1) diffuses from "no residual" (the decode itself);
        see :func:`enhancer.diffusion.sample_ddim` for the rest. Inference and the training
        of few-step students both sample through here.
        """
        return sample_ddim(denoise_fn, decoded.shape, sampling.steps, eta=sampling.eta,
                           gamma=sampling.gamma, generator=generator, device=decoded.device,
                           dtype=decoded.dtype, start_noise=start_noise,
                           t_start=sampling.t_start,
                           start_mean=self._start_mean(decoded, sampling.t_start))

    def sample_start(self, decoded: Tensor, noise: Tensor, sampling: Sampling) -> Tensor:
        """The sample a :meth:`sample` run with start noise ``noise`` begins from."""
        return ddim_start(noise, sampling.gamma, sampling.t_start,
                          self._start_mean(decoded, sampling.t_start))

    def _start_mean(self, decoded: Tensor, t_start: float) -> Tensor | None:
        return self.encode_target(decoded, decoded) if t_start < 1 else None
