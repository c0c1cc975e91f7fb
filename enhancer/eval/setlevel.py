"""Set-level metrics of an evaluation (FID/256 and KID/256, :mod:`enhancer.metrics.fid`).

FID and KID are not means of per-frame values: each (codec, rate point, variant) gets one
value over the patches of every frame of every sequence. So that a resumed run scores
exactly what one uninterrupted run would, every unit (sequence x rate point) stores the
Inception features it computed, next to ``results.json``::

    features/<sequence>_<W>x<H>_<frames>f_truth.npy      ground-truth patches  (N, 2048) float32
    features/<sequence>_<codec>_q<q>_<variant>_<hash>.npy  one per result row   (N, 2048) float32
    features/inception.json                              the weights' file and sha256

(``hash``: of the row's key, so every enhancer x sampling x residual scale has its own file.)
A unit counts as done only when its rows and, if FID/KID are asked for, its feature files
exist. The ground-truth features of a sequence are shared by its rate points. Size: 8 KB
per patch, 49 patches per 1080p frame, so ~400 KB per frame per stream (ground truth,
decoded, each variant); a 96-frame UVG sequence is ~38 MB per stream.

At the end of a run that asks for ``fid``/``kid``, :class:`SetScorer` concatenates the
stored features of each average's sequences (in name order) and scores them: the averages
in ``summary.json`` get ``fid``, ``kid``, ``kid_std``, ``fid_patches`` and, when a value is
null or not a real FID, ``fid_note`` saying why. Features made with other Inception weights
are refused (:func:`check_features_weights`): one folder, one network.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from enhancer.data.paths import write_atomic, write_atomic_text
from enhancer.eval.registry import names
from enhancer.eval.results import clean_number, row_key
from enhancer.metrics.fid import (
    FEATURE_DIM,
    PATCH_SIZE,
    PUBLISHED_SHA256_PREFIX,
    InceptionFeatures,
    PatchFIDKID,
)

SET_METRICS = names("set")  # declared in enhancer.eval.registry
SET_COLUMNS = ("fid", "kid", "kid_std", "fid_patches", "fid_note")
FEATURES_DIR = "features"
WEIGHTS_RECORD = "inception.json"


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def truth_features_path(out_dir: str | Path, row: dict[str, Any]) -> Path:
    """Where the ground-truth patch features of ``row``'s sequence (as cropped) are kept."""
    name = f"{row['sequence']}_{row['width']}x{row['height']}_{row['frames']}f_truth.npy"
    return Path(out_dir) / FEATURES_DIR / _label(name)


def row_features_path(out_dir: str | Path, row: dict[str, Any]) -> Path:
    """Where the patch features of ``row``'s output stream are kept."""
    key = json.dumps([clean_number(v) for v in row_key(row)])  # as stored: same after a reload
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    name = f"{row['sequence']}_{row['codec']}_q{row['quality']}_{row['variant']}_{digest}.npy"
    return Path(out_dir) / FEATURES_DIR / _label(name)


def save_features(path: Path, features: np.ndarray) -> None:
    """Write ``features`` ``(N, 2048)`` as float32 ``.npy``, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(features, np.float32).reshape(-1, FEATURE_DIM))
    write_atomic(path, buffer.getvalue())


def load_features(path: Path) -> np.ndarray | None:
    """The features in ``path``, or None when it does not exist."""
    if not path.is_file():
        return None
    features = np.load(path, allow_pickle=False)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise ValueError(f"{path} holds {features.shape}, not (N, {FEATURE_DIM}) features; "
                         f"delete it to have it recomputed")
    return features


def check_features_weights(out_dir: str | Path, extractor: InceptionFeatures) -> None:
    """Record the weights behind ``out_dir/features``; refuse a folder made with others."""
    record_path = Path(out_dir) / FEATURES_DIR / WEIGHTS_RECORD
    record = {"path": str(extractor.path), "sha256": extractor.sha256,
              "published": extractor.published}
    if record_path.is_file():
        stored = json.loads(record_path.read_text())
        if stored.get("sha256") != extractor.sha256:
            raise ValueError(
                f"{record_path.parent} holds Inception features made with {stored.get('path')} "
                f"(sha256 {str(stored.get('sha256'))[:12]}...), not {extractor.path} "
                f"(sha256 {extractor.sha256[:12]}...): FID/KID would mix two networks; pass "
                f"the same --inception-weights, delete {record_path.parent}, or pick another --out"
            )
        return
    write_atomic_text(record_path, json.dumps(record, indent=1) + "\n")


def _weights_note(out_dir: Path) -> str | None:
    record_path = out_dir / FEATURES_DIR / WEIGHTS_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if str(record.get("sha256", "")).startswith(PUBLISHED_SHA256_PREFIX):
        return None
    return (f"NOT FID/KID: Inception weights {record.get('path')} are not the published ones "
            f"(sha256 {str(record.get('sha256'))[:12]}..., the published file's name says "
            f"{PUBLISHED_SHA256_PREFIX}); plumbing only")


class SetScorer:
    """FID/KID of a group of result rows (one average) from their stored features.

    ``metrics``: the set metrics this run asked for (none: an empty dict, the summary
    gets no FID/KID keys). ``unavailable``: why this run could not compute features (the
    weights are missing), given as the note where features are absent.
    """

    def __init__(self, out_dir: str | Path, metrics: tuple[str, ...] | list[str],
                 unavailable: str | None = None):
        self.out_dir = Path(out_dir)
        self.metrics = tuple(m for m in SET_METRICS if m in metrics)
        self.unavailable = unavailable

    def __call__(self, members: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.metrics:
            return {}
        scores: dict[str, Any] = {name: None for name in SET_COLUMNS}
        members = sorted(members, key=lambda row: str(row["sequence"]))
        accumulator = PatchFIDKID()
        missing = []
        for row in members:
            real = load_features(truth_features_path(self.out_dir, row))
            fake = load_features(row_features_path(self.out_dir, row))
            if real is None or fake is None:
                missing.append(row["sequence"])
                continue
            if len(real) != len(fake):
                raise ValueError(f"{row_features_path(self.out_dir, row)} has {len(fake)} patches, "
                                 f"the ground truth {len(real)}; delete {FEATURES_DIR}/ to redo")
            accumulator.add(real, fake)
        patch_total = accumulator.patches[1]
        if missing:
            scores["fid_note"] = self.unavailable or (
                f"no Inception features for {', '.join(missing)} (scored without fid/kid); "
                "rerun with them in --metrics")
            return scores
        scores["fid_patches"] = patch_total
        if patch_total == 0:
            sizes = sorted({f"{r['width']}x{r['height']}" for r in members})
            scores["fid_note"] = (f"no {PATCH_SIZE}x{PATCH_SIZE} patch fits in {', '.join(sizes)} "
                                  f"frames: FID/KID need frames of at least {PATCH_SIZE} px a side")
            return scores
        if patch_total < 2:
            scores["fid_note"] = f"only {patch_total} patch: FID/KID need at least 2"
            return scores
        scores.update(accumulator.compute(self.metrics))
        scores["fid_note"] = _weights_note(self.out_dir)
        return scores
