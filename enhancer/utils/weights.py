"""Checking weights files: how a loaded state dict fails to fit a model
(:func:`state_dict_mismatch`, the one check for every weights file we load: codecs, DCVC,
the FID Inception network) and why ``torch.load(..., weights_only=True)`` refused a file
(:func:`load_error_reason`)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor


def load_error_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, without torch's advice to retry
    with ``weights_only=False`` (which would run whatever code the file holds)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        found = f" (it needs {match.group(1)})" if match else ""
        return (f"the file holds Python objects other than tensors{found}, which are refused "
                "because loading them could run code; save a plain state dict of tensors")
    if isinstance(err, EOFError):
        return "the file is empty or truncated; it is not a complete PyTorch checkpoint"
    if isinstance(err, (IndexError, KeyError, UnicodeDecodeError)) or "zip archive" in text:
        return ("the file is not a PyTorch checkpoint (neither torch.save's zip archive nor "
                "a pickle of tensors), or it is truncated")
    return " ".join(text.split())[:300] or type(err).__name__


def state_dict_mismatch(
    own: Mapping[str, Tensor], loaded: Mapping[str, Any], ignore_suffixes: tuple[str, ...] = ()
) -> str | None:
    """Describe how ``loaded`` fails to fit ``own`` (missing, unexpected, mis-shaped keys,
    values that are not tensors). Returns None when it fits. Keys ending in
    ``ignore_suffixes`` are not compared. The one check for every weights file we load
    (codecs, DCVC, the FID Inception network).
    """
    kept = [k for k in own if not k.endswith(ignore_suffixes)]
    missing = sorted(set(kept) - set(loaded))
    unexpected = sorted(k for k in set(loaded) - set(own) if not k.endswith(ignore_suffixes))
    shared = sorted(set(kept) & set(loaded))
    not_tensors = [k for k in shared if not isinstance(loaded[k], Tensor)]
    wrong_shape = [
        f"{k}: file {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"
        for k in shared
        if isinstance(loaded[k], Tensor) and loaded[k].shape != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} keys of the wrong shape (e.g. {wrong_shape[:2]})")
    if not_tensors:
        parts.append(f"{len(not_tensors)} values that are not tensors (e.g. {not_tensors[:3]})")
    return "; ".join(parts) or None
