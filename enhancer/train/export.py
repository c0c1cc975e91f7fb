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

from enhancer.data.paths import write_atomic
from enhancer.pipeline.checkpoint import checkpoint_codec, denoiser_weights, read_checkpoint

KEPT_KEYS = ("format", "enhancer_config", "train_config", "step", "sampling")


def _cast(state: dict[str, Tensor] | None, half: bool) -> dict[str, Tensor] | None:
    if state is None or not half:
        return state
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export_checkpoint(source: str | Path, destination: str | Path, half: bool = True) -> Path:
    """Write the inference checkpoint of ``source`` to ``destination``; returns its path."""
    payload = read_checkpoint(source)
    exported = {key: payload[key] for key in KEPT_KEYS if key in payload}
    exported["denoiser"] = _cast(denoiser_weights(payload), half)
    exported["codec"] = _cast(payload.get("codec"), half)
    if exported["codec"] is not None:  # self-contained: the training-time codec path is moot
        codec_config = dict(checkpoint_codec(payload), checkpoint=None)
        exported["enhancer_config"] = dict(exported["enhancer_config"], codec=codec_config)
    buffer = io.BytesIO()
    torch.save(exported, buffer)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(destination, buffer.getvalue())
    return destination
