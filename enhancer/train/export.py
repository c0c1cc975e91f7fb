"""Turn a training checkpoint into a compact inference checkpoint (EMA weights, optional fp16).

::

    export_checkpoint("runs/x/last.pt", "enhancer/weights/x.pt", half=True)

The result is an ordinary enhancer checkpoint (:func:`enhancer.pipeline.load_enhancer`
reads it): the EMA denoiser weights become ``denoiser``, the codec weights are kept,
and the training state (optimizers, RNG, the raw weights) is dropped. fp16 storage
halves the size; the weights are cast back to float32 when loaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor

from enhancer.data.paths import check_file_target, check_not_input, write_atomic
from enhancer.pipeline.checkpoint import checkpoint_codec, denoiser_weights, read_checkpoint

KEPT_KEYS = ("format", "enhancer_config", "train_config", "step", "sampling", "student",
             "student_any_steps")


def _cast(state: dict[str, Tensor] | None, half: bool) -> dict[str, Tensor] | None:
    if state is None or not half:
        return state
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


TRAINING_STATE_KEYS = ("optimizer", "ema", "rng")  # what only a training checkpoint holds


def holds_training_state(path: Path) -> bool:
    """Whether the file at ``path`` is a training checkpoint (optimizer, EMA or RNG state):
    the one copy of a run's state, never to be overwritten by an export."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a checkpoint torch can read: no training state
        return False
    return isinstance(payload, dict) and any(key in payload for key in TRAINING_STATE_KEYS)


def export_checkpoint(source: str | Path, destination: str | Path, half: bool = True) -> Path:
    """Write the inference checkpoint of ``source`` to ``destination``; returns its path.

    ``destination`` may not be ``source`` nor any other training checkpoint (it would
    destroy the run's optimizer, EMA and RNG state): both are refused before any work.
    """
    destination = Path(destination)
    check_not_input(destination, source)
    check_file_target(destination, "exported checkpoint")
    if destination.is_file() and holds_training_state(destination):
        raise ValueError(
            f"{destination} is a training checkpoint (it holds optimizer/EMA/RNG state); "
            "exporting over it would destroy that run's state: pick another output name"
        )
    payload = read_checkpoint(source)
    exported = {key: payload[key] for key in KEPT_KEYS if key in payload}
    exported["denoiser"] = _cast(denoiser_weights(payload), half)
    exported["codec"] = _cast(payload.get("codec"), half)
    if exported["codec"] is not None:  # self-contained: the training-time codec path is moot
        codec_config = dict(checkpoint_codec(payload), checkpoint=None)
        exported["enhancer_config"] = dict(exported["enhancer_config"], codec=codec_config)
    buffer = io.BytesIO()
    torch.save(exported, buffer)
    write_atomic(destination, buffer.getvalue())
    return destination
