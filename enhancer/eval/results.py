"""Result rows, their JSON/CSV files (rewritten atomically after every unit of work, so a
run can resume), averages over sequences, and BD-rates of enhanced vs decoded.

One row = one sequence x codec x rate point x variant. ``variant`` is ``decoded``
(the codec's own output), ``enhanced`` (one enhancer, number of steps and residual
scale) or ``error`` (the sequence failed at that rate point; ``error`` says why).
Metrics a run could not compute are ``null`` (JSON) / empty (CSV). FID and KID are
set-level (one value over all sequences' patches), so they are not row columns: they are in
``summary.json``'s averages (:mod:`enhancer.eval.setlevel`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import weakref
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enhancer.data.paths import write_atomic_text
from enhancer.eval.bdrate import bd_rate
from enhancer.eval.registry import METRICS, bd_metrics, row_metrics

# A row's columns around its metrics (enhancer.eval.registry.row_metrics): what it is, then
# how it was run. ``strength_bytes``: the signalled strength maps' bytes (in bpp too).
ROW_HEAD = ("sequence", "codec", "quality", "variant", "label", "enhancer", "steps", "sampling",
            "residual_scale", "frames")
ROW_TAIL = ("strength_bytes", "width", "height", "intra_period", "untrained", "error", "notes")
# What identifies a row: a rerun with the same out dir skips rows with these values.
KEY = ("sequence", "codec", "quality", "variant", "enhancer", "steps", "sampling", "residual_scale",
       "frames", "width", "height", "intra_period")


def columns() -> tuple[str, ...]:
    """The columns of results.json/.csv: :data:`ROW_HEAD`, every registered row metric,
    :data:`ROW_TAIL`."""
    return (*ROW_HEAD, *row_metrics(), *ROW_TAIL)


def row_key(row: dict[str, Any]) -> tuple:
    key = tuple(row.get(name) for name in KEY)
    return tuple(float(v) if isinstance(v, float) else v for v in key)


def file_label(text: str) -> str:
    """``text`` as a file name: anything but letters, digits, ``-``, ``_`` and ``.`` -> ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def crop_path(out_dir: str | Path, row: dict[str, Any]) -> Path:
    """The side-by-side crop of ``row``'s unit (sequence x codec x rate point)."""
    return Path(out_dir) / "crops" / file_label(
        f"{row['sequence']}_{row['codec']}_q{row['quality']}.png")


def video_path(out_dir: str | Path, row: dict[str, Any]) -> Path:
    """The MP4 of an enhanced row's frames (written for one rate point, one variant)."""
    return Path(out_dir) / "videos" / file_label(
        f"{row['sequence']}_{row['codec']}_q{row['quality']}_{row['enhancer']}"
        f"_{row['steps']}steps_s{row['residual_scale']:g}.mp4")


def clean_number(value: Any) -> Any:
    """NaN/inf -> None so JSON stays valid; numbers rounded to 6 significant digits."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    return value


LOCK_NAME = ".results.lock"
_HELD: dict[str, list[int]] = {}  # resolved out_dir -> [lock fd, stores of this process]


def _lock_out_dir(out_dir: Path) -> str:
    """Take ``out_dir``'s lock for this process (an advisory ``flock``, dropped by the OS
    when the process ends); a second process gets a clear ``ValueError``."""
    key = str(out_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ValueError(
            f"{out_dir} is in use by another evaluation (pid {holder}); two runs on one --out "
            "would lose rows: wait for it to finish or pick another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = [fd, 1]
    return key


def _unlock_out_dir(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # releases the flock


class ResultsStore:
    """``results.json`` + ``results.csv`` in ``out_dir``: load, upsert rows, save.

    A store holds ``out_dir``'s lock from creation until :meth:`close` (or until it is
    garbage-collected, or the process ends): a second evaluation on the same folder is
    refused instead of overwriting the first one's rows.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.json_path = self.out_dir / "results.json"
        self.csv_path = self.out_dir / "results.csv"
        self._lock_key = _lock_out_dir(self.out_dir)
        self._finalizer = weakref.finalize(self, _unlock_out_dir, self._lock_key)
        try:  # read under the lock: no other run is rewriting it
            self.rows: list[dict[str, Any]] = stored_rows(self.out_dir)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release ``out_dir``'s lock (idempotent)."""
        self._finalizer()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Replace rows with the same key (and error rows of the same unit), append the rest."""
        new_keys = {row_key(row) for row in rows}
        units = {(r["sequence"], r["codec"], r["quality"]) for r in rows}
        self.rows = [
            row for row in self.rows
            if row_key(row) not in new_keys
            and not (row.get("variant") == "error"
                     and (row["sequence"], row["codec"], row["quality"]) in units)
        ]
        names = columns()
        self.rows.extend({name: clean_number(row.get(name)) for name in names} for row in rows)

    def save(self, summary: dict[str, Any] | None = None) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        names = columns()
        payload = {"columns": list(names), "rows": self.rows}
        write_atomic_text(self.json_path, json.dumps(payload, indent=1) + "\n")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in names})
        write_atomic_text(self.csv_path, buffer.getvalue())
        if summary is not None:
            write_atomic_text(self.out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")


def stored_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``out_dir/results.json`` (none when there is no such file), read
    without its lock."""
    path = Path(out_dir) / "results.json"
    return _read_rows(path) if path.is_file() else []


def done_keys(rows: list[dict[str, Any]]) -> set[tuple]:
    """The keys of ``rows`` that a rerun skips (all but error rows)."""
    return {row_key(row) for row in rows if row.get("variant") != "error"}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results.json, checked enough that resuming cannot fail later."""
    try:
        payload = json.loads(path.read_text())
        rows = payload["rows"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            f"cannot resume from {path}: {type(err).__name__}: {err}; delete it or pick "
            "another --out"
        ) from None
    required = ("sequence", "codec", "quality", "variant")
    for index, row in enumerate(rows if isinstance(rows, list) else [None]):
        if not isinstance(row, dict) or any(key not in row for key in required):
            raise ValueError(
                f"cannot resume from {path}: row {index} is not a result row (needs "
                f"{', '.join(required)}); delete the file or pick another --out"
            )
    return list(rows)


def _mean(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(numbers) / len(numbers) if len(numbers) == len(values) and numbers else None


def curve_label(row: dict[str, Any]) -> str:
    """How a variant is named in plots and tables: its ``label``
    (:func:`enhancer.eval.labels.variant_label`; rows written before it had one: the
    enhancer and its sampling settings)."""
    if row["variant"] == "decoded":
        return "decoded"
    if row.get("label"):
        return row["label"]
    if row.get("sampling"):  # the sampling label names a residual scale below 1 itself
        return f"{row['enhancer']} {row['sampling']}"
    label = f"{row['enhancer']} {row['steps']} steps"
    return label if row["residual_scale"] == 1.0 else f"{label} s={row['residual_scale']}"


def _setting(row: dict[str, Any]) -> tuple:
    """Rows that form one curve across rate points: everything but sequence and quality."""
    return (row["codec"], row["frames"], row["intra_period"], row["variant"], row["enhancer"],
            row["steps"], row.get("sampling"), row["residual_scale"])


def average_rows(rows: list[dict[str, Any]],
                 set_scores: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
                 ) -> list[dict[str, Any]]:
    """Mean of every metric over sequences, per codec, rate point and variant.

    A mean is ``None`` if any sequence lacks that metric; ``sequences`` counts them.
    ``set_scores`` (e.g. :class:`enhancer.eval.setlevel.SetScorer`) adds set-level values
    computed over all the group's rows at once (FID, KID), not means.
    """
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["variant"] != "error":
            groups[(*_setting(row), row["quality"])].append(row)
    averages = []
    for members in groups.values():
        first = members[0]
        average = {k: first.get(k) for k in ("codec", "quality", "variant", "label", "enhancer",
                                              "steps",
                                              "sampling", "residual_scale", "frames",
                                              "intra_period", "untrained")}
        average["sequences"] = len(members)
        average["sequence_names"] = sorted(m["sequence"] for m in members)
        for metric in row_metrics():
            average[metric] = clean_number(_mean([m.get(metric) for m in members]))
        if set_scores is not None:
            average.update({k: clean_number(v) for k, v in set_scores(members).items()})
        averages.append(average)
    return sorted(averages, key=lambda a: (_sort_key(_setting(a)), a["quality"]))


def _sort_key(setting: tuple) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in setting)


def bd_rates(rows: list[dict[str, Any]], method: str = "pchip") -> list[dict[str, Any]]:
    """BD-rate (%) of every enhanced curve vs the decoded curve of the same codec setting.

    Per sequence, and ``sequence="average"`` as the mean of the per-sequence values
    (``None`` when any sequence has fewer than 2 rate points or no overlap).
    """
    curves: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["variant"] != "error":
            curves[_setting(row)][row["sequence"]].append(row)
    results = []
    for setting, per_sequence in curves.items():
        if setting[3] != "enhanced":
            continue
        anchor_setting = (*setting[:3], "decoded", None, None, None, None)
        anchors = curves.get(anchor_setting, {})
        for metric in bd_metrics():
            values = {}
            for sequence, test_rows in per_sequence.items():
                values[sequence] = _bd_one(anchors.get(sequence, []), test_rows, metric, method)
            finite = [v for v in values.values() if v is not None]
            average = sum(finite) / len(finite) if finite and len(finite) == len(values) else None
            first = next(iter(per_sequence.values()))[0]
            for sequence, value in [*sorted(values.items()), ("average", average)]:
                results.append({
                    "codec": setting[0], "frames": setting[1], "intra_period": setting[2],
                    "enhancer": setting[4], "steps": setting[5], "sampling": setting[6],
                    "residual_scale": setting[7], "label": first.get("label"),
                    "untrained": first.get("untrained"), "metric": metric,
                    "sequence": sequence, "bd_rate_percent": clean_number(value),
                })
    return results


def _bd_one(anchor_rows: list[dict], test_rows: list[dict], metric: str, method: str) -> float | None:
    def points(rows: list[dict]) -> tuple[list[float], list[float]]:
        rows = [r for r in rows if r.get(metric) is not None and r.get("bpp")]
        return [r["bpp"] for r in rows], [r[metric] for r in rows]

    anchor_rate, anchor_metric = points(anchor_rows)
    test_rate, test_metric = points(test_rows)
    if min(len(anchor_rate), len(test_rate)) < 2:
        return None
    try:
        value = bd_rate(anchor_rate, anchor_metric, test_rate, test_metric, method)
    except ValueError:  # duplicate metric values etc.: not a usable curve
        return None
    return value if math.isfinite(value) else None


def summarize(rows: list[dict[str, Any]],
              set_scores: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
              ) -> dict[str, Any]:
    """Averages (with ``set_scores``' values, see :func:`average_rows`) and BD-rates, as
    written to ``summary.json``."""
    errors = [r for r in rows if r["variant"] == "error"]
    return {
        "averages": average_rows(rows, set_scores),
        "bd_rate": bd_rates(rows),
        "errors": [{k: r[k] for k in ("sequence", "codec", "quality", "error")} for r in errors],
    }


def compressai_results(averages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One CompressAI-layout result dict per (codec, variant) curve, keyed by file name.

    ``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...], ...}}`` with one
    entry per rate point in bpp order, as CompressAI's own published result files (each
    metric under its registered ``compressai_key``); video
    ``bitrate`` is in kbps as CompressAI's video evaluation reports it.
    """
    curves: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for average in averages:
        curves[(average["codec"], curve_label(average))].append(average)
    files = {}
    for (codec, label), points in curves.items():
        points = sorted(points, key=lambda a: a["bpp"] if a["bpp"] is not None else math.inf)
        results = {"quality": [p["quality"] for p in points]}
        for column, key in ((n, i.compressai_key) for n, i in METRICS.items() if i.compressai_key):
            values = [p.get(column) for p in points]
            if all(v is not None for v in values):
                results[key] = values
        name = codec if label == "decoded" else f"{codec} + {label}"
        sequences = sorted({s for p in points for s in p.get("sequence_names", [])})
        files[_file_name(f"{codec}-{label}") + ".json"] = {
            "name": name,
            "description": (f"{name}: mean over {len(sequences)} sequences "
                            f"({', '.join(sequences)}), {points[0]['frames']} frames, intra "
                            f"period {points[0]['intra_period']}"),
            "results": results,
        }
    return files


def write_compressai_results(folder: Path, averages: list[dict[str, Any]]) -> list[Path]:
    """Write :func:`compressai_results` into ``folder`` (atomically, one file per curve)."""
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in compressai_results(averages).items():
        path = folder / name
        write_atomic_text(path, json.dumps(payload, indent=1) + "\n")
        paths.append(path)
    return paths


def _file_name(text: str) -> str:
    """``x264-x264_temporal_tiny (1 step)`` -> ``x264-x264_temporal_tiny_1_step``."""
    return "_".join(part for part in file_label(text).split("_") if part)
