"""FID/256 and KID/256: the distances against numpy/scipy references on synthetic features,
patch counts, finding and checking the Inception weights offline, and the evaluation's
set-level columns (stored features, resume, small frames, missing weights).

No test has the published Inception weights: where a network is needed it is a freshly
initialised one saved in the real file layout. Its numbers are plumbing only, and the
evaluation says so (``fid_note``: NOT FID/KID).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import REPO
from PIL import Image

from enhancer.cli import run_cli
from enhancer.eval.scoring import FrameScorer
from enhancer.metrics.fid import (
    INCEPTION_URL,
    WEIGHTS_FILE_NAMES,
    InceptionFeatures,
    InceptionLayoutError,
    InceptionWeightsNotFoundError,
    PatchFIDKID,
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    kid,
    patch_count,
    patches,
)

torch_fidelity = pytest.importorskip("torch_fidelity")

sys.path.insert(0, str(REPO / "tools"))
import eval_uvg  # noqa: E402


# --- distances on synthetic features ---------------------------------------------------
def _gaussian_sets(dim: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = rng.normal(size=(count, dim)) @ mix + 1.0
    fake = rng.normal(size=(count, dim)) @ (mix * 1.3) + 1.2
    return real, fake


def _scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_and_torch_fidelity():
    real, fake = _gaussian_sets(dim=32, count=500)
    expected = _scipy_fid(real, fake)
    assert expected > 1.0
    assert fid_from_features(real, fake) == pytest.approx(expected, rel=1e-9)
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (real, fake)]
    theirs = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert fid_from_features(real, fake) == pytest.approx(theirs, rel=1e-7)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-9)
    # Fewer samples than dimensions (singular covariances): computed on the small side, the
    # same as the D x D route and the reference.
    few_real, few_fake = real[:20], fake[:25]
    few = fid_from_features(few_real, few_fake)
    assert few == pytest.approx(_scipy_fid(few_real, few_fake), rel=1e-6)
    assert few == pytest.approx(frechet_distance(*gaussian_stats(few_real),
                                                 *gaussian_stats(few_fake)), rel=1e-6)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # Diagonal covariances commute: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1.0 + 4.0 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0.0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="expected means"):
        frechet_distance(mu1, np.diag(a), mu2[:2], np.diag(b))


def _numpy_kid_reference(real, fake, subsets, size, seed):
    """Straight from the definition: unbiased MMD^2, kernel (x.y/d + 1)^3, off-diagonal means."""
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        dim = x.shape[1]
        k = lambda p, q: (p @ q.T / dim + 1.0) ** 3  # noqa: E731
        off = ~np.eye(size, dtype=bool)
        values.append(k(x, x)[off].mean() + k(y, y)[off].mean() - 2 * k(x, y).mean())
    return np.mean(values), np.std(values)


def test_kid_matches_numpy_reference_and_torch_fidelity():
    real, fake = _gaussian_sets(dim=16, count=300, seed=1)
    mean, std = kid(real, fake, subsets=10, subset_size=50, seed=2020)
    ref_mean, ref_std = _numpy_kid_reference(real, fake, 10, 50, 2020)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    assert mean > 2 * std > 0  # the sets differ
    from torch_fidelity.metric_kid import kid_features_to_metric

    theirs = kid_features_to_metric(torch.from_numpy(real).float(), torch.from_numpy(fake).float(),
                                    kid_subsets=10, kid_subset_size=50, rng_seed=2020,
                                    verbose=False)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)
    # Same distribution: about 0 (small negatives are valid). Sets smaller than the subset
    # size are used whole (torch-fidelity refuses them): every subset is the same.
    same_mean, _ = kid(real[:150], real[150:], subsets=10, subset_size=50)
    assert abs(same_mean) < mean / 20
    small_mean, small_std = kid(real[:30], fake[:30])  # subset size 1000 > 30
    assert small_mean == pytest.approx(_numpy_kid_reference(real[:30], fake[:30], 1, 30, 0)[0],
                                       rel=1e-9)
    assert small_std < 1e-9 * small_mean
    with pytest.raises(ValueError, match="at least 2"):
        kid(real[:1], fake)


# --- patches ---------------------------------------------------------------------------
@pytest.mark.parametrize("height, width, expected", [
    (200, 300, 0), (300, 200, 0), (255, 4000, 0),  # a side below 256: no patch
    (256, 256, 1), (300, 300, 1),                   # one patch, no shifted pass (< 384)
    (383, 1000, 3),                                  # 1x3, shift needs both sides >= 384
    (384, 1000, 3 + 3),                              # + the shifted grid of [128:, 128:]
    (480, 640, 2 + 2),
    (1080, 1920, 4 * 7 + 3 * 7),                     # UVG: 28 + 21
])
def test_patch_counts(height, width, expected):
    assert patch_count(height, width) == expected
    assert patches(torch.zeros(2, 3, height, width)).shape == (2 * expected, 3, 256, 256)


def test_patches_are_the_grid_then_the_shifted_grid():
    frame = torch.rand(1, 3, 480, 640)
    cut = patches(frame)
    assert torch.equal(cut[0], frame[0, :, :256, :256])
    assert torch.equal(cut[1], frame[0, :, :256, 256:512])  # row-major
    assert torch.equal(cut[2], frame[0, :, 128:384, 128:384])  # shifted by 128 on both axes
    assert torch.equal(cut[3], frame[0, :, 128:384, 384:640])
    assert patch_count(1080, 1920, size=128) == 8 * 15 + 7 * 14  # size is a parameter


class _MeanColour:
    """A stand-in extractor: per-patch mean colour, padded to 2048 features."""

    def patch_features(self, frames, size):
        cut = patches(frames, size).mean(dim=(2, 3)).numpy()
        return np.pad(cut, ((0, 0), (0, 2045)))


def test_accumulator_scores_what_it_was_given():
    accumulator = PatchFIDKID(_MeanColour())
    torch.manual_seed(0)
    real = torch.rand(3, 3, 512, 512)
    assert accumulator.update(real, (real * 0.5).clamp(0, 1)) == 3 * (4 + 1)
    scores = accumulator.compute()
    assert set(scores) == {"fid", "kid", "kid_std"} and scores["fid"] > 0
    assert set(accumulator.compute(["fid"])) == {"fid"}
    with pytest.raises(ValueError, match="at least 2 patches"):
        PatchFIDKID(_MeanColour()).compute()
    with pytest.raises(ValueError, match="unknown set metrics"):
        accumulator.compute(["fd"])


# --- the Inception weights -------------------------------------------------------------
def _random_inception_state() -> dict[str, torch.Tensor]:
    """A freshly initialised network's state dict in the real file's layout (torch-fidelity's
    FeatureExtractorInceptionV3 = torchvision's Inception3, 1008 classes, no aux head)."""
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.Inception3(num_classes=1008, aux_logits=False,
                                            init_weights=False)
    return network.state_dict()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "random_inception_layout.pth"
    torch.save(_random_inception_state(), path)
    return path


def test_the_url_and_file_name_are_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert INCEPTION_URL == URL_INCEPTION_V3
    assert WEIGHTS_FILE_NAMES[0] == URL_INCEPTION_V3.rsplit("/", 1)[1]


def test_without_weights_one_line_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(InceptionWeightsNotFoundError) as caught:
        InceptionFeatures()
    message = str(caught.value)
    cache_file = tmp_path / "empty_home" / "hub" / "checkpoints" / WEIGHTS_FILE_NAMES[0]
    assert "\n" not in message and INCEPTION_URL in message and str(cache_file) in message
    lines = []
    scorer = FrameScorer(("psnr_rgb", "fid", "kid"), "cpu", log=lines.append)
    assert len(lines) == 1 and INCEPTION_URL in lines[0] and "fid/kid" in lines[0]
    assert scorer.set_metrics == [] and scorer.inception is None and scorer.metrics == ["psnr_rgb"]
    assert scorer.unavailable.startswith("Inception-v3 FID weights not found when this ran")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        InceptionFeatures(tmp_path / "nope.pth")  # an explicit path must exist
    assert not (tmp_path / "empty_home").exists()  # nothing was downloaded or created


def test_weights_of_the_wrong_layout_are_refused(tmp_path, random_weights):
    state = torch.load(random_weights, weights_only=True)
    state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(16, 3, 3, 3)
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(InceptionLayoutError) as caught:
        InceptionFeatures(bad)
    message = str(caught.value)
    assert "Conv2d_1a_3x3.conv.weight: file (16, 3, 3, 3) vs model (32, 3, 3, 3)" in message
    assert "1 missing keys (e.g. ['fc.bias'])" in message
    assert "1 unexpected keys (e.g. ['extra.weight'])" in message
    assert "FeatureExtractorInceptionV3 (566 tensors" in message and INCEPTION_URL in message
    torch.save([torch.zeros(1)], bad)
    with pytest.raises(InceptionLayoutError, match="holds a list, not a state dict"):
        InceptionFeatures(bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionLayoutError, match="cannot be read as a tensor state dict"):
        InceptionFeatures(bad)


def test_weights_are_found_in_a_temporary_torch_home_and_loaded(tmp_path, monkeypatch,
                                                                 random_weights):
    """Plumbing only: a random network in the real layout, where torch-fidelity caches it."""
    home = tmp_path / "torch_home"
    cached = home / "hub" / "checkpoints" / WEIGHTS_FILE_NAMES[0]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(random_weights.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(home))
    extractor = InceptionFeatures()
    assert extractor.path == cached
    assert not extractor.published  # not the published file: its values are not FID
    saved = torch.load(random_weights, weights_only=True)
    loaded = extractor.network.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in ("Conv2d_1a_3x3.conv.weight",
                                                          "Mixed_7c.branch_pool.bn.running_var",
                                                          "fc.weight"))
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    features = extractor.patch_features(torch.rand(1, 3, 300, 520))  # 1x2 patches, no shift
    assert features.shape == (2, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert extractor.patch_features(torch.rand(1, 3, 200, 520)).shape == (0, 2048)


# --- the evaluation's set-level columns ------------------------------------------------
def _png_sequence(root: Path, name: str, size: tuple[int, int], frames: int = 2) -> None:
    """A smooth moving pattern (x264 codes it quickly) as a folder of PNG frames."""
    folder = root / name
    folder.mkdir(parents=True)
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    for index in range(frames):
        phase = index * 0.3
        rgb = np.stack([np.sin(x / 17 + phase), np.cos(y / 23 - phase),
                        np.sin((x + y) / 31 + phase)], axis=-1)
        pixels = ((rgb + 1) * 127.5).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"im{index + 1:05d}.png")


def _summary(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["averages"]


def _random_enhancer(path: Path) -> Path:
    from enhancer.config import CodecConfig, EnhancerConfig
    from enhancer.pipeline import Enhancer, save_enhancer

    torch.manual_seed(0)
    save_enhancer(path, Enhancer.from_config(EnhancerConfig(
        codec=CodecConfig(name="x264", quality=30), unet="tiny", temporal=False)))
    return path


def test_eval_fid_kid_columns_resume_and_refusals(tmp_path, random_weights, capsys):
    root = tmp_path / "seqs"
    _png_sequence(root, "Wide", (256, 320))
    _png_sequence(root, "Square", (300, 300))
    out = tmp_path / "out"
    enhancer = _random_enhancer(tmp_path / "rand.pt")
    argv = ["--root", str(root), "--codec", "x264", "--quality", "30", "40", "--frames", "2",
            "--intra-period", "-1", "--out", str(out), "--quiet", "--enhancer", str(enhancer),
            "--steps", "1",
            "--metrics", "psnr_rgb", "fid", "kid", "--inception-weights", str(random_weights)]
    assert run_cli(eval_uvg.main, argv) == 0
    printed = capsys.readouterr().out
    averages = _summary(out)
    assert sorted((a["quality"], a["variant"]) for a in averages) == [
        (30, "decoded"), (30, "enhanced"), (40, "decoded"), (40, "enhanced")]
    for average in averages:
        # One value per rate point over both sequences: 2 x 2 frames x 1 patch.
        assert average["fid_patches"] == 4 and average["sequences"] == 2
        # (A random network's features are nearly constant: tiny values, of no meaning.)
        assert isinstance(average["fid"], float) and isinstance(average["kid"], float)
        assert average["kid_std"] >= 0
        assert average["fid_note"].startswith("NOT FID/KID")  # random weights: plumbing only
    (header,) = [line for line in printed.splitlines() if line.startswith("codec")]
    assert "FID" in header and "KID" in header and "FID/KID: NOT FID/KID" in printed
    features = sorted(p.name for p in (out / "features").iterdir())
    assert len([f for f in features if f.endswith("_truth.npy")]) == 2  # shared by both rates
    assert len([f for f in features if "_decoded_" in f]) == 4 and "inception.json" in features
    enhanced = sorted((out / "features").glob("Wide_x264_q30_enhanced_*.npy"))
    (decoded,) = (out / "features").glob("Wide_x264_q30_decoded_*.npy")
    assert len(enhanced) == 1 and len([f for f in features if "_enhanced_" in f]) == 4
    assert np.load(enhanced[0]).shape == np.load(decoded).shape == (2, 2048)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert "fid" not in rows[0]  # set-level: summary only
    compressai = json.loads((out / "compressai" / "x264-decoded.json").read_text())["results"]
    assert len(compressai["fid"]) == 2

    # Resume: nothing is recomputed and the set-level values are the same.
    assert run_cli(eval_uvg.main, argv) == 0
    assert capsys.readouterr().out.count("skip ") == 4
    assert _summary(out) == averages
    # A unit whose features are gone is coded again (only it); the values come back.
    (lost,) = (out / "features").glob("Square_x264_q40_decoded_*.npy")
    lost.unlink()
    assert run_cli(eval_uvg.main, argv) == 0
    assert capsys.readouterr().out.count("skip ") == 3 and lost.is_file()
    assert [a["fid"] for a in _summary(out)] == pytest.approx([a["fid"] for a in averages],
                                                              rel=1e-5)
    # Features made with other weights are never mixed in.
    other = tmp_path / "other.pth"
    state = torch.load(random_weights, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    torch.save(state, other)
    assert run_cli(eval_uvg.main, [*argv[:-2], "--inception-weights", str(other)]) == 2
    assert "FID/KID would mix two networks" in capsys.readouterr().err
    # Weights of the wrong layout: refused before any work.
    state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, other)
    fresh = tmp_path / "fresh"
    assert run_cli(eval_uvg.main, [*argv[:-6], "--out", str(fresh), "--metrics", "fid",
                                   "--inception-weights", str(other)]) == 2
    assert "vs model (32, 3, 3, 3)" in capsys.readouterr().err
    assert not (fresh / "results.json").exists()


def test_eval_small_frames_and_missing_weights_give_null_with_the_reason(
        tmp_path, random_weights, monkeypatch, capsys):
    root = tmp_path / "seqs"
    _png_sequence(root, "Tiny", (96, 128))
    base = ["--root", str(root), "--codec", "x264", "--quality", "35", "--frames", "2",
            "--quiet", "--metrics", "psnr_rgb", "fid", "kid"]
    small = tmp_path / "small"
    assert run_cli(eval_uvg.main, [*base, "--out", str(small), "--inception-weights",
                                   str(random_weights)]) == 0
    (average,) = _summary(small)
    assert average["fid"] is None and average["kid"] is None and average["fid_patches"] == 0
    assert average["fid_note"] == ("no 256x256 patch fits in 128x96 frames: FID/KID need frames "
                                   "of at least 256 px a side")
    assert average["psnr_rgb"] > 20  # the rest of the evaluation is unaffected
    capsys.readouterr()

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    missing = tmp_path / "missing"
    assert run_cli(eval_uvg.main, [*base, "--out", str(missing)]) == 0
    printed = capsys.readouterr().out
    warnings = [line for line in printed.splitlines() if INCEPTION_URL in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: fid/kid unavailable")
    (average,) = _summary(missing)
    assert average["fid"] is None and average["kid"] is None
    assert average["fid_note"].startswith("Inception-v3 FID weights not found when this ran")
    assert f"FID/KID: {average['fid_note']}" in printed
    assert not (missing / "features").exists()
    # Without fid/kid asked for, the summary has no such keys at all.
    plain = tmp_path / "plain"
    assert run_cli(eval_uvg.main, [*base[:-4], "--metrics", "psnr_rgb", "--out", str(plain)]) == 0
    assert "fid" not in _summary(plain)[0]
