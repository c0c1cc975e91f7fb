"""How people see a variant: ``x264_temporal_tiny (1 step)`` in tables, plots and crops.

The full sampling settings stay in the rows (``sampling``), ``settings.json`` and
``results.json``; the label names the enhancer, its step count and only what this run set
apart from the checkpoint's own sampling (a residual strength, a gamma, ...).
"""

from __future__ import annotations

from typing import Any

from enhancer.diffusion import Sampling


def variant_label(spec: Any, sampling: Sampling) -> str:
    """The label of ``spec``'s (:class:`enhancer.eval.specs.EnhancerSpec`) variant
    ``sampling``: ``"<enhancer> (<n> step(s)[, what the run overrode])"``."""
    parts = [f"{sampling.steps} step{'' if sampling.steps == 1 else 's'}"]
    signalled = getattr(spec, "signal", None) is not None  # the map sets the strength
    if not signalled and any(scale is not None for scale in spec.residual_scales):
        parts.append(f"strength {sampling.residual_scale:g}")
    for key, value in sorted(spec.sampling_overrides.items()):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return f"{spec.label} ({', '.join(parts)})"
