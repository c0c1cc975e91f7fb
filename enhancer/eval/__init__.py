"""Evaluation: code sequences for real, enhance, score, and report (JSON/CSV, BD-rate, plots).

Modules: ``specs`` (enhancers to evaluate and their codec), ``registry`` (every metric,
declared once), ``scoring`` (metrics per frame, running means), ``runner`` (sequences x
rates, resume, error rows), ``report`` (the printed table), ``results`` (rows, averages,
BD-rates), ``plots`` (curves, crops),
``sequences`` (finding test sequences), ``sources`` (reading and checking them),
``tuning`` (sampling defaults), ``html_report`` (``report.html``: settings, tables, plots,
crops under a before/after slider, videos), ``ranks`` (one evaluation shared by torchrun's
processes).

Entry points: :func:`evaluate_sequences` (video, ``tools/eval_uvg.py``),
:func:`evaluate_images` (Kodak/DIV2K, ``tools/eval_images.py``), :func:`run_demo`
and :func:`bd_rate`.
"""

from enhancer.eval.bdrate import bd_rate
from enhancer.eval.demo import run_demo
from enhancer.eval.images import evaluate_images
from enhancer.eval.report import EvalReport
from enhancer.eval.results import ResultsStore, average_rows, bd_rates, summarize
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.sequences import (
    SequenceSpec,
    demo_clips,
    find_images,
    find_sequences,
    load_sequence_list,
)
from enhancer.eval.sources import check_sequences
from enhancer.eval.specs import EnhancerSpec, load_enhancer_spec, untrained_enhancer

__all__ = [
    "EnhancerSpec",
    "EvalReport",
    "EvalSettings",
    "ResultsStore",
    "SequenceSpec",
    "average_rows",
    "bd_rate",
    "bd_rates",
    "check_sequences",
    "demo_clips",
    "evaluate_images",
    "evaluate_sequences",
    "find_images",
    "find_sequences",
    "load_enhancer_spec",
    "load_sequence_list",
    "run_demo",
    "summarize",
    "untrained_enhancer",
]
