"""Image evaluation (Kodak, DIV2K): an image codec, our residual model and the CDC baseline.

Each image is a one-frame sequence run through :func:`enhancer.eval.runner.evaluate_sequences`,
so rows, resume, error rows, averages, BD-rates, plots and crops work the same way.
Every data set gets its own folder ``out_dir/<dataset>/``.

DIV2K is prepared as CDC does: the short side resized to 768 px (bilinear,
antialiased), then a 768x768 centre crop. Kodak images are used as they are.
Typical step counts: 100 for the residual model, 17 and 500 for CDC.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from enhancer.eval.registry import frame_metrics, metric_presets, names
from enhancer.eval.report import EvalReport
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.sequences import find_images
from enhancer.eval.specs import EnhancerSpec

IMAGE_METRICS = tuple(m for m in frame_metrics() if m != "temporal")  # the default
# fid/kid: FID/256 over all images' patches; "fast"/"full": the sets of
# enhancer.eval.registry.metric_presets (temporal left out: one frame per image)
IMAGE_METRIC_CHOICES = (*metric_presets(), *IMAGE_METRICS, *names("set"))
DATASET_RESIZE = {"kodak": None, "div2k": "cdc"}


def evaluate_images(
    datasets: dict[str, str | Path],
    codec_name: str,
    qualities: list[int],
    enhancers: list[EnhancerSpec],
    *,
    out_dir: str | Path = "eval_images",
    codec_checkpoint: str | None = None,
    limit: int | None = None,
    crop: tuple[int, int] | None = None,
    device: str = "cpu",
    seed: int = 0,
    metrics: tuple[str, ...] = IMAGE_METRICS,
    inception_weights: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, EvalReport]:
    """Evaluate every data set folder; ``datasets`` maps ``kodak``/``div2k`` (or any name,
    used as is) to a folder. ``limit`` keeps the first N images, ``crop=(h, w)`` centre-crops;
    ``inception_weights`` for fid/kid (None: torch hub's cache)."""
    if not datasets:
        raise ValueError("give at least one image folder (--kodak DIR and/or --div2k DIR)")
    images = {name: find_images(folder, DATASET_RESIZE.get(name.lower()), limit)
              for name, folder in datasets.items()}  # checks every folder before any work
    for spec in enhancers:
        if spec.enhancer.temporal:
            log(f"note: enhancer {spec.label!r} is temporal; on images its previous frame is the "
                "decoded image itself")
    reports = {}
    for name, sequences in images.items():
        log(f"== {name}: {len(sequences)} images")
        settings = EvalSettings(frames=1, intra_period=-1, device=device,
                                out_dir=Path(out_dir) / name, codec_checkpoint=codec_checkpoint,
                                crop=crop, seed=seed, metrics=metrics, write_videos=False,
                                title=name, inception_weights=inception_weights)
        reports[name] = evaluate_sequences(sequences, codec_name, qualities, enhancers, settings,
                                           log=log)
    return reports
