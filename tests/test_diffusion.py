"""Schedule, parameterisation and the DDIM sampler (the learning run is in test_pipeline)."""

import math

import pytest
import torch
from torch import nn

from enhancer.diffusion import (
    PREDICTIONS,
    DDIMScheduler,
    ResidualDiffusion,
    alpha_sigma,
    logsnr,
    min_snr_weight,
    sample_ddim,
    snr,
    t_from_logsnr,
    timesteps,
)

# --- schedule -----------------------------------------------------------------------------


def test_schedule_is_variance_preserving_and_monotone():
    t = torch.linspace(0, 1, 1001)
    alpha, sigma = alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    assert (alpha.diff() < 0).all() and (sigma.diff() > 0).all()
    assert (logsnr(t).diff() < 0).all()
    assert logsnr(0.0).item() == pytest.approx(15.0, abs=1e-3)
    assert logsnr(1.0).item() == pytest.approx(-15.0, abs=1e-3)
    torch.testing.assert_close(t_from_logsnr(logsnr(t)), t, atol=1e-5, rtol=0)
    torch.testing.assert_close(snr(t), alpha**2 / sigma**2, rtol=1e-4, atol=0)


def test_schedule_is_the_cosine_schedule():
    t = torch.linspace(0.05, 0.95, 19)
    alpha, _ = alpha_sigma(t)
    torch.testing.assert_close(alpha**2, torch.cos(math.pi * t / 2) ** 2, atol=2e-3, rtol=0)


def test_timesteps_run_from_noise_to_clean():
    times = timesteps(10)
    assert times.shape == (11,) and times[0] == 1 and times[-1] == 0
    assert (times.diff() < 0).all()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        timesteps(0)


# --- parameterisation with an oracle network ----------------------------------------------


class OracleNet(nn.Module):
    """Knows the clean signal; outputs exactly what an ideal network of each kind would."""

    def __init__(self, clean: torch.Tensor, prediction: str):
        super().__init__()
        self.clean, self.prediction = clean, prediction

    def forward(self, noisy, t, decoded, prev_enhanced=None, latent=None):
        alpha, sigma = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(t))
        noise = (noisy - alpha * self.clean) / sigma
        return {
            "x0": self.clean,
            "eps": noise,
            "v": alpha * noise - sigma * self.clean,
        }[self.prediction]


def _frame_pair(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 16, 24, generator=generator)
    decoded = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return x, decoded


@pytest.mark.parametrize("target", ["residual", "image"])
def test_encode_decode_target_round_trip(target):
    x, decoded = _frame_pair()
    diffusion = ResidualDiffusion(nn.Identity(), target=target, residual_gain=10.0)
    clean = diffusion.encode_target(x, decoded)
    torch.testing.assert_close(diffusion.decode_target(clean, decoded), x)
    if target == "residual":
        torch.testing.assert_close(clean, 10.0 * (x - decoded))
    else:
        assert clean.min() >= -1 and clean.max() <= 1


@pytest.mark.parametrize("target", ["residual", "image"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_oracle_denoise_and_sampling_recover_the_clean_signal(prediction, target):
    x, decoded = _frame_pair()
    probe = ResidualDiffusion(nn.Identity(), prediction, target)
    clean = probe.encode_target(x, decoded)
    diffusion = ResidualDiffusion(OracleNet(clean, prediction), prediction, target)
    cond = {"decoded": decoded}
    generator = torch.Generator().manual_seed(0)

    for t in [0.0, 0.3, 0.7, 1.0]:
        noise = torch.randn(clean.shape, generator=generator)
        x_t = diffusion.add_noise(clean, torch.full((2,), t), noise)
        x0 = diffusion.denoise(x_t, torch.full((2,), t), cond)
        torch.testing.assert_close(x0, clean, atol=2e-3, rtol=0)  # eps at t = 1: / 5.5e-4

    for steps in [1, 10, 100]:
        for eta in [0.0, 1.0]:
            sample = sample_ddim(lambda x_t, t: diffusion.denoise(x_t, t, cond), clean.shape,
                                 steps, eta=eta, gamma=0.8, generator=generator)
            torch.testing.assert_close(sample, clean, atol=2e-3, rtol=0)
            torch.testing.assert_close(diffusion.decode_target(sample, decoded), x,
                                       atol=2e-3, rtol=0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_oracle_training_loss_is_zero_and_returns_x0(prediction):
    x, decoded = _frame_pair()
    clean = ResidualDiffusion(nn.Identity()).encode_target(x, decoded)
    diffusion = ResidualDiffusion(OracleNet(clean, prediction), prediction)
    out = diffusion.training_loss(clean, {"decoded": decoded})
    assert out["loss"].item() < 1e-8
    assert out["t"].shape == (2,) and ((out["t"] >= 0) & (out["t"] < 1)).all()
    torch.testing.assert_close(out["x0_pred"], clean, atol=2e-3, rtol=0)


class ConstantNet(nn.Module):
    """An arbitrary (wrong) network: a fixed random output."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, noisy, t, decoded, prev_enhanced=None, latent=None):
        return self.output


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_min_snr_loss_equals_weighted_x0_error(prediction):
    # Min-SNR-gamma: every prediction type's weighted loss is min(snr, gamma) * |x0 error|^2.
    x, decoded = _frame_pair(1)
    generator = torch.Generator().manual_seed(2)
    diffusion = ResidualDiffusion(ConstantNet(torch.randn(x.shape, generator=generator)),
                                  prediction)
    clean = diffusion.encode_target(x, decoded)
    t = torch.tensor([0.1, 0.8])
    noise = torch.randn(clean.shape, generator=generator)
    out = diffusion.training_loss(clean, {"decoded": decoded}, t=t, noise=noise,
                                  min_snr_gamma=5.0)
    x0_error = (out["x0_pred"] - clean).pow(2).mean(dim=(1, 2, 3))
    expected = (snr(t).clamp(max=5.0) * x0_error).mean()
    torch.testing.assert_close(out["loss"], expected, rtol=1e-3, atol=0)
    assert min_snr_weight(t, prediction, None).tolist() == [1.0, 1.0]


def test_bad_parameterisation_names_the_choices():
    with pytest.raises(ValueError, match="x0"):
        ResidualDiffusion(nn.Identity(), prediction="score")
    with pytest.raises(ValueError, match="residual"):
        ResidualDiffusion(nn.Identity(), target="latent")


# --- sampler ------------------------------------------------------------------------------


def _shrink_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact x0 denoiser for data ~ N(0, 0.5^2) per pixel: E[x0 | x_t]."""
    alpha, sigma = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(t))
    return alpha * 0.25 / (alpha**2 * 0.25 + sigma**2) * x_t


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_samples_the_data_distribution(eta):
    # With the exact denoiser of a Gaussian, DDIM (ODE or ancestral) ends at std 0.5 as
    # the steps grow; few steps under-disperse (std 0.43 / 0.39 at 10 steps).
    errors = []
    for steps in [10, 100, 1000]:
        generator = torch.Generator().manual_seed(0)
        sample = sample_ddim(_shrink_denoiser, (4, 3, 64, 64), steps, eta=eta,
                             generator=generator)
        assert sample.mean().abs().item() < 0.02
        errors.append(abs(sample.std().item() - 0.5))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.005


def test_seed_fixes_the_sample_and_eta_adds_noise():
    def run(seed, eta, steps=10):
        return sample_ddim(_shrink_denoiser, (1, 3, 8, 8), steps, eta=eta,
                           generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0, 0.0), run(0, 0.0))
    assert not torch.equal(run(0, 0.0), run(1, 0.0))
    assert torch.equal(run(0, 0.5), run(0, 0.5))
    assert (run(0, 0.5) - run(0, 0.0)).abs().max() > 1e-3
    # eta = 0 is deterministic given the start noise, whatever the generator.
    start = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    a = sample_ddim(_shrink_denoiser, start.shape, 10, start_noise=start,
                    generator=torch.Generator().manual_seed(4))
    b = sample_ddim(_shrink_denoiser, start.shape, 10, start_noise=start)
    assert torch.equal(a, b)
    # gamma scales the start noise; with the linear denoiser the output scales with it.
    half = sample_ddim(_shrink_denoiser, start.shape, 10, gamma=0.5, start_noise=start)
    torch.testing.assert_close(half, 0.5 * b)


def test_scheduler_steps_match_the_sampler():
    start = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    scheduler = DDIMScheduler()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(start, 0, start)
    scheduler.set_timesteps(5)
    x = start
    for i, t in enumerate(scheduler.timesteps[:-1]):
        x = scheduler.step(_shrink_denoiser(x, t.expand(1)), i, x)
    torch.testing.assert_close(x, sample_ddim(_shrink_denoiser, start.shape, 5, start_noise=start))
    with pytest.raises(IndexError, match="out of range"):
        scheduler.step(x, 5, x)
