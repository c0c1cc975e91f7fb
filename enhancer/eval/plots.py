"""Rate–distortion / rate–perception plots (matplotlib, Agg) and side-by-side crops."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from enhancer.data.padding import centre_crop
from enhancer.eval.references import ReferenceCurve
from enhancer.eval.results import curve_label

PLOTS = {  # metric -> (file name, axis label)
    "psnr_rgb": ("rd_psnr_rgb.png", "PSNR RGB (dB), higher is better"),
    "psnr_yuv": ("rd_psnr_yuv.png", "PSNR YUV 6:1:1 (dB), higher is better"),
    "ms_ssim": ("rd_ms_ssim.png", "MS-SSIM RGB, higher is better"),
    "lpips_alex": ("rp_lpips_alex.png", "LPIPS (AlexNet), lower is better"),
    "lpips_vgg": ("rp_lpips_vgg.png", "LPIPS (VGG), lower is better"),
    "dists": ("rp_dists.png", "DISTS, lower is better"),
}


CURVES_KEY = "enhancer-curves"  # PNG text chunk: the label of every curve drawn


def plot_curves(averages: list[dict[str, Any]], out_dir: str | Path, title: str = "",
                references: Sequence[ReferenceCurve] = ()) -> list[Path]:
    """One PNG per metric: bpp on x, one line per variant and codec setting.

    ``references`` (:mod:`enhancer.eval.references`) are drawn dashed on the plots of the
    metrics they have. Metrics without values of ours (weights missing, frames too small)
    are skipped. Every PNG lists its curves' labels (:func:`read_curves`). Returns the
    written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    untrained = any(a.get("untrained") for a in averages)
    written = []
    for metric, (file_name, axis_label) in PLOTS.items():
        lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for average in averages:
            if average.get(metric) is None or average.get("bpp") is None:
                continue
            label = f"{average['codec']} {curve_label(average)}"
            if average["variant"] == "enhanced" and average.get("untrained"):
                label += " (UNTRAINED)"
            lines[label].append((average["bpp"], average[metric]))
        if not lines:
            continue
        figure, axis = plt.subplots(figsize=(6, 4.5))
        for label, points in sorted(lines.items()):
            points.sort()
            style = "o--" if label.split(" ", 1)[1] == "decoded" else "s-"
            axis.plot(*zip(*points), style, label=label)
        labels = sorted(lines)
        drawn = [r for r in references if metric in r.metrics]
        for reference in drawn:
            axis.plot(reference.bpp, reference.metrics[metric], "x--", linewidth=1,
                      markersize=4, label=reference.label)
            labels.append(reference.label)
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(axis_label)
        full_title = title
        if untrained:
            full_title += "\nUNTRAINED enhancer (random weights): plumbing only"
        if drawn:
            full_title += "\ndashed x: CompressAI's UVG 1080p means (compare on UVG 1080p only)"
        axis.set_title(full_title.strip(), fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / file_name
        figure.savefig(path, dpi=110, metadata={CURVES_KEY: json.dumps(labels)})
        plt.close(figure)
        written.append(path)
    return written


def read_curves(path: str | Path) -> list[str] | None:
    """The labels of the curves a :func:`plot_curves` PNG shows (ours sorted, then the
    references); None for an image without them."""
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(CURVES_KEY)
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _to_uint8(frame: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8."""
    values = (frame.detach().float().cpu()[0].clamp(0, 1) * 255).round()
    return values.permute(1, 2, 0).numpy().astype(np.uint8)


PANELS_KEY = "enhancer-panels"  # PNG text chunk: where each panel of a crop image is


def save_side_by_side(panels: list[tuple[str, Tensor]], path: str | Path, size: int = 256) -> Path:
    """Centre crops of each ``(label, frame (1, 3, H, W))`` next to each other, labelled.

    The PNG says where each panel is (:func:`read_panels`), so the HTML report can show any
    two of them under a before/after slider.
    """
    height, width = panels[0][1].shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    label_h, gap = 14, 4
    canvas = Image.new("RGB", (len(panels) * (crop_w + gap) - gap, crop_h + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for index, (label, frame) in enumerate(panels):
        crop = _to_uint8(centre_crop(frame, crop_h, crop_w))
        x = index * (crop_w + gap)
        canvas.paste(Image.fromarray(crop), (x, label_h))
        draw.text((x + 2, 1), label, fill="black")
        boxes.append({"label": label, "x": x, "y": label_h, "width": crop_w, "height": crop_h})
    info = PngInfo()
    info.add_text(PANELS_KEY, json.dumps(boxes))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, pnginfo=info)
    return path


def read_panels(path: str | Path) -> list[dict[str, Any]] | None:
    """The panels of a :func:`save_side_by_side` image: ``[{"label", "x", "y", "width",
    "height"}, ...]`` in pixels, left to right; None for an image without them (or none)."""
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(PANELS_KEY)
    except (OSError, ValueError):
        return None
    try:
        panels = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    keys = ("label", "x", "y", "width", "height")
    if not isinstance(panels, list) or not all(
            isinstance(p, dict) and all(k in p for k in keys) for p in panels):
        return None
    return panels
