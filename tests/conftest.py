"""Shared test helpers: where the real test material lives, and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ENHANCER_SHARED_DATA", REPO.parent / "shared" / "data"))

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"real test material not found at {SHARED_DATA} (set ENHANCER_SHARED_DATA)",
)


@pytest.fixture(autouse=True)
def _no_network_weights(tmp_path_factory, monkeypatch):
    """Any accidental hub download would land here (and fail offline), never in ~/.cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))


def forward_clip(codec, clip, intra_period: int = -1) -> list:
    """The codec's training path over a clip ``(B, T, 3, H, W)``: one output per frame."""
    from enhancer.codecs import CodecStream

    stream = CodecStream(codec, intra_period)
    return [stream(clip[:, index]) for index in range(clip.shape[1])]


def decode_chunks(codec, chunks, size, intra_period: int = -1) -> list:
    """Decode each frame's bytes in order (the decoder side of a sequence)."""
    from enhancer.codecs import CodecStream

    stream = CodecStream(codec, intra_period)
    return [stream.decompress(data, size) for data in chunks]


def run_codec(argv: list[str]) -> int:
    """``tools/codec.py argv`` in this process (enhancer.commands.codec), returning its exit code."""
    from enhancer.cli import run_cli
    from enhancer.commands.codec import main

    return run_cli(main, argv)


def leftovers(folder) -> list[str]:
    """Hidden temporaries (``.x.partial-*``, ``.x.*.tmp``) anywhere below ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*") if "partial" in p.name or p.suffix == ".tmp")
