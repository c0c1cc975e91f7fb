"""What an evaluation run produced, and its printed summary table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enhancer.eval.registry import METRICS, printed_metrics
from enhancer.eval.results import curve_label

STAGES = ("coding", "enhancing", "scoring")


@dataclass
class StageTiming:
    """Where an evaluation's time went: seconds per stage over the frames this process ran
    (coding: encode + decode; enhancing: every variant; scoring: every metric of every
    output)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    frames: int = 0  # sequence frames x rate points run (not resumed ones)

    def add(self, seconds: dict[str, float], frames: int) -> None:
        for stage, value in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + value
        self.frames += frames

    def merged(self, other: StageTiming) -> StageTiming:
        total = StageTiming(dict(self.seconds), self.frames)
        total.add(other.seconds, other.frames)
        return total

    def format(self) -> str:
        """``seconds per frame: coding 0.52, enhancing 0.70, scoring 0.40 (48 frames)``."""
        if not self.frames:
            return "seconds per frame: nothing run (all resumed)"
        parts = ", ".join(f"{stage} {self.seconds.get(stage, 0.0) / self.frames:.2f}"
                          for stage in STAGES)
        return f"seconds per frame: {parts} ({self.frames} frames x rate points)"


PRINTED_BD_RATES = ("psnr_rgb", "lpips_alex")  # the BD-rates the printed summary gives


def metric_table(averages: list[tuple[str, dict[str, Any]]], columns: tuple[str, ...]
                 ) -> list[str]:
    """Printed lines: ``codec q variant <columns> seqs`` for each ``(codec, average)``,
    headers and digits from :mod:`enhancer.eval.registry`, variants named for people."""
    width = max([len(curve_label(avg)) for _, avg in averages] + [20]) + 2
    codec_width = max([len(codec) for codec, _ in averages] + [5]) + 2
    sizes = [max(len(METRICS[c].header), METRICS[c].digits + 4) + 2 for c in columns]
    lines = [f"{'codec':<{codec_width}}{'q':>4}  {'variant':<{width}}"
             + "".join(f"{METRICS[c].header:>{size}}" for c, size in zip(columns, sizes))
             + f"{'seqs':>6}"]
    for codec, avg in averages:
        lines.append(f"{codec:<{codec_width}}{avg['quality']:>4}  {curve_label(avg):<{width}}"
                     + "".join(f"{_fmt(avg.get(c), METRICS[c].digits):>{size}}"
                               for c, size in zip(columns, sizes))
                     + f"{avg['sequences']:>6}")
    return lines


def format_duration(seconds: float) -> str:
    """``2 min 31 s`` / ``48.2 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


@dataclass
class EvalReport:
    """What a run produced; ``rows`` holds every row in ``results.json`` (earlier runs too;
    on a torchrun job's other ranks, only the rows of their share)."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    plots: list[Path]
    crops: list[Path]
    videos: list[Path]
    errors: list[str]
    skipped: int
    untrained: bool
    html: Path | None = None  # report.html
    rank: int = 0  # a torchrun job's other ranks report their share only; rank 0 merges
    timing: StageTiming = field(default_factory=StageTiming)  # this process's units

    @property
    def exit_code(self) -> int:
        """1 when a unit failed, else 0. Only rank 0 says so for a torchrun job: torchrun
        stops every rank as soon as one exits non-zero, which could cut rank 0's merge short."""
        return 1 if self.errors and self.rank == 0 else 0

    def format(self) -> str:
        """A short human-readable table of the averages and BD-rates, and where files are."""
        if self.rank != 0:
            done = len({(r["sequence"], r["codec"], r["quality"]) for r in self.rows})
            return (f"rank {self.rank}: evaluated {done} sequence x rate points "
                    f"({len(self.errors)} failed), skipped {self.skipped}; rank 0 merges "
                    f"them into {self.out_dir / 'results.json'}")
        lines = []
        if self.untrained:
            lines.append("!! UNTRAINED ENHANCER (random weights): enhanced numbers are plumbing "
                         "only, not results !!")
        averages = self.summary["averages"]
        set_level = any("fid" in a or "kid" in a for a in averages)  # asked for this run
        columns = tuple(name for name in printed_metrics()
                        if set_level or METRICS[name].cost != "set")
        lines.extend(metric_table([(avg["codec"], avg) for avg in averages], columns))
        for note in dict.fromkeys(a["fid_note"] for a in averages if a.get("fid_note")):
            lines.append(f"FID/KID: {note}")
        for bd in self.summary["bd_rate"]:
            if bd["sequence"] == "average" and bd["metric"] in PRINTED_BD_RATES:
                lines.append(
                    f"BD-rate {bd['metric']:<10} {curve_label(bd | {'variant': 'enhanced'})} "
                    f"vs decoded: {_fmt(bd['bd_rate_percent'], 2)} %"
                )
        lines.append(self.timing.format())
        lines.append(f"results: {self.out_dir / 'results.json'} (and .csv, summary.json)")
        if self.html is not None:
            lines.append(f"report:  {self.html} (open it in a browser)")
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
