"""The training loss over a clip (Brenig & Timofte; CDC):

::

    L = lmbda * L_bitrate + (1 - rho) * L_dist + rho * L_perc + L_decoder     (per frame)

- ``L_bitrate``: bits per pixel estimated from the codec's likelihoods.
- ``L_dist``:    the diffusion denoising loss on the clean signal (residual or image).
- ``L_perc``:    LPIPS between the frame and the one-step estimate
                 ``decode_target(x0_pred, decoded)`` (plus ``dists_weight`` x DISTS, a
                 :class:`PerceptualMix`, when asked for).
- ``L_decoder``: MSE of the codec's own decode, so ``decoded`` stays distortion-optimal.
- ``L_temporal`` (optional, ``temporal_weight``): consecutive enhanced frames should change
  as the ground truth does (no flicker); added as ``temporal_weight * L_temporal``.
- ``L_consistency`` (optional, students, ``consistency_weight``): the student's own output
  should not change when it is sampled with more steps (see below).

With a frozen codec ``L_bitrate`` and ``L_decoder`` are constants and are not
computed (reported as 0); in the ``codec`` pretraining mode only
``lmbda * L_bitrate + L_decoder`` is used.

Frames of a clip are processed in order: the codec carries its reference state
from frame to frame, and the previous enhanced frame fed to a temporal denoiser is
either sampled from the model itself (``rollout="self"``, a few DDIM steps without
gradient) or the ground-truth previous frame (``rollout="teacher"``).

A few-step *student* (``student``: a :class:`enhancer.diffusion.Sampling`) is trained on
what it will do at inference: the frame estimate is the sampler's output at those
settings, with gradients through its denoiser calls (not one step at a random time),
``L_dist`` is the MSE of its clean signal, ``L_perc`` and ``L_temporal`` are taken on it,
and it is the next frame's previous enhanced frame (a self roll-out at no extra cost).
With ``noise: shared`` the start noise is drawn once per clip, as at inference.

A one-step student only ever sees its start time; sampled with more steps (the paper's
10) it meets inputs at lower times it was never trained on and falls apart. With
``consistency_weight`` it is also trained on them: for its output ``r`` (no gradient),
the point ``x_t`` that deterministic DDIM with a denoiser that keeps returning ``r``
passes at a random ``t`` in (0, t_start] (:func:`enhancer.diffusion.ddim_path`, exact for
any step count) should be denoised back to ``r``. ``L_consistency`` is that MSE (with
``relative``: as a fraction of the decode's own MSE), so every step count lands where
one step does.

With ``relative`` a clip's log-ratio is negative where it improves on its decode and
positive where it harms it; ``harm_weight`` ``k`` charges harm ``1 + k`` times
(``r + k * max(r, 0)``), so a gain on one clip buys less harm on another: the
evaluation asks for every clip to improve, not for the average. A model for signalled
streams (``signalled``) is the opposite case: the encoder's strength map turns it off where
it makes LPIPS worse, so a clip's LPIPS log-ratio counts ``min(r, 0)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from enhancer.codecs.base import CodecAdapter, CodecOutput, bpp_from_likelihoods
from enhancer.codecs.stream import CodecStream
from enhancer.diffusion import ResidualDiffusion, Sampling, ddim_path
from enhancer.metrics.psnr import psnr
from enhancer.train.config import LossConfig


class PerceptualMix(nn.Module):
    """``lpips(x, y) + dists_weight * dists(x, y)`` per image ``(B,)``: the perceptual term
    with DISTS too (texture statistics, which LPIPS alone lets a model trade away on soft
    content). Both networks are frozen; gradients reach ``x`` only."""

    def __init__(self, lpips: Callable[[Tensor, Tensor], Tensor],
                 dists: Callable[[Tensor, Tensor], Tensor], dists_weight: float):
        super().__init__()
        if not dists_weight > 0:
            raise ValueError(f"dists_weight must be > 0, got {dists_weight}")
        self.lpips, self.dists, self.dists_weight = lpips, dists, dists_weight

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.lpips(x, y).float() + self.dists_weight * self.dists(x, y).float()


# relative_loss: the decode quality below which a crop counts as "near perfect".
RELATIVE_FLOOR_PSNR, RELATIVE_FLOOR_LPIPS = 45.0, 0.005
TERMS = ("loss", "bitrate", "dist", "perc", "decoder", "temporal", "consistency")
METRICS = ("bpp", "psnr_decoded", "psnr_onestep", "lpips_decoded", "lpips_onestep")


class ClipLoss(nn.Module):
    """``ClipLoss(codec, diffusion, perceptual, loss, mode=...)(clip)`` -> dict of loss
    terms (means over frames).

    Args:
        codec, diffusion: the enhancer's two parts (trained according to ``mode``).
        perceptual: ``(x, y) -> (B,)`` LPIPS on [0, 1] images (not a submodule, so it is
                    never saved with the model); None only when ``loss.rho == 0``.
        loss:       the terms and weights (:class:`enhancer.train.config.LossConfig`): lmbda,
                    rho, the temporal term (the MSE between the change from the previous
                    enhanced frame to this frame's estimate and the ground truth's change,
                    image units, against flicker), the self/teacher roll-out, and for
                    students the relative, consistency and harm terms (module notes).
        mode:       ``frozen``, ``e2e`` or ``codec`` (see :mod:`enhancer.train.config`).
        student:    train a few-step student for this sampling (see the module notes);
                    None: the diffusion loss at random times.
        intra_period: the codec's intra period inside a clip.
        min_snr_gamma: the diffusion loss weighting.
        amp:        run the denoiser and LPIPS under bfloat16 autocast (CUDA or CPU).
    """

    def __init__(self, codec: CodecAdapter, diffusion: ResidualDiffusion,
                 perceptual: Callable[[Tensor, Tensor], Tensor] | None, loss: LossConfig, *,
                 mode: str, student: Sampling | None = None, intra_period: int = -1,
                 min_snr_gamma: float | None = 5.0, amp: bool = False):
        super().__init__()
        if loss.consistency_weight > 0 and (student is None or student.eta != 0):
            raise ValueError("consistency_weight trains a student along its deterministic DDIM "
                             f"path; it needs a student with eta 0 (student: {student})")
        if loss.rho > 0 and perceptual is None and mode != "codec":
            raise ValueError(f"rho={loss.rho} needs a perceptual loss; pass perceptual=LPIPS")
        if student is not None and mode == "codec":
            raise ValueError("a student trains the denoiser; mode 'codec' has none")
        if loss.relative_loss and student is None:
            raise ValueError("relative losses are for students (the diffusion loss at a random "
                             "time has no decode to compare with); set student or drop relative")
        self.codec, self.diffusion = codec, diffusion
        self.config, self.mode, self.student = loss, mode, student
        # A plain attribute, not a submodule: LPIPS is never saved, moved or wrapped with the model.
        object.__setattr__(self, "perceptual", perceptual)
        self.intra_period, self.min_snr_gamma, self.amp = intra_period, min_snr_gamma, amp
        self.temporal = bool(getattr(diffusion.network, "temporal", False))
        # The relative MSE floor in clean-signal units (one image unit is ``unit`` of them).
        unit = float(diffusion.encode_target(torch.ones(()), torch.zeros(()))
                     - diffusion.encode_target(torch.zeros(()), torch.zeros(())))
        self.relative_mse_floor = 10 ** (-RELATIVE_FLOOR_PSNR / 10) * unit**2

    def _autocast(self, device: torch.device):
        if self.amp:  # CUDA, and CPUs with AVX512-BF16/AMX (bfloat16 matmuls and convs)
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, clip: Tensor, with_metrics: bool = False,
                coded: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """``clip`` (B, T, 3, H, W) in [0, 1] -> ``{"loss", "bitrate", "dist", "perc",
        "decoder", "temporal"}`` (and :data:`METRICS` when ``with_metrics``), each a scalar.

        ``coded``: the frozen codec's outputs for ``clip``, precomputed
        (:mod:`enhancer.train.cache`): ``{"decoded": (B, T, 3, H, W), "latent": (B, T, C,
        h, w), "quality_level": (B,)}`` (no latent for codecs without one): the codec is
        then not run. Without it the quality level is the codec's own.
        """
        if clip.ndim != 5 or clip.shape[2] != 3:
            raise ValueError(f"expected a clip (B, T, 3, H, W), got {tuple(clip.shape)}")
        if coded is not None and self.mode != "frozen":
            raise ValueError(f"cached codec outputs only fit mode 'frozen', not {self.mode!r}")
        num_frames = clip.shape[1]
        num_pixels = clip.shape[-2] * clip.shape[-1]
        codec_trains = self.mode in ("e2e", "codec")
        zero = clip.new_zeros(())
        sums = {name: zero for name in TERMS + (METRICS if with_metrics else ())}
        stream = CodecStream(self.codec, self.intra_period) if coded is None else None
        quality_level = (self.codec.quality_level(self.codec.quality)
                         if coded is None or "quality_level" not in coded else coded["quality_level"])
        prev_enhanced, start_noise = None, None
        if self.student is not None and self.student.noise == "shared":
            start_noise = torch.randn_like(clip[:, 0])  # one field per clip, as at inference
        for index in range(num_frames):
            frame = clip[:, index]  # (B, 3, H, W)
            if coded is not None:
                latent = coded["latent"][:, index] if "latent" in coded else None
                out = CodecOutput(coded["decoded"][:, index], latent, None, None)
            else:
                with torch.set_grad_enabled(codec_trains and torch.is_grad_enabled()):
                    out = stream(frame)
            decoded = out.decoded  # (B, 3, H, W) in [0, 1]
            bitrate, decoder_mse = zero, zero
            if codec_trains:
                bitrate = bpp_from_likelihoods(out.likelihoods, num_pixels)
                decoder_mse = F.mse_loss(decoded, frame)
            dist, perc, temporal, consistency, onestep = zero, zero, zero, zero, None
            if self.mode != "codec":
                if self.temporal and prev_enhanced is None:
                    prev_enhanced = decoded.detach()  # frame 0: the decode, as at inference
                cond = self.diffusion.condition(decoded, out.latent, prev_enhanced, quality_level)
                with self._autocast(frame.device):
                    # The target does not pull the codec: gradients reach it via the conditioning.
                    clean = self.diffusion.encode_target(frame, decoded.detach())
                    if self.student is None:
                        result = self.diffusion.training_loss(clean, cond,
                                                              min_snr_gamma=self.min_snr_gamma)
                        clean_pred, dist = result["x0_pred"], result["loss"]
                    else:
                        noise = (start_noise if start_noise is not None
                                 else torch.randn_like(decoded))
                        clean_pred = self._student_sample(cond, decoded, noise)
                        dist = (clean_pred.float() - clean.float()).pow(2).mean(dim=(1, 2, 3))
                        if self.config.consistency_weight > 0:
                            consistency = self._consistency(clean_pred, cond, decoded, noise,
                                                            clean)
                    onestep = self.diffusion.decode_target(clean_pred.float(), decoded)
                    if self.config.rho > 0:
                        perc = self.perceptual(onestep, frame).float()
                    if self.config.relative_loss:  # each clip by its gain over its decode
                        dist, perc = self._relative_to_decode(dist, perc, clean, decoded, frame)
                        dist = dist + self.config.harm_weight * dist.clamp(min=0)
                        perc = perc + self.config.harm_weight * perc.clamp(min=0)
                        if self.config.signalled:  # the encoder's map switches harm off
                            perc = perc.clamp(max=0)
                    perc = perc.mean()
                dist = dist.float().mean()
                if self.config.temporal_weight > 0 and self.temporal and index > 0:
                    temporal = F.mse_loss(onestep - prev_enhanced, frame - clip[:, index - 1])
                if self.temporal and index + 1 < num_frames:
                    prev_enhanced = (self._next_prev(frame, cond) if self.student is None
                                     else onestep.detach().clamp(0, 1))
            weights = self.config
            loss = (weights.lmbda * bitrate + (1 - weights.rho) * dist + weights.rho * perc
                    + decoder_mse + weights.temporal_weight * temporal
                    + weights.consistency_weight * consistency)
            if self.mode == "codec":
                loss = weights.lmbda * bitrate + decoder_mse
            for name, value in zip(TERMS, (loss, bitrate, dist, perc, decoder_mse, temporal,
                                           consistency)):
                sums[name] = sums[name] + value
            if with_metrics:
                self._add_metrics(sums, frame, decoded, onestep, out.likelihoods, num_pixels)
        return {name: value / num_frames for name, value in sums.items()}

    def _relative_to_decode(self, dist: Tensor, perc: Tensor, clean: Tensor, decoded: Tensor,
                            frame: Tensor) -> tuple[Tensor, Tensor]:
        """``log(dist / decoded's MSE)`` and ``log(perc / decoded's LPIPS)`` per clip (B,).

        Logarithms of the ratios: 0 for the decode itself, negative where the clip
        improves; the mean over clips is the log of the geometric-mean ratio, and a clip
        the student harms badly does not outweigh all the others.

        The divisors are floored at the decode quality of a near-perfect crop (MSE of 45
        dB PSNR, LPIPS 0.005): any change to a flat crop the codec got almost right
        would otherwise cost more than every real improvement elsewhere.
        """
        decoded_mse = self._decoded_mse(clean, decoded)
        dist = torch.log(dist.clamp(min=1e-12) / decoded_mse.clamp(min=self.relative_mse_floor))
        if self.config.rho > 0:
            with torch.no_grad():
                decoded_lpips = self.perceptual(decoded, frame).float()
            perc = torch.log(perc.clamp(min=1e-6) / decoded_lpips.clamp(min=RELATIVE_FLOOR_LPIPS))
        return dist, perc

    def _decoded_mse(self, clean: Tensor, decoded: Tensor) -> Tensor:
        """(B,) the decode's own MSE in clean-signal units."""
        decoded_clean = self.diffusion.encode_target(decoded, decoded).float()
        return (decoded_clean - clean.float()).pow(2).mean(dim=(1, 2, 3))

    def _student_sample(self, cond: dict[str, Tensor], decoded: Tensor,
                        start_noise: Tensor | None) -> Tensor:
        """The student's clean-signal estimate: its sampler, with gradients."""
        return self.diffusion.sample(lambda x, t: self.diffusion.denoise(x, t, cond), decoded,
                                     self.student, start_noise=start_noise)

    def _consistency(self, clean_pred: Tensor, cond: dict[str, Tensor], decoded: Tensor,
                     noise: Tensor, clean: Tensor) -> Tensor:
        """``L_consistency`` (scalar): the denoiser at a random point of the student's own
        DDIM path should return the student's one-step output (module notes)."""
        sampling = self.student
        target = clean_pred.detach()
        x_start = self.diffusion.sample_start(decoded, noise, sampling)
        # (0, t_start]: the times a many-step run calls the denoiser at (never exactly 0).
        t = sampling.t_start * (1 - torch.rand(target.shape[0], device=target.device))
        x_t = ddim_path(target, x_start, sampling.t_start, t)
        error = (self.diffusion.denoise(x_t, t, cond).float() - target.float()).pow(2)
        error = error.mean(dim=(1, 2, 3))
        if self.config.relative_loss:  # as a fraction of the decode's own error, every clip alike
            error = error / self._decoded_mse(clean, decoded).clamp(min=self.relative_mse_floor)
        return error.mean()

    @torch.no_grad()
    def _next_prev(self, frame: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """The previous enhanced frame for the next step: sampled (self) or ground truth."""
        if self.config.rollout == "teacher":
            return frame
        cond = {name: value.detach() for name, value in cond.items()}
        decoded = cond["decoded"]
        was_training = self.diffusion.training
        self.diffusion.eval()
        with self._autocast(frame.device):
            clean = self.diffusion.sample(lambda x, t: self.diffusion.denoise(x, t, cond),
                                          decoded, Sampling(steps=self.config.rollout_steps))
        self.diffusion.train(was_training)
        return self.diffusion.decode_target(clean.float(), decoded).clamp(0, 1)

    @torch.no_grad()
    def _add_metrics(self, sums: dict[str, Tensor], frame: Tensor, decoded: Tensor,
                     onestep: Tensor | None, likelihoods: dict[str, Tensor] | None,
                     num_pixels: int) -> None:
        nan = frame.new_tensor(float("nan"))
        sums["bpp"] = sums["bpp"] + (bpp_from_likelihoods(likelihoods, num_pixels)
                                     if likelihoods else nan)
        sums["psnr_decoded"] = sums["psnr_decoded"] + psnr(decoded, frame).mean().float()
        lpips_fn = self.perceptual  # the logged metric is LPIPS itself, never the mix
        if isinstance(lpips_fn, PerceptualMix):
            lpips_fn = lpips_fn.lpips
        sums["lpips_decoded"] = sums["lpips_decoded"] + (
            lpips_fn(decoded, frame).float().mean() if lpips_fn else nan)
        if onestep is None:
            sums["psnr_onestep"] = sums["lpips_onestep"] = nan
            return
        onestep = onestep.float().clamp(0, 1)
        sums["psnr_onestep"] = sums["psnr_onestep"] + psnr(onestep, frame).mean().float()
        sums["lpips_onestep"] = sums["lpips_onestep"] + (
            lpips_fn(onestep, frame).float().mean() if lpips_fn else nan)
