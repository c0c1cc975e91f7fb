"""Training curves from a run's ``log.jsonl``: loss terms, training metrics, validation scores."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = (
    ("loss terms", ("loss", "dist", "perc", "bitrate", "decoder")),
    ("PSNR (dB)", ("psnr_decoded", "psnr_onestep", "val_psnr_decoded", "val_psnr_enhanced")),
    ("LPIPS", ("lpips_decoded", "lpips_onestep", "val_lpips_decoded", "val_lpips_enhanced")),
    ("bits per pixel", ("bpp", "val_bpp")),
)


def read_log(path: str | Path) -> list[dict]:
    """Rows of a ``log.jsonl``; a clear error for a missing, empty or garbled file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not JSON: {err}") from err
    if not rows:
        raise ValueError(f"{path} has no rows yet; train for at least log_every steps")
    return rows


def plot_log(log_path: str | Path, out_path: str | Path) -> Path:
    """Write a PNG of the curves in ``log_path`` to ``out_path``; returns ``out_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for axis, (title, keys) in zip(axes, PANELS):
        for key in keys:
            points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, marker="." if len(points) < 50 else None, label=key)
        axis.set_title(title)
        axis.set_xlabel("step")
        if axis.lines:
            axis.legend(fontsize=8)
        if title == "loss terms" and axis.lines:
            axis.set_yscale("symlog", linthresh=1e-3)
    figure.suptitle(str(log_path))
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
