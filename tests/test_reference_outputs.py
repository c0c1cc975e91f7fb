"""Behaviour unchanged: every bundled model codes and enhances a short synthetic clip exactly
as the code did when the references were stored.

For each bundled model (``enhancer/weights/*.pt``), a deterministic textured clip (2 frames,
48x64, moving; no shared data needed) is coded with the model's codec and enhanced with a
fixed seed, at the checkpoint's own sampling and at one overridden setting. Compared with
``tests/data/reference_outputs.npz``:

- the codec's bytes of every frame: sha256, exactly;
- the enhanced frames as uint8 (at the override, only the last frame, which the first
  conditions, to keep the file small): within 1/255 per pixel (float arithmetic differs a
  little between CPUs).

Rebuild the references (only when a change is *meant* to alter the output; say why in the
commit)::

    ENHANCER_REGENERATE_REFERENCES=1 .venv/bin/pytest tests/test_reference_outputs.py -q
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from enhancer.codecs import CodecStream
from enhancer.pipeline import load_enhancer
from enhancer.pipeline.checkpoint import BUNDLED_DIR

REFERENCES = Path(__file__).parent / "data" / "reference_outputs.npz"
REGENERATE = os.environ.get("ENHANCER_REGENERATE_REFERENCES") == "1"
BUNDLED = sorted(path.stem for path in BUNDLED_DIR.glob("*.pt"))
FRAMES, HEIGHT, WIDTH = 2, 48, 64
# The checkpoint's defaults, and one setting with every field overridden.
SETTINGS = {
    "defaults": {},
    "override": {"steps": 2, "gamma": 0.5, "eta": 0.5, "t_start": 0.8, "noise": "fresh",
                 "residual_scale": 0.75, "hold": 0.02},
}


def synthetic_clip() -> list[torch.Tensor]:
    """``FRAMES`` float frames (1, 3, HEIGHT, WIDTH): gradients, stripes, a checker and
    seeded noise, shifting 2 px per frame; built from integers, so identical everywhere."""
    rng = np.random.Generator(np.random.PCG64(1234))
    grain = rng.integers(0, 48, size=(3, HEIGHT, WIDTH + 2 * FRAMES), dtype=np.int64)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH + 2 * FRAMES]
    base = np.stack([
        (x * 2 + y) % 160,
        ((x // 4 + y // 4) % 2) * 120 + (y * 3) % 40,
        (x * x + 3 * y * y) // 7 % 150,
    ]).astype(np.int64)
    canvas = np.clip(base + grain + 30, 0, 255).astype(np.uint8)
    return [torch.from_numpy(canvas[None, :, :, 2 * t:2 * t + WIDTH].copy()).float() / 255
            for t in range(FRAMES)]


def model_outputs(name: str) -> dict[str, np.ndarray]:
    """The codec bytes' hashes and the enhanced uint8 frames of ``name`` on the clip."""
    torch.manual_seed(0)
    enhancer = load_enhancer(name)
    frames = synthetic_clip()
    stream = CodecStream(enhancer.codec)
    with torch.no_grad():
        hashes = [hashlib.sha256(stream.compress(frame)[0]).hexdigest() for frame in frames]
    outputs = {f"{name}/bytes": np.array(hashes)}
    for setting, overrides in SETTINGS.items():
        enhanced = [out.enhanced for out in enhancer.enhance(frames, seed=7, **overrides)]
        enhanced = enhanced if setting == "defaults" else enhanced[-1:]
        outputs[f"{name}/{setting}"] = (torch.cat(enhanced) * 255).round().to(torch.uint8).numpy()
    return outputs


def test_regenerate_references():
    """With ``ENHANCER_REGENERATE_REFERENCES=1``: rewrite the reference file (else skipped)."""
    if not REGENERATE:
        pytest.skip("set ENHANCER_REGENERATE_REFERENCES=1 to rebuild the references")
    stored = {}
    for name in BUNDLED:
        stored.update(model_outputs(name))
    REFERENCES.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCES, **stored)
    assert REFERENCES.stat().st_size < 200_000


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_output_is_unchanged(name):
    if REGENERATE:
        pytest.skip("references being rebuilt")
    references = np.load(REFERENCES)
    assert f"{name}/bytes" in references, (
        f"no reference for bundled model {name!r}; rebuild with "
        "ENHANCER_REGENERATE_REFERENCES=1 (see this module's docstring)")
    outputs = model_outputs(name)
    assert list(outputs[f"{name}/bytes"]) == list(references[f"{name}/bytes"]), \
        f"{name}: the codec's bytes changed"
    for setting in SETTINGS:
        key = f"{name}/{setting}"
        got, want = outputs[key].astype(np.int16), references[key].astype(np.int16)
        assert got.shape == want.shape
        worst = int(np.abs(got - want).max())
        assert worst <= 1, f"{key}: enhanced frames differ by up to {worst}/255"
        # The enhancement is not a no-op: the test would catch a model that stopped working.
        assert outputs[key].std() > 0
