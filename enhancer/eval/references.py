"""CompressAI's published UVG 1080p rate–distortion results, bundled as reference curves.

The JSON files in ``enhancer/eval/reference/uvg/`` are CompressAI's own result files
(BSD 3-Clause Clear, InterDigital; source, commit and licence in the README there),
byte for byte. ``tools/eval_uvg.py --reference x264 vtm`` draws them, dashed, on the
rate–distortion plots (:func:`enhancer.eval.plots.plot_curves`).

They are means over the full UVG 1080p set under CompressAI's test conditions: comparable
only with an evaluation on UVG 1080p.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

REFERENCE_DIR = Path(__file__).parent / "reference" / "uvg"
SOURCE = "CompressAI, UVG 1080p"  # what every reference label says it is

# CompressAI's files give ``bitrate`` in kbit/s only; every sequence of the seven-sequence
# UVG 1080p set is 1920x1080 at 120 fps, so the mean bitrate is the mean bpp times this.
UVG_PIXELS_PER_SECOND = 1920 * 1080 * 120

# CompressAI's result key -> our metric name. Only the metrics computed the same way:
# CompressAI's psnr-yuv weights the planes (4Y+U+V)/6, ours (6Y+U+V)/8.
METRIC_KEYS = {"psnr-rgb": "psnr_rgb", "ms-ssim-rgb": "ms_ssim"}

ALIASES = {  # short --reference names -> file stems
    "ssf2020": "ssf2020-mse-ans-vimeo",
    "ssf2020-paper": "ssf2020-from-authors",
    "x264": "x264-medium-tune-zerolatency",
    "x265": "x265-medium-tune-zerolatency",
    "vtm": "VTM-v15.0-lowdelay",
}


@dataclass(frozen=True)
class ReferenceCurve:
    """One published curve: bpp and our metrics at each rate point, in bpp order."""

    name: str  # CompressAI's name, the file stem (e.g. "VTM-v15.0-lowdelay")
    description: str
    bpp: tuple[float, ...]
    metrics: dict[str, tuple[float, ...]]  # our metric name -> one value per rate point

    @property
    def label(self) -> str:
        return f"{self.name} ({SOURCE})"


def available_references() -> list[str]:
    """Every name :func:`load_reference` takes: the aliases, then the file stems."""
    stems = sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))
    return [*ALIASES, *stems]


def load_reference(name: str) -> ReferenceCurve:
    """The bundled curve called ``name`` (an alias such as ``vtm`` or a file stem; any case).

    Raises ``ValueError`` naming the available references for an unknown name.
    """
    stems = {p.stem.lower(): p for p in REFERENCE_DIR.glob("*.json")}
    key = ALIASES.get(name.lower(), name).lower()
    if key not in stems:
        raise ValueError(f"unknown reference curve {name!r}; choose from "
                         f"{', '.join(available_references())}")
    path = stems[key]
    data = json.loads(path.read_text())
    results = data["results"]
    order = sorted(range(len(results["bitrate"])), key=lambda i: results["bitrate"][i])
    bpp = tuple(results["bitrate"][i] * 1000 / UVG_PIXELS_PER_SECOND for i in order)
    metrics = {ours: tuple(float(results[theirs][i]) for i in order)
               for theirs, ours in METRIC_KEYS.items() if theirs in results}
    values = [*bpp, *(v for series in metrics.values() for v in series)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"reference file {path} has a value that is not a finite number")
    return ReferenceCurve(data.get("name", path.stem), data.get("description", ""), bpp, metrics)


def load_references(names: list[str] | tuple[str, ...]) -> list[ReferenceCurve]:
    """:func:`load_reference` for each name, in the order given; a curve named twice (an
    alias and its file stem) is drawn once."""
    curves = {}
    for name in names:
        curve = load_reference(name)
        curves.setdefault(curve.name, curve)
    return list(curves.values())
