"""Rate–distortion / rate–perception plots (matplotlib, Agg) and side-by-side crops."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from enhancer.data.padding import centre_crop
from enhancer.eval.references import ReferenceCurve
from enhancer.eval.registry import plots
from enhancer.eval.results import curve_label

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
    for metric, (file_name, axis_label) in plots().items():
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
LABEL_FONT_SIZE = 15  # px: readable at 100 %, wrapped to the panel's width
INSET_ZOOM = 3  # the inset shows a third of the crop's side, 3x larger (nearest neighbour)
INSET_COLOUR = (230, 40, 40)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont,
          width: int) -> list[str]:
    """``text`` in lines that fit ``width`` px (at spaces; a word too long is cut into pieces)."""
    lines: list[str] = []
    for word in text.split():
        pieces = [word]
        while draw.textlength(pieces[-1], font=font) > width and len(pieces[-1]) > 1:
            head = pieces[-1]
            cut = max(1, int(len(head) * width / draw.textlength(head, font=font)) - 1)
            pieces[-1:] = [head[:cut], head[cut:]]
        for piece in pieces:
            joined = f"{lines[-1]} {piece}" if lines else piece
            if lines and piece is pieces[0] and draw.textlength(joined, font=font) <= width:
                lines[-1] = joined
            else:
                lines.append(piece)
    return lines or [""]


def inset_origin(crops: list[Tensor], side: int, stride: int = 4) -> tuple[int, int]:
    """``(top, left)`` of the ``side`` x ``side`` window of the panels ``crops`` (ground
    truth, decoded, enhanced ..., each ``(1, 3, h, w)``) worth zooming into: where the
    enhanced panels differ most from the decoded one, else (no enhanced panel) where the
    decode differs most from the ground truth."""
    if len(crops) < 2:
        return 0, 0
    first, others = (crops[1], crops[2:]) if len(crops) > 2 else (crops[0], crops[1:])
    difference = sum((other.float() - first.float()).abs().sum(1, keepdim=True)
                     for other in others)  # (1, 1, h, w)
    scores = F.avg_pool2d(difference, side, stride=stride)[0, 0]
    row, col = divmod(int(scores.argmax()), scores.shape[1])
    return row * stride, col * stride


def save_side_by_side(panels: list[tuple[str, Tensor]], path: str | Path, size: int = 256) -> Path:
    """Centre crops of each ``(label, frame (1, 3, H, W))`` next to each other, labelled
    (wrapped, never cut off), each with a zoomed inset below it: the same window of every
    panel (:func:`inset_origin`, marked by a red box on the crops), 3x larger.

    The PNG says where each panel is (:func:`read_panels`), so the HTML report can show any
    two of them under a before/after slider.
    """
    height, width = panels[0][1].shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    crops = [centre_crop(frame, crop_h, crop_w) for _, frame in panels]
    side = min(max(8, min(crop_h, crop_w) // INSET_ZOOM), crop_h, crop_w)  # tiny frames too
    top, left = inset_origin(crops, side)
    font = _font(LABEL_FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [_wrap(measure, label, font, crop_w - 4) for label, _ in panels]
    line_h = LABEL_FONT_SIZE + 3
    label_h = max(len(lines) for lines in labels) * line_h + 4
    gap, zoomed = 6, side * INSET_ZOOM
    canvas = Image.new("RGB", (len(panels) * (crop_w + gap) - gap,
                               label_h + crop_h + gap + zoomed), "white")
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for index, ((label, _), crop, lines) in enumerate(zip(panels, crops, labels)):
        x = index * (crop_w + gap)
        image = Image.fromarray(_to_uint8(crop))
        canvas.paste(image, (x, label_h))
        for line_index, line in enumerate(lines):
            draw.text((x + 2, 2 + line_index * line_h), line, fill="black", font=font)
        draw.rectangle((x + left, label_h + top, x + left + side - 1, label_h + top + side - 1),
                       outline=INSET_COLOUR, width=2)
        inset = image.crop((left, top, left + side, top + side)).resize(
            (zoomed, zoomed), Image.NEAREST)
        inset_y = label_h + crop_h + gap
        canvas.paste(inset, (x, inset_y))
        draw.rectangle((x, inset_y, x + zoomed - 1, inset_y + zoomed - 1), outline=INSET_COLOUR,
                       width=2)
        boxes.append({"label": label, "x": x, "y": label_h, "width": crop_w, "height": crop_h,
                      "inset": {"x": x, "y": inset_y, "size": zoomed, "zoom": INSET_ZOOM,
                                "from": [left, top, side]}})
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
