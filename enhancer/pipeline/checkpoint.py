"""Enhancer checkpoint files: writing, reading, and rebuilding an :class:`Enhancer` from one.

::

    save_enhancer("runs/x/last.pt", enhancer, extra={"step": 5})   # atomic
    enhancer = load_enhancer("x264_temporal_tiny")                  # a path or a bundled name
    store_sampling(path, Sampling(steps=2), provenance)             # new sampling defaults

A checkpoint is a ``torch.save``'d dict read back with ``weights_only=True``::

    format           "enhancer-checkpoint-v1"
    enhancer_config  the EnhancerConfig as a dict (codec, unet, diffusion, ...)
    denoiser         the ResidualDiffusion state dict (training files also hold "ema")
    codec            the codec's weights when it is learned (None: rebuilt from its config,
                     or read from the checkpoint "codec_from" names)
    sampling         the Sampling defaults inference starts from
    student          a few-step student's trained Sampling (None: diffusion-trained), and
    student_any_steps  whether it was also trained along its DDIM path (any step count);
                     files written before these keys read them from ``train_config``
    ...              training state (train_config, step, optimizers) from ``extra``

Bundled models live in ``enhancer/weights/<name>.pt`` and are loaded by name.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from enhancer.codecs.registry import load_codec
from enhancer.config import EnhancerConfig, from_dict, to_dict
from enhancer.data.paths import write_atomic
from enhancer.diffusion import Sampling
from enhancer.pipeline.enhancer import Enhancer, build_diffusion
from enhancer.utils.weights import load_error_reason

CHECKPOINT_FORMAT = "enhancer-checkpoint-v1"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"


def save_enhancer(path: str | Path, enhancer: Enhancer, extra: dict | None = None,
                  store_codec: bool = True) -> None:
    """Write an enhancer checkpoint atomically: config, denoiser (and codec) weights, ``extra``.

    ``extra`` carries training state (optimizer, EMA, step, ...) for ``enhancer.train``.
    """
    if enhancer.config is None:
        raise ValueError("an enhancer without a config cannot be saved; build it with from_config")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "enhancer_config": to_dict(enhancer.config),
        "denoiser": enhancer.diffusion.state_dict(),
        "codec": enhancer.codec.weights() if store_codec and enhancer.codec.learned else None,
        "sampling": enhancer.sampling.to_dict(),
        "student": None if enhancer.student is None else enhancer.student.to_dict(),
        "student_any_steps": enhancer.student_any_steps,
    }
    payload.update(extra or {})
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(Path(path), buffer.getvalue())


def resolve_enhancer_path(name_or_path: str | Path) -> Path:
    """A checkpoint path, or the name of a bundled model (``enhancer/weights/<name>.pt``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path)
    if Path(name).name != name or ".." in name:
        raise FileNotFoundError(f"no enhancer checkpoint {name!r}: not a file, and not a bundled "
                                "model (those are named without a folder, e.g. x264_temporal_tiny)")
    bundled = BUNDLED_DIR / f"{name_or_path}.pt"
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in BUNDLED_DIR.glob("*.pt")) if BUNDLED_DIR.is_dir() else []
    raise FileNotFoundError(
        f"no enhancer checkpoint {str(name_or_path)!r}: not a file, and not a bundled model "
        f"(bundled: {available or 'none'})"
    )


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for foreign files."""
    path = resolve_enhancer_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read enhancer checkpoint {str(path)!r}: "
                         f"{load_error_reason(err)}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not an enhancer checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else None!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); train one with tools/train.py"
        )
    return payload


def denoiser_weights(payload: dict, use_ema: bool = True) -> dict:
    """The denoiser weights a checkpoint's inference uses: its EMA copy when it has one
    (training checkpoints; ``use_ema``), else the weights themselves (exported files)."""
    return payload["ema"] if use_ema and payload.get("ema") else payload["denoiser"]


def checkpoint_codec(checkpoint: str | Path | dict) -> dict[str, Any]:
    """The codec config (``name``, ``quality``, ...) an enhancer checkpoint or bundled
    name was trained with, read without building the enhancer. ``checkpoint`` may also be
    a payload :func:`read_checkpoint` already returned (the file is not read again)."""
    payload = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    return payload["enhancer_config"]["codec"]


def trained_qualities(payload: dict) -> tuple[int, int]:
    """The codec qualities ``(low, high)`` a checkpoint's model was trained on: its training
    config's ``data.codec_qualities`` (the x264 model: CRF 24..40), else its codec's one."""
    data = (payload.get("train_config") or {}).get("data") or {}
    if data.get("codec_qualities"):
        return min(data["codec_qualities"]), max(data["codec_qualities"])
    quality = int(payload["enhancer_config"]["codec"]["quality"])
    return quality, quality


@dataclass(frozen=True)
class BundledModel:
    name: str
    codec: str
    qualities: tuple[int, int]  # low, high: see trained_qualities
    signalled: bool = False  # made for streams with strength maps: see trained_for_maps


def trained_for_maps(payload: dict) -> bool:
    """Whether a checkpoint's model was made for streams whose encoder sends strength maps
    (its training config's ``loss.signalled``): at full strength it harms where no map
    turns it down, so a stream without maps is served by another model."""
    loss = (payload.get("train_config") or {}).get("loss") or {}
    return bool(loss.get("signalled", False))


@functools.lru_cache(maxsize=1)
def bundled_models() -> tuple[BundledModel, ...]:
    """Every bundled model with the codec and qualities it serves: residual models first
    (the CDC baseline, which samples the image itself, last), then by name."""
    models = []
    for path in sorted(BUNDLED_DIR.glob("*.pt")) if BUNDLED_DIR.is_dir() else []:
        payload = read_checkpoint(path)
        baseline = payload["enhancer_config"].get("diffusion", {}).get("target") == "image"
        models.append((baseline, BundledModel(path.stem, checkpoint_codec(payload)["name"],
                                              trained_qualities(payload),
                                              trained_for_maps(payload))))
    return tuple(model for _, model in sorted(models, key=lambda m: (m[0], m[1].name)))


def stored_student(payload: dict) -> tuple[Sampling | None, bool]:
    """A checkpoint's student sampling and whether it runs any step count (its
    ``student`` / ``student_any_steps`` keys; files written before them carry the same in
    their training config: ``student`` and ``consistency_weight`` > 0, flat or under
    ``loss``)."""
    if "student" in payload:
        student = payload["student"]
        return (Sampling.from_dict(student) if student else None,
                bool(payload.get("student_any_steps")))
    train_config = payload.get("train_config") or {}
    student = train_config.get("student")
    consistency = (train_config.get("loss") or {}).get("consistency_weight",
                                                        train_config.get("consistency_weight", 0))
    return (Sampling.from_dict(student) if student else None,
            bool(student) and consistency > 0)


def load_enhancer(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True,
                  codec_checkpoint: str | Path | None = None, precision: str = "fp32") -> Enhancer:
    """Rebuild an :class:`Enhancer` from a checkpoint (or a bundled model name), eval mode.

    The codec weights come from the checkpoint when it stores them, else from
    ``codec_checkpoint`` or the path in the stored config. ``use_ema`` picks the
    EMA denoiser weights when the checkpoint has them. ``precision``: the denoiser's
    arithmetic (:data:`enhancer.pipeline.enhancer.PRECISIONS`).
    """
    payload = read_checkpoint(path)
    config = from_dict(EnhancerConfig, payload["enhancer_config"], where="checkpoint config")
    stored_codec = payload.get("codec")
    if stored_codec is None and payload.get("codec_from"):
        # Bundled models that share a codec store it once: "codec_from" names the
        # checkpoint (bundled name, or a file beside this one) that holds it.
        source = payload["codec_from"]
        sibling = resolve_enhancer_path(path).parent / f"{source}.pt"
        stored_codec = read_checkpoint(sibling if sibling.is_file() else source).get("codec")
        if stored_codec is None:
            raise ValueError(f"{str(path)!r} takes its codec from {source!r}, which holds none")
    with warnings.catch_warnings():
        if stored_codec is not None:  # weights follow right below: no random-weights warning
            warnings.simplefilter("ignore")
        codec = load_codec(
            config.codec.name, config.codec.quality, device=device,
            checkpoint=None if stored_codec is not None else codec_checkpoint or config.codec.checkpoint,
        )
    if stored_codec is not None:
        codec.load_weights(stored_codec)
    try:
        sampling = Sampling.from_dict(payload.get("sampling"))
        student, student_any_steps = stored_student(payload)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sampling settings in {str(path)!r} are invalid: {err}") from err
    enhancer = Enhancer(codec, build_diffusion(config, codec), config, sampling=sampling,
                        student=student, student_any_steps=student_any_steps,
                        precision=precision, trained_qualities=trained_qualities(payload))
    denoiser_state = denoiser_weights(payload, use_ema)
    try:
        enhancer.diffusion.load_state_dict(denoiser_state)
    except RuntimeError as err:
        raise ValueError(f"denoiser weights in {str(path)!r} do not fit its config: {err}") from err
    return enhancer.to(device).eval()


def store_sampling(path: str | Path, sampling: Sampling, provenance: dict | None = None) -> Path:
    """Write ``sampling`` (and how it was chosen) into the checkpoint at ``path``, atomically.

    Everything else in the file stays as it is; returns the file written.
    """
    path = resolve_enhancer_path(path)
    payload = read_checkpoint(path)
    payload["sampling"] = sampling.to_dict()
    if provenance is not None:
        payload["sampling_provenance"] = provenance
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())
    return path
