"""report.html: one real evaluation (tools/eval_uvg.py on two tiny real clips, x264 at two
rates, a random-weights enhancer at two residual scales), its links, tables and escaping;
then the page in headless Chromium (no console errors, every row after the scripts ran,
the before/after slider and the table sorting)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlparse

import pytest
from conftest import REPO, requires_shared_data
from test_eval import CISCO, save_random_enhancer, write_tiny_yuv

from enhancer.cli import run_cli
from enhancer.eval.html_report import REPORT_NAME
from enhancer.eval.plots import read_panels
from enhancer.eval.results import curve_label

sys.path.insert(0, str(REPO / "tools"))
import eval_uvg

# A label with every character HTML cares about: the report must show it as text.
ENHANCER_NAME = """rand<b>&"q'"""
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (apt-get install chromium): the browser checks of "
           "report.html are skipped")


class Page(HTMLParser):
    """What the tests read from a page: every referenced URL, scripts, tables' cell texts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.script_sources: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.tag_texts: list[str] = []
        self.ready = False
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None
        self._tag: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html" and attrs.get("data-ready") == "1":
            self.ready = True
        for name in ("src", "href"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        self.urls += re.findall(r"url\(([^)]*)\)", attrs.get("style") or "")
        if tag == "script":
            self.script_sources.append(attrs.get("src") or "")
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "span" and "tag" in (attrs.get("class") or ""):
            self._tag = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "span" and self._tag is not None:
            self.tag_texts.append("".join(self._tag))
            self._tag = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._tag is not None:
            self._tag.append(data)


def row_label(row: dict) -> str:
    return "error" if row["variant"] == "error" else curve_label(row)


class Evaluation(NamedTuple):
    out: Path  # the --out folder
    argv: list[str]  # tools/eval_uvg.py's arguments


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Evaluation:
    """The cheapest real evaluation with everything a report shows (~3 s on one core)."""
    if not CISCO.is_file():
        pytest.skip(f"real test material not found at {CISCO}")
    tmp = tmp_path_factory.mktemp("html_report")
    root = tmp / "uvg"
    root.mkdir()
    write_tiny_yuv(root, "Talk", 0)
    write_tiny_yuv(root, "Later", 2)
    checkpoint = save_random_enhancer(tmp / f"{ENHANCER_NAME}.pt", "x264", 30)
    out = tmp / "out"
    argv = ["--root", str(root), "--codec", "x264", "--quality", "30", "40",
            "--enhancer", str(checkpoint), "--frames", "2", "--intra-period", "-1",
            "--steps", "1", "--residual-scale", "0", "1", "--crop", "128x96",
            "--out", str(out), "--quiet", "--metrics", "psnr_rgb", "ssim"]  # the fast ones
    assert run_cli(eval_uvg.main, argv) == 0
    return Evaluation(out, argv)


def read(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


@requires_shared_data
def test_report_links_tables_and_escaping(evaluation):
    out = evaluation.out
    text = (out / REPORT_NAME).read_text()
    page = Page(text)
    # One file: inline CSS and JS, relative links to files of the folder, nothing remote.
    assert page.script_sources == [""] and "<link" not in text and "@import" not in text
    local = [u for u in page.urls if not u.startswith("#")]
    for url in local:
        parsed = urlparse(url)
        assert not parsed.scheme and not parsed.netloc and not url.startswith("/"), url
        assert (out / unquote(parsed.path)).is_file(), f"{url} is not a file of {out}"
    referenced = {unquote(u) for u in local}
    for folder, suffix in (("plots", ".png"), ("crops", ".png"), ("videos", ".mp4")):
        files = sorted((out / folder).glob(f"*{suffix}"))
        assert files and {f"{folder}/{f.name}" for f in files} <= referenced, folder
    assert {"results.json", "results.csv", "summary.json", "settings.json"} <= referenced
    assert text.count("<video ") == 2  # one MP4 per sequence, at the middle rate point
    # Every results row (sequence x rate point x variant), and the summary.
    rows = read(out, "results.json")["rows"]
    assert len(rows) == 12
    shown = {(r[0], r[2], r[3]) for r in page.tables["results"]}
    assert len(page.tables["results"]) == 12
    assert shown == {(r["sequence"], str(r["quality"]), row_label(r)) for r in rows}
    summary = read(out, "summary.json")
    shown = [(r[1], r[2], r[4]) for r in page.tables["summary-table"]]
    assert shown == [(str(a["quality"]), curve_label(a), f"{a['bpp']:.4f}")
                     for a in summary["averages"]]
    averages = [b for b in summary["bd_rate"] if b["sequence"] == "average"
                and b["metric"] == "psnr_rgb"]
    bd_rows = [r for r in page.tables["bd-rate"] if r[2] == "average"]
    assert len(bd_rows) == len(averages) == 2
    assert sorted(r[3] for r in bd_rows) == sorted(f"{b['bd_rate_percent']:.2f}" for b in averages)
    assert [r[0] for r in page.tables["sequences"]] == ["Later", "Talk"]
    # The enhancer's label is text everywhere, never markup.
    assert "<b>" not in text and html.escape(ENHANCER_NAME) in text
    assert page.tables["enhancers"][0][0] == ENHANCER_NAME
    assert ENHANCER_NAME + " (1 step, strength 0)" in {r[3] for r in page.tables["results"]}
    # The slider starts on decoded | first enhanced variant.
    assert page.tag_texts[:2] == ["decoded q30", f"{ENHANCER_NAME} (1 step, strength 0)"]


@requires_shared_data
def test_report_is_rewritten_on_resume(evaluation, capsys):
    out = evaluation.out
    before = Page((out / REPORT_NAME).read_text()).tables["results"]
    (out / REPORT_NAME).unlink()
    capsys.readouterr()
    # Rerun the same evaluation: every unit is skipped, the report comes back whole.
    assert run_cli(eval_uvg.main, evaluation.argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip ") == 4 and f"report:  {out / REPORT_NAME}" in printed
    assert Page((out / REPORT_NAME).read_text()).tables["results"] == before


@requires_shared_data
def test_a_report_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    if not CISCO.is_file():
        pytest.skip(f"real test material not found at {CISCO}")
    root = tmp_path / "uvg"
    root.mkdir()
    write_tiny_yuv(root, "Talk", 0)
    out = tmp_path / "out"
    (out / REPORT_NAME).mkdir(parents=True)  # a folder where the page would go
    assert run_cli(eval_uvg.main, ["--root", str(root), "--codec", "x264", "--quality", "30",
                                   "--frames", "2", "--out", str(out)]) == 2
    assert f"{out / REPORT_NAME} is a folder" in capsys.readouterr().err
    assert not (out / "results.json").exists()


# --- in a browser ---------------------------------------------------------------------------
def chromium_dom(page: Path, profile: Path) -> tuple[str, list[str]]:
    """``page`` in headless Chromium: the DOM after its scripts ran, and its console lines."""
    result = subprocess.run(
        [CHROMIUM, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


@needs_chromium
@requires_shared_data
def test_report_renders_in_chromium(evaluation, tmp_path):
    out = evaluation.out
    dom, console = chromium_dom(out / REPORT_NAME, tmp_path / "profile")
    assert console == []  # no script error, no console message at all
    page = Page(dom)
    assert page.ready, "the page's script did not run to its end"
    rows = read(out, "results.json")["rows"]
    assert {(r[0], r[2], r[3]) for r in page.tables["results"]} == {
        (r["sequence"], str(r["quality"]), row_label(r)) for r in rows}
    assert len(page.tables["summary-table"]) == len(read(out, "summary.json")["averages"])


# Run after the page's own script: drive the slider, the panel lists and a column header, and
# write what the page then shows into the DOM.
PROBE = """<script>
const figure = document.querySelector("figure.crop");
const range = figure.querySelector("input[type=range]");
range.value = "25";
range.dispatchEvent(new Event("input"));
const before = figure.querySelector(".pick-before");
before.value = "0";
before.dispatchEvent(new Event("change"));
const bpp = Array.from(document.querySelectorAll("#results th")).find((th) => th.textContent === "bpp");
bpp.click();
const probe = document.createElement("pre");
probe.id = "probe";
probe.textContent = JSON.stringify({
  clip: figure.querySelector(".layer.after").style.clipPath,
  divider: figure.querySelector(".divider").style.left,
  beforePosition: figure.querySelector(".layer.before").style.backgroundPosition,
  beforeTag: figure.querySelector(".tag.left").textContent,
  bpp: Array.from(document.querySelectorAll("#results tbody tr")).map(
    (row) => row.cells[bpp.cellIndex].dataset.value),
});
document.body.appendChild(probe);
</script>"""


@needs_chromium
@requires_shared_data
def test_slider_and_sorting_in_chromium(evaluation, tmp_path):
    out = evaluation.out
    probe_page = out / "probe.html"  # next to report.html, so its relative links hold
    probe_page.write_text((out / REPORT_NAME).read_text().replace("</body>", PROBE + "</body>"))
    try:
        dom, console = chromium_dom(probe_page, tmp_path / "profile")
    finally:
        probe_page.unlink()
    assert console == []
    (probe,) = re.findall(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    probe = json.loads(html.unescape(probe))
    assert probe["clip"] == "inset(0px 0px 0px 25%)" and probe["divider"] == "25%"
    # panel 0 (ground truth) at zoom 3, below its label band (as tall as the wrapped labels)
    label_bands = {read_panels(crop)[0]["y"] for crop in (out / "crops").glob("*.png")}
    assert probe["beforePosition"] in {f"0px -{3 * y}px" for y in label_bands}
    assert probe["beforeTag"] == "ground truth"
    assert [float(v) for v in probe["bpp"]] == sorted(float(v) for v in probe["bpp"])
