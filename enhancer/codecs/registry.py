"""The codec registry: adapters register under a name, :func:`load_codec` builds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from enhancer.codecs.base import CodecAdapter, CodecError

_REGISTRY: dict[str, Callable[..., CodecAdapter]] = {}
# Codecs whose module could not be imported here: their names -> why (a missing package).
UNAVAILABLE_CODECS: dict[str, str] = {}


def register_codec(name: str) -> Callable[[type[CodecAdapter]], type[CodecAdapter]]:
    """Class decorator: make an adapter available to :func:`load_codec` under ``name``."""

    def decorator(cls: type[CodecAdapter]) -> type[CodecAdapter]:
        if name in _REGISTRY:
            raise ValueError(f"codec {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_codecs() -> list[str]:
    return sorted(_REGISTRY)


def codec_class(name: str) -> type[CodecAdapter]:
    if name not in _REGISTRY:
        missing = "".join(f"; {names} unavailable: {why}"
                          for names, why in UNAVAILABLE_CODECS.items())
        raise CodecError(f"unknown codec {name!r}; available: {', '.join(available_codecs())}"
                         + missing)
    return _REGISTRY[name]  # type: ignore[return-value]


def load_codec(
    name: str,
    quality: int,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> CodecAdapter:
    """Build the adapter ``name`` at ``quality``, load ``checkpoint`` if given, eval mode."""
    cls = codec_class(name)
    codec = cls(quality=quality, checkpoint=checkpoint)
    return codec.to(device).eval()
