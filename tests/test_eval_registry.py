"""The metric registry (enhancer/eval/registry.py): a metric declared there, and nowhere
else, is scored, written to results.json/.csv, averaged, BD-rated, printed, plotted and
shown in report.html."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from test_html_report import Page

from enhancer.eval import registry
from enhancer.eval.html_report import render_html_report
from enhancer.eval.plots import plot_curves
from enhancer.eval.registry import MetricInfo, expand_metrics, metric_choices
from enhancer.eval.report import EvalReport
from enhancer.eval.results import ResultsStore, columns, summarize
from enhancer.eval.scoring import FrameScorer, StreamStats


def _mean_abs_error(output, truth):
    return (output - truth).abs().mean(dim=(1, 2, 3))


DUMMY = MetricInfo("dummy_mae", "MAE", "mean |output - truth|, lower is better", 3,
                   lower_is_better=True, cost="fast", plot=("rd_dummy_mae.png", "MAE"),
                   bd_rate=True, printed=True, function=_mean_abs_error, compressai_key="mae")


@pytest.fixture
def dummy_metric():
    registry.register(DUMMY)
    try:
        yield DUMMY
    finally:
        registry.unregister(DUMMY.name)


def _rows(scorer: FrameScorer) -> list[dict]:
    """Two rate points x decoded/enhanced of one sequence, scored for real."""
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(1, 3, 32, 32, generator=generator)
    rows = []
    for quality, bpp, noise in ((1, 0.2, 0.2), (2, 0.4, 0.1)):
        for variant, scale in (("decoded", 1.0), ("enhanced", 0.5)):
            stats = StreamStats(scorer)
            output = (truth + scale * noise * torch.randn(truth.shape, generator=generator))
            stats.add(output.clamp(0, 1), truth)
            enhanced = variant == "enhanced"
            rows.append({"sequence": "s", "codec": "c", "quality": quality, "variant": variant,
                         "label": "e" if enhanced else None, "enhancer": "e" if enhanced else None,
                         "steps": 1 if enhanced else None,
                         "residual_scale": 1.0 if enhanced else None, "frames": 1,
                         "width": 32, "height": 32, "intra_period": -1, "bpp": bpp,
                         **stats.means()})
    return rows


def test_a_registered_metric_reaches_every_reader(dummy_metric, tmp_path):
    assert "dummy_mae" in expand_metrics(["fast"]) and "dummy_mae" in metric_choices()
    scorer = FrameScorer(("psnr_rgb", "dummy_mae"), "cpu", log=lambda _: None)
    output, truth = torch.full((1, 3, 32, 32), 0.25), torch.full((1, 3, 32, 32), 0.5)
    assert scorer(output, truth)["dummy_mae"] == pytest.approx(0.25)

    rows = _rows(scorer)
    with ResultsStore(tmp_path) as store:
        store.upsert(rows)
        summary = summarize(store.rows)
        store.save(summary)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert "dummy_mae" in stored["columns"] and "dummy_mae" in columns()
    assert all(isinstance(row["dummy_mae"], float) for row in stored["rows"])
    with open(tmp_path / "results.csv") as file:
        assert "dummy_mae" in next(csv.reader(file))
    assert all(average["dummy_mae"] is not None for average in summary["averages"])
    bd = [b for b in summary["bd_rate"] if b["metric"] == "dummy_mae" and b["sequence"] == "s"]
    assert len(bd) == 1 and bd[0]["bd_rate_percent"] < 0  # less noise: fewer bits for it

    report = EvalReport(tmp_path, rows, summary, [], [], [], [], 0, False)
    header = report.format().splitlines()[0]
    assert header.split()[-2] == "MAE"  # the last metric column, before "seqs"

    plots = plot_curves(summary["averages"], tmp_path / "plots")
    assert tmp_path / "plots" / "rd_dummy_mae.png" in plots

    page = render_html_report(tmp_path, {}, rows, summary, plots)
    assert 'title="mean |output - truth|, lower is better">MAE</th>' in page
    assert ">MAE %</th>" in page  # the BD-rate table
    tables = Page(page).tables
    mae_column = len(tables["summary-table"][0]) - 1  # the last column with values
    assert tables["summary-table"][0][mae_column] == f"{summary['averages'][0]['dummy_mae']:.3f}"


def test_an_unregistered_metric_is_gone_and_unknown_names_are_refused(dummy_metric):
    registry.unregister(DUMMY.name)
    try:
        assert "dummy_mae" not in columns() and "dummy_mae" not in metric_choices()
        with pytest.raises(ValueError, match="unknown metrics \\['dummy_mae'\\]"):
            FrameScorer(("dummy_mae",), "cpu")
        with pytest.raises(KeyError, match="unknown metric 'dummy_mae'; registered: bpp"):
            registry.unregister("dummy_mae")
    finally:
        registry.register(DUMMY)  # the fixture removes it


def test_a_declaration_is_checked(dummy_metric):
    with pytest.raises(ValueError, match="'dummy_mae' is already registered"):
        registry.register(DUMMY)
    with pytest.raises(ValueError, match="cost 'slow' is not one of"):
        MetricInfo("x", "x", "x", 2, cost="slow")
    with pytest.raises(ValueError, match="a BD-rate needs lower_is_better"):
        MetricInfo("x", "x", "x", 2, bd_rate=True)
