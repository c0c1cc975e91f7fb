"""``report.html``: one static page per evaluation folder, made from what the run wrote.

Sections, in order::

    settings      codec, rate points, intra period, crop, seed, metrics; enhancers; sequences;
                  links to results.json/.csv, summary.json, settings.json, compressai/*.json
    summary       averages over sequences (summary.json), then the BD-rates vs decoded
    plots         plots/*.png (rate-distortion and rate-perception curves)
    crops         crops/*.png under a before/after slider (decoded | enhanced by default;
                  any two panels of the crop can be picked), and the whole crop strip
    videos        videos/*.mp4 in HTML5 <video>
    rows          every row of results.json (sequence x rate point x variant, error rows too)

One file: the page's frame, its CSS and the few lines of JavaScript (the slider, sortable
tables) are the template ``templates/report.html`` (shipped with the package; ``${name}``
placeholders filled with :class:`string.Template`), inlined into the page; images and videos are relative links to files already in the folder, so the folder can be
copied, zipped or opened offline (no server, no CDN). Every text is escaped. The page is
rewritten atomically at the end of every run, resumed ones included
(:func:`enhancer.eval.runner.evaluate_sequences`); without JavaScript the tables and the
default comparison still show.

Column headers, tooltips and digits come from :mod:`enhancer.eval.registry`, read at call time.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from enhancer.data.paths import check_file_target, write_atomic_text
from enhancer.eval.plots import read_panels
from enhancer.eval.registry import METRICS, bd_metrics, names, row_metrics
from enhancer.eval.results import crop_path, curve_label, video_path

REPORT_NAME = "report.html"
TEMPLATE = "templates/report.html"  # in this package: the page around the sections


def report_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / REPORT_NAME


def check_report_target(out_dir: str | Path) -> None:
    """Refuse, before any work, a ``report.html`` that could not be written at the end."""
    check_file_target(report_path(out_dir), "HTML report")


def write_html_report(out_dir: str | Path, settings: dict[str, Any], rows: list[dict[str, Any]],
                      summary: dict[str, Any], plots: list[Path], title: str = "") -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    ``settings``: what the run wrote to ``settings.json``; ``rows``: every row of
    ``results.json``; ``summary``: ``summary.json``'s payload; ``plots``: the plot PNGs.
    Crops and videos are those of ``rows`` that exist in ``out_dir``.
    """
    out_dir = Path(out_dir)
    path = report_path(out_dir)
    write_atomic_text(path, render_html_report(out_dir, settings, rows, summary, plots, title))
    return path


def render_html_report(out_dir: Path, settings: dict[str, Any], rows: list[dict[str, Any]],
                       summary: dict[str, Any], plots: list[Path], title: str = "") -> str:
    """The page :func:`write_html_report` writes, as text."""
    heading = f"Evaluation: {title}" if title else "Evaluation"
    untrained = any(r.get("untrained") for r in rows if r["variant"] == "enhanced")
    sections = [
        ("settings", "Settings", _settings_section(out_dir, settings)),
        ("summary", "Summary", _summary_section(summary)),
        ("plots", "Plots", _plots_section(out_dir, plots)),
        ("crops", "Crops", _crops_section(out_dir, rows)),
        ("videos", "Videos", _videos_section(out_dir, rows)),
        ("rows", "Per-sequence results", _rows_section(rows)),
    ]
    banners = []
    if untrained:
        banners.append('<p class="banner warn">UNTRAINED ENHANCER (random weights): the enhanced '
                       "numbers are plumbing only, not results.</p>")
    errors = summary.get("errors") or []
    if errors:
        banners.append(f'<p class="banner error">{len(errors)} sequence x rate point(s) failed: '
                       + "; ".join(_e(f"{e['sequence']} {e['codec']} q{e['quality']}: {e['error']}")
                                   for e in errors)
                       + (f' (see {_link(out_dir, out_dir / "errors.log")})'
                          if (out_dir / "errors.log").is_file() else "") + ".</p>")
    written = datetime.now().astimezone().isoformat(timespec="seconds")
    nav = " ".join(f'<a href="#{key}">{_e(name)}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}">\n<h2>{_e(name)}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    return _page_template().substitute(
        heading=_e(heading), written=_e(written), out_dir=_e(str(out_dir)), nav=nav,
        banners="".join(banners), body=body)


@cache
def _page_template() -> Template:
    """``templates/report.html``: the page with its CSS and JavaScript, sections left out."""
    return Template(resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))


# --- sections -----------------------------------------------------------------------------
def _settings_section(out_dir: Path, settings: dict[str, Any]) -> str:
    inception = settings.get("inception")
    fields = [
        ("codec", settings.get("codec")),
        ("rate points", ", ".join(str(q) for q in settings.get("qualities") or [])),
        ("intra period", settings.get("intra_period")),
        ("codec weights", settings.get("codec_checkpoint") or "-"),
        ("centre crop", f"{settings['crop'][1]}x{settings['crop'][0]} (WxH)"
         if settings.get("crop") else "full frames"),
        ("seed", settings.get("seed")),
        ("metrics", ", ".join(settings.get("metrics") or [])),
        ("reference curves", "; ".join(settings.get("references") or []) or "-"),
    ]
    if inception:
        fields.append(("Inception weights", f"{inception['path']} (sha256 {inception['sha256']}"
                       + (")" if inception.get("published") else ", not the published file)")))
    parts = ['<dl class="settings">' + "".join(
        f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in fields) + "</dl>"]
    enhancers = settings.get("enhancers") or []
    if enhancers:
        parts.append("<h3>Enhancers</h3>")
        parts.append(_table(
            ["enhancer", "steps", "residual scales", "sampling", "untrained"],
            [[e["label"], _join(e.get("steps")), _join(e.get("residual_scales")),
              "; ".join(_sampling_text(s) for s in e.get("sampling") or []),
              "UNTRAINED" if e.get("untrained") else "no"] for e in enhancers],
            table_id="enhancers"))
    else:
        parts.append("<p>No enhancer: codec rows only.</p>")
    parts.append("<h3>Sequences</h3>")
    parts.append(_table(["sequence", "path", "frames"],
                        [[s["name"], s["path"], s["frames"]]
                         for s in settings.get("sequences") or []],
                        table_id="sequences"))
    files = [out_dir / name for name in ("results.json", "results.csv", "summary.json",
                                         "settings.json", "errors.log")]
    files += sorted((out_dir / "compressai").glob("*.json"))
    links = [_link(out_dir, f) for f in files if f.is_file()]
    parts.append(f'<p class="files">Files: {", ".join(links)}</p>')
    return "\n".join(parts)


def _summary_section(summary: dict[str, Any]) -> str:
    averages = summary.get("averages") or []
    if not averages:
        return "<p>No results yet.</p>"
    row_columns = row_metrics()
    timings = [m for m in row_columns if m.endswith("_s_per_frame")]
    metrics = _present([*(m for m in row_columns if m not in timings), *names("set"), *timings],
                       averages)
    header = ["codec", "q", "variant", "sequences", *metrics]
    rows = []
    for avg in averages:
        rows.append([avg["codec"], avg["quality"], _variant_label(avg),
                     _Cell(avg["sequences"], title=", ".join(avg.get("sequence_names") or [])),
                     *(_number(avg.get(m), m) for m in metrics)])
    intro = ("<p>Mean over sequences of each metric, per codec, rate point and variant "
             "(summary.json); a mean is missing when a sequence lacks the metric.</p>")
    parts = [intro, _table(header, rows, table_id="summary-table", headers=_headers(header))]
    for note in dict.fromkeys(a["fid_note"] for a in averages if a.get("fid_note")):
        parts.append(f'<p class="note">FID/KID: {_e(note)}</p>')
    parts.append("<h3>BD-rate vs decoded</h3>")
    parts.append(_bd_table(summary.get("bd_rate") or []))
    return "\n".join(parts)


def _bd_table(bd_rates: list[dict[str, Any]]) -> str:
    metrics = [m for m in bd_metrics()
               if any(b["metric"] == m and b["bd_rate_percent"] is not None for b in bd_rates)]
    if not metrics:
        return ("<p>No BD-rate: it needs an enhancer and at least 2 rate points whose curves "
                "overlap.</p>")
    curves: dict[tuple, dict[str, Any]] = {}
    for bd in bd_rates:
        key = (bd["codec"], bd["enhancer"], bd.get("sampling") or bd["steps"],
               bd["residual_scale"], bd["frames"], bd["intra_period"], bd["sequence"])
        curves.setdefault(key, {"bd": bd})[bd["metric"]] = bd["bd_rate_percent"]
    ordered = sorted(curves.items(), key=lambda item: (
        [str(v) for v in item[0][:-1]], item[0][-1] != "average", item[0][-1]))
    rows = []
    for key, values in ordered:
        bd = values["bd"]
        label = curve_label({"variant": "enhanced", **bd})
        if bd.get("untrained"):
            label += " (UNTRAINED)"
        cells = [bd["codec"], label, _Cell(bd["sequence"], strong=bd["sequence"] == "average")]
        cells += [_number(values.get(m), "bd") for m in metrics]
        rows.append(cells)
    header = ["codec", "variant", "sequence", *metrics]
    headers = ["codec", "variant", "sequence"] + [
        (f"{METRICS[m].header} %", f"BD-rate in %: negative = fewer bits for the same {m}")
        for m in metrics]
    return ("<p>Bits the enhanced curve needs for the decoded curve's quality, in percent "
            "(negative: it saves bits). <em>average</em> is the mean over sequences.</p>"
            + _table(header, rows, table_id="bd-rate", headers=headers))


def _plots_section(out_dir: Path, plots: list[Path]) -> str:
    plots = [p for p in plots if p.is_file()]
    if not plots:
        return "<p>No plots (no metric with values).</p>"
    return '<div class="gallery">' + "".join(
        f'<figure><a href="{_url(out_dir, p)}"><img src="{_url(out_dir, p)}" '
        f'alt="{_e(p.stem)}" loading="lazy"></a><figcaption>{_e(p.name)}</figcaption></figure>'
        for p in plots) + "</div>"


def _crops_section(out_dir: Path, rows: list[dict[str, Any]]) -> str:
    crops = _unique((r for r in rows if r["variant"] != "error"),
                    lambda row: crop_path(out_dir, row))
    crops = [(unit, path) for unit, path in crops if path.is_file()]
    if not crops:
        return "<p>No crops.</p>"
    figures = []
    for unit, path in crops:
        caption = f"{unit['sequence']} {unit['codec']} q{unit['quality']}, middle frame"
        panels = read_panels(path)
        compare = _compare(out_dir, path, panels) if panels and len(panels) >= 2 else ""
        figures.append(
            f'<figure class="crop"><figcaption>{_e(caption)}</figcaption>{compare}'
            f'<a href="{_url(out_dir, path)}"><img class="strip" src="{_url(out_dir, path)}" '
            f'alt="{_e(caption)}: ground truth, decoded and enhanced crops" loading="lazy"></a>'
            "</figure>")
    return ("<p>Centre crops of the middle frame. Drag across the image to compare: left of the "
            "line is <em>before</em>, right of it <em>after</em>; the lists pick the panels. "
            "Below, the whole strip (ground truth | decoded | each enhanced variant).</p>"
            + "\n".join(figures))


def _compare(out_dir: Path, path: Path, panels: list[dict[str, Any]]) -> str:
    """A before/after slider over two panels of one crop image (CSS sprites: no new files)."""
    labels = [p["label"] for p in panels]
    before = next((i for i, label in enumerate(labels) if label.startswith("decoded")), 0)
    after = before + 1 if before + 1 < len(panels) else next(
        i for i in range(len(panels)) if i != before)  # no enhancer: decoded vs ground truth
    width, height = panels[0]["width"], panels[0]["height"]
    zoom = max(1, min(4, 384 // max(width, 1)))
    url = _relative(out_dir, path)  # escaped with the style it goes in
    image_w, image_h = _image_size(panels)

    def layer(kind: str, index: int) -> str:
        panel = panels[index]
        style = (f"background-image:url({url});background-size:{image_w * zoom}px "
                 f"{image_h * zoom}px;background-position:{-panel['x'] * zoom}px "
                 f"{-panel['y'] * zoom}px")
        if kind == "after":
            style += ";clip-path:inset(0 0 0 50%)"
        return f'<div class="layer {kind}" style="{_e(style)}"></div>'

    def options(selected: int) -> str:
        return "".join(
            f'<option value="{i}" data-x="{p["x"]}" data-y="{p["y"]}"'
            f'{" selected" if i == selected else ""}>{_e(p["label"])}</option>'
            for i, p in enumerate(panels))

    return (
        f'<div class="compare" data-zoom="{zoom}" style="width:{width * zoom}px;'
        f'height:{height * zoom}px">{layer("before", before)}{layer("after", after)}'
        f'<div class="divider"></div><span class="tag left">{_e(labels[before])}</span>'
        f'<span class="tag right">{_e(labels[after])}</span>'
        '<input type="range" min="0" max="100" value="50" step="0.5" '
        'aria-label="before/after split"></div>'
        f'<div class="picks"><label>before <select class="pick-before">{options(before)}'
        f'</select></label> <label>after <select class="pick-after">{options(after)}</select>'
        f"</label> <span class=\"zoom\">{zoom}x, pixels as coded</span></div>")


def _videos_section(out_dir: Path, rows: list[dict[str, Any]]) -> str:
    videos = _unique((r for r in rows if r["variant"] == "enhanced"),
                     lambda row: video_path(out_dir, row))
    videos = [(row, path) for row, path in videos if path.is_file()]
    if not videos:
        return "<p>No videos (they are written for one rate point, first variant).</p>"
    figures = []
    for row, path in videos:
        zoom = max(1, min(4, 384 // max(row["width"] or 1, 1)))
        caption = (f"{row['sequence']} {row['codec']} q{row['quality']}, "
                   f"{curve_label(row)}, {row['frames']} frames")
        figures.append(
            f'<figure><video controls loop muted playsinline preload="metadata" '
            f'width="{(row["width"] or 0) * zoom}" src="{_url(out_dir, path)}"></video>'
            f'<figcaption>{_e(caption)} ({_link(out_dir, path)})</figcaption></figure>')
    return '<div class="gallery">' + "".join(figures) + "</div>"


def _rows_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No rows.</p>"
    metrics = _present(list(row_metrics()), rows)
    with_error = any(r["variant"] == "error" for r in rows)
    header = ["sequence", "codec", "q", "variant", "frames", "size", *metrics]
    table_rows = []
    for row in rows:
        cells = [row["sequence"], row["codec"], row["quality"], _variant_label(row),
                 row.get("frames"), f"{row.get('width')}x{row.get('height')}",
                 *(_number(row.get(m), m) for m in metrics)]
        if with_error:
            cells.append(row.get("error") or "")
        table_rows.append(_Row(cells, css="error" if row["variant"] == "error" else ""))
    header_cells = _headers(header) + (["error"] if with_error else [])
    return ("<p>Every row of results.json: one per sequence x rate point x variant. Click a "
            "column to sort.</p>"
            + _table(header + (["error"] if with_error else []), table_rows, table_id="results",
                     headers=header_cells))


# --- helpers ------------------------------------------------------------------------------
class _Cell:
    """A table cell: its text, the raw value tables sort on, a tooltip."""

    def __init__(self, text: Any, value: Any = None, title: str = "", strong: bool = False):
        self.text, self.value, self.title, self.strong = text, value, title, strong


class _Row:
    def __init__(self, cells: list[Any], css: str = ""):
        self.cells, self.css = cells, css


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def _relative(out_dir: Path, path: Path) -> str:
    """``path`` as a relative, percent-quoted URL from the report."""
    return quote(path.relative_to(out_dir).as_posix())


def _url(out_dir: Path, path: Path) -> str:
    """:func:`_relative`, escaped for an attribute."""
    return _e(_relative(out_dir, path))


def _link(out_dir: Path, path: Path) -> str:
    return f'<a href="{_url(out_dir, path)}">{_e(path.relative_to(out_dir).as_posix())}</a>'


def _join(values: Iterable[Any] | None) -> str:
    return ", ".join("default" if v is None else str(v) for v in values or [])


def _sampling_text(sampling: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sampling.items())


def _variant_label(row: dict[str, Any]) -> str:
    """The variant as tables name it (plots and CompressAI files use the same label)."""
    if row["variant"] == "error":
        return "error"
    label = curve_label(row)
    return f"{label} (UNTRAINED)" if row["variant"] == "enhanced" and row.get("untrained") else label


def _present(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The columns with a value in at least one row."""
    return [c for c in columns if any(r.get(c) is not None for r in rows)]


def _headers(columns: list[str]) -> list[Any]:
    return [(METRICS[c].header, METRICS[c].description) if c in METRICS else c
            for c in columns]


def _number(value: Any, column: str) -> _Cell:
    digits = 2 if column == "bd" else METRICS[column].digits
    if value is None:
        return _Cell("-", "")
    return _Cell(f"{value:.{digits}f}", value)


def _unique(rows: Iterable[dict[str, Any]],
            path_of: Callable[[dict[str, Any]], Path]) -> list[tuple[dict[str, Any], Path]]:
    """``(first row, path)`` for each distinct ``path_of(row)``, in row order."""
    first: dict[Path, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(path_of(row), row)
    return [(row, path) for path, row in first.items()]


def _image_size(panels: list[dict[str, Any]]) -> tuple[int, int]:
    """The crop image's size, from its panels (they tile it left to right)."""
    last = panels[-1]
    return last["x"] + last["width"], last["y"] + last["height"]


def _table(columns: list[str], rows: list[Any], table_id: str,
           headers: list[Any] | None = None) -> str:
    head = []
    for header in headers or columns:
        text, title = header if isinstance(header, tuple) else (header, "")
        head.append(f'<th scope="col" title="{_e(title)}">{_e(text)}</th>' if title
                    else f'<th scope="col">{_e(text)}</th>')
    body = []
    for row in rows:
        row = row if isinstance(row, _Row) else _Row(row)
        cells = []
        for cell in row.cells:
            cell = cell if isinstance(cell, _Cell) else _Cell(cell)
            attributes = ""
            if cell.value not in (None, ""):
                attributes += f' data-value="{_e(cell.value)}" class="num"'
            elif cell.value == "":
                attributes += ' data-value="" class="num"'
            if cell.title:
                attributes += f' title="{_e(cell.title)}"'
            text = _e(cell.text)
            cells.append(f"<td{attributes}>{f'<strong>{text}</strong>' if cell.strong else text}</td>")
        css = f' class="{_e(row.css)}"' if row.css else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table id="{_e(table_id)}" class="sortable"><thead><tr>'
            f"{''.join(head)}</tr></thead><tbody>\n" + "\n".join(body)
            + "\n</tbody></table></div>")
