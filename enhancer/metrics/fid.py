"""FID and KID on 256x256 patches (FID/256, KID/256), with torch-fidelity's Inception-v3.

The protocol of learned image compression papers (HiFiC, Mentzer et al., NeurIPS 2020;
MS-ILLM, Muckley et al., ICML 2023; NeuralCompression's ``update_patch_fid``)::

    frame (H, W) ──▶ grid of non-overlapping 256x256 patches (the remainder is dropped)
                 └─▶ if H and W >= 1.5 * 256: the same grid again, shifted by 128 px on
                     both axes (frame[128:, 128:])
    every patch  ──round(x * 255) uint8──▶ Inception-v3 (resized to 299 as TF 1.x did)
                 ──▶ 2048-d pool features; one set per image source (ground truth, decoded,
                     each enhancer)
    FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2)
    KID = unbiased MMD^2, kernel (x.y / 2048 + 1)^3, mean and std over 100 random subsets
          of min(1000, patches) patches (torch-fidelity's defaults and seed)

Patch counts: 1920x1080 gives 4x7 + 3x7 = 49 patches per frame; 640x480 gives 1x2 + 1x2 = 4;
frames smaller than 256 px on a side give none.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the one torchmetrics'
``FrechetInceptionDistance``/``KernelInceptionDistance`` wrap), never a hand-written copy.
Its weights are never downloaded here: they come from ``weights`` (``--inception-weights
PATH``) or torch hub's cache (``$TORCH_HOME/hub/checkpoints``), under torch-fidelity's file
name or pytorch-fid's (same layout). Absent, :class:`InceptionWeightsNotFoundError` says
where to put them. A file of another layout is refused with the expected one. A file whose
sha256 does not start with the hash in the published file's name (``6726825d``) loads but is
flagged (:attr:`InceptionFeatures.published` is False): its numbers are not FID.

:func:`frechet_distance` and :func:`kid` work on plain feature arrays; :class:`PatchFIDKID`
accumulates the features of a set of frame pairs and computes both.

One module on purpose: the patching, the Inception network and the checks on its weights
(file, layout, published hash) are what makes a number FID/256, so the whole protocol is
defined in one file; the set-level bookkeeping of an evaluation is :mod:`enhancer.eval.setlevel`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from enhancer.utils.weights import state_dict_mismatch

PATCH_SIZE = 256
FEATURE_DIM = 2048
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
# torch-fidelity's (and torchmetrics') file name in torch hub's cache, then pytorch-fid's.
WEIGHTS_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth",
                      "pt_inception-2015-12-05-6726825d.pth")
PUBLISHED_SHA256_PREFIX = "6726825d"  # torch hub's convention: the hash in the file name
INSTALL_HINT = "pip install torch-fidelity"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's default rng_seed


class InceptionWeightsNotFoundError(FileNotFoundError):
    """The Inception-v3 FID weights are not on this machine (they are never downloaded)."""


# ---------------------------------------------------------------------------
# patches


def patch_count(height: int, width: int, size: int = PATCH_SIZE) -> int:
    """How many patches :func:`patches` cuts from one ``height x width`` frame."""
    count = (height // size) * (width // size)
    if height >= 1.5 * size and width >= 1.5 * size:
        count += ((height - size // 2) // size) * ((width - size // 2) // size)
    return count


def _grid(frames: Tensor, size: int) -> Tensor:
    batch, channels, height, width = frames.shape
    rows, cols = height // size, width // size
    if rows == 0 or cols == 0:
        return frames.new_empty((0, channels, size, size))
    grid = frames[..., : rows * size, : cols * size]
    grid = grid.reshape(batch, channels, rows, size, cols, size).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(batch * rows * cols, channels, size, size)  # row-major per frame


def patches(frames: Tensor, size: int = PATCH_SIZE) -> Tensor:
    """Non-overlapping ``size x size`` patches of ``frames`` (B, C, H, W): (N, C, size, size).

    The grid starts at the top left and drops what does not fill a patch. When both sides
    are at least 1.5 * ``size``, the grid of ``frames[..., size//2:, size//2:]`` follows
    (HiFiC's second, shifted pass). ``N`` is ``B * patch_count(H, W, size)``; 0 when a side
    is shorter than ``size``.
    """
    if frames.dim() != 4:
        raise ValueError(f"expected frames (B, C, H, W), got shape {tuple(frames.shape)}")
    height, width = frames.shape[-2:]
    parts = [_grid(frames, size)]
    if height >= 1.5 * size and width >= 1.5 * size:
        half = size // 2
        parts.append(_grid(frames[..., half:, half:], size))
    return torch.cat(parts)


# ---------------------------------------------------------------------------
# distances on feature arrays


def _features(array: Any, name: str) -> np.ndarray:
    features = np.asarray(array, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: expected features (N, D), got shape {features.shape}")
    return features


def gaussian_stats(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features`` ``(N, D)``, N >= 2."""
    features = _features(features, "features")
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^1/2)``. The trace term is
    computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``sigma1^1/2 sigma2 sigma1^1/2`` (same eigenvalues as ``sigma1 sigma2``), in float64, with
    round-off negatives clipped to 0: stable for singular covariances (fewer samples than
    dimensions) and faster than ``scipy.linalg.sqrtm``.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) \
            or sigma2.shape != (dim, dim):
        raise ValueError(f"expected means (D,) and covariances (D, D), got {mu1.shape}, "
                         f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    product = (product + product.T) / 2  # symmetric up to round-off
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(product), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def fid_from_features(real: Any, fake: Any) -> float:
    """:func:`frechet_distance` of the Gaussians fitted to two feature sets ``(N, D)``.

    With fewer samples than dimensions the trace term comes from the small side: for
    centred ``A`` (N, D), ``B`` (M, D), ``S1 S2`` has the nonzero eigenvalues of
    ``C C^T / ((N-1)(M-1))`` with ``C = A B^T``, so ``tr (S1 S2)^1/2`` is the sum of ``C``'s
    singular values over ``sqrt((N-1)(M-1))`` (exact, and no D x D eigenproblem).
    """
    real, fake = _features(real, "real"), _features(fake, "fake")
    (mu1, sigma1), (mu2, sigma2) = gaussian_stats(real), gaussian_stats(fake)
    if min(len(real), len(fake)) >= real.shape[1]:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    centred_real, centred_fake = real - mu1, fake - mu2
    cross = centred_real @ centred_fake.T  # (N, M)
    trace_sqrt = np.linalg.svd(cross, compute_uv=False).sum() / np.sqrt(
        (len(real) - 1) * (len(fake) - 1))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, coef0: float) -> float:
    m, dim = x.shape
    gamma = 1.0 / dim

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T * gamma + coef0) ** degree

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(real: Any, fake: Any, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = KID_SEED, degree: int = 3, coef0: float = 1.0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., ICLR 2018): ``(mean, std)`` over subsets.

    Each of ``subsets`` draws ``min(subset_size, len(real), len(fake))`` rows of each set
    without replacement (``numpy.random.RandomState(seed)``, real then fake, as
    torch-fidelity does) and takes the unbiased MMD^2 with the polynomial kernel
    ``(x.y / D + coef0) ** degree``. With at least ``subset_size`` rows per set this is
    torch-fidelity's ``kid_features_to_metric``; smaller sets use all their rows (torch-fidelity
    refuses them). Small negative values are valid: the distributions are very close.
    """
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 feature vectors per set, got {len(real)} real "
                         f"and {len(fake)} fake")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for index in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        values[index] = _mmd2_unbiased(x, y, degree, coef0)
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------------
# the Inception-v3 weights and network


def inception_cache_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where torch-fidelity
    and torchmetrics keep the weights they download."""
    return Path(torch.hub.get_dir()) / "checkpoints"


WEIGHTS_MISSING = "Inception-v3 FID weights not found"


def missing_weights_message() -> str:
    """One line: where the weights come from and where to put them."""
    return (f"{WEIGHTS_MISSING}: download {INCEPTION_URL} to "
            f"{inception_cache_dir() / WEIGHTS_FILE_NAMES[0]} (or pass --inception-weights PATH)")


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file: ``path`` if given (it must exist), else the first of
    :data:`WEIGHTS_FILE_NAMES` in :func:`inception_cache_dir`.

    Raises :class:`InceptionWeightsNotFoundError` (one line, how to get them) when the cache
    has none, ``FileNotFoundError`` when an explicit ``path`` does not exist.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--inception-weights {path} does not exist; "
                                    f"{missing_weights_message()}")
        return path
    for name in WEIGHTS_FILE_NAMES:
        candidate = inception_cache_dir() / name
        if candidate.is_file():
            return candidate
    raise InceptionWeightsNotFoundError(missing_weights_message())


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_layout(expected: Mapping[str, Tensor]) -> str:
    names = list(expected)
    shown = ", ".join(f"{n} {tuple(expected[n].shape)}" for n in (names[0], names[-2]))
    return (f"expected the state dict of torch-fidelity's FeatureExtractorInceptionV3 "
            f"({len(names)} tensors: {shown}, ... as in {WEIGHTS_FILE_NAMES[0]} from "
            f"{INCEPTION_URL})")


class InceptionLayoutError(ValueError):
    """A weights file that is not Inception-v3 FID weights in torch-fidelity's layout."""


def _read_state_dict(path: Path) -> dict[str, Any]:
    """The file as a plain state dict, read without running pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise InceptionLayoutError(
            f"{path} cannot be read as a tensor state dict ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); expected torch-fidelity's "
            f"Inception-v3 weights {WEIGHTS_FILE_NAMES[0]} from {INCEPTION_URL}"
        ) from None
    if not isinstance(state, Mapping):
        raise InceptionLayoutError(
            f"{path} holds a {type(state).__name__}, not a state dict (name -> tensor); "
            f"expected torch-fidelity's Inception-v3 weights {WEIGHTS_FILE_NAMES[0]}"
        )
    return dict(state)


def _checked_extractor(path: Path) -> nn.Module:
    """torch-fidelity's extractor loaded from ``path``, its layout checked first."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise ImportError(f"FID/KID need torch-fidelity: {INSTALL_HINT}") from None
    state = _read_state_dict(path)

    class CheckedInceptionV3(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            expected = self.state_dict()  # the network is built when its constructor loads
            problems = state_dict_mismatch(expected, state)
            if problems:
                raise InceptionLayoutError(f"{path} is not Inception-v3 FID weights: "
                                           f"{problems}; {_describe_layout(expected)}")
            return super().load_state_dict(state, strict=strict, assign=assign)

    # It reads the file itself (a second read; the first proved it holds only tensors).
    return CheckedInceptionV3("inception-v3-compat", ["2048"],
                              feature_extractor_weights_path=str(path))


class InceptionFeatures(nn.Module):
    """2048-d Inception-v3 pool features of images or of their patches (frozen, eval mode).

    ``weights``: a file (``--inception-weights``); None: torch hub's cache. ``published``
    says whether the file's sha256 starts with :data:`PUBLISHED_SHA256_PREFIX`; when it
    does not, values computed with it are not comparable with published FID/KID.
    """

    def __init__(self, weights: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.path = find_inception_weights(weights)
        self.sha256 = file_sha256(self.path)
        self.published = self.sha256.startswith(PUBLISHED_SHA256_PREFIX)
        self.network = _checked_extractor(self.path).to(device).requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """``(N, 3, h, w)`` RGB in [0, 1] -> ``(N, 2048)`` float32 (rounded to uint8 first)."""
        pixels = (images.to(self.device).clamp(0, 1) * 255).round().to(torch.uint8)
        (features,) = self.network(pixels)
        return features

    @torch.no_grad()
    def patch_features(self, frames: Tensor, size: int = PATCH_SIZE,
                       batch: int = 16) -> np.ndarray:
        """Features of every :func:`patches` patch of ``frames`` ``(B, 3, H, W)``: ``(N, 2048)``."""
        cut = patches(frames, size)
        out = [self(cut[start:start + batch]).cpu().numpy()
               for start in range(0, len(cut), batch)]
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


# ---------------------------------------------------------------------------
# the set-level accumulator


class PatchFIDKID:
    """FID/256 and KID/256 of a set of (real, fake) frames.

    ``update(real, fake)`` cuts both into :func:`patches` and keeps their Inception
    features; ``add(real_features, fake_features)`` takes features computed elsewhere (e.g.
    read back from disk); ``compute()`` scores everything added so far.
    """

    def __init__(self, extractor: InceptionFeatures | None = None, size: int = PATCH_SIZE):
        self.extractor, self.size = extractor, size
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    def update(self, real: Tensor, fake: Tensor) -> int:
        """Add frames ``(B, 3, H, W)`` in [0, 1]; returns the patches added per side."""
        if self.extractor is None:
            raise ValueError("PatchFIDKID without an extractor only takes features (add)")
        if real.shape != fake.shape:
            raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
        real_features = self.extractor.patch_features(real, self.size)
        self.add(real_features, self.extractor.patch_features(fake, self.size))
        return len(real_features)

    def add(self, real: Any, fake: Any) -> None:
        self.real.append(np.asarray(real, np.float32).reshape(-1, FEATURE_DIM))
        self.fake.append(np.asarray(fake, np.float32).reshape(-1, FEATURE_DIM))

    @property
    def patches(self) -> tuple[int, int]:
        return sum(map(len, self.real)), sum(map(len, self.fake))

    def compute(self, metrics: Iterable[str] = ("fid", "kid")) -> dict[str, float]:
        """``{"fid", "kid", "kid_std"}`` (those asked for); ValueError with fewer than 2
        patches per side."""
        metrics = set(metrics)
        unknown = metrics - {"fid", "kid"}
        if unknown:
            raise ValueError(f"unknown set metrics {sorted(unknown)}; choose fid, kid")
        real_count, fake_count = self.patches
        if min(real_count, fake_count) < 2:
            raise ValueError(f"FID/KID need at least 2 patches per set, got {real_count} real "
                             f"and {fake_count} fake")
        real, fake = np.concatenate(self.real), np.concatenate(self.fake)
        scores = {}
        if "fid" in metrics:
            scores["fid"] = fid_from_features(real, fake)
        if "kid" in metrics:
            scores["kid"], scores["kid_std"] = kid(real, fake)
        return scores
