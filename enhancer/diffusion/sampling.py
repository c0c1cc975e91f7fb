"""Sampling settings: how the residual is sampled, one frozen value from where the user's
settings enter (checkpoint, CLI, API, evaluation spec, a student's training config) down to
:meth:`enhancer.diffusion.ResidualDiffusion.sample`.

::

    sampling = Sampling.from_dict(payload["sampling"])      # a checkpoint's defaults
    sampling = sampling.override(steps=4, gamma=None)        # None keeps a field
    clean = diffusion.sample(denoise, decoded, sampling, generator=generator)

Start noise (``noise``): ``shared`` draws one noise field per sequence (seeded) and starts
every frame from it, so a static region gets the same sample in every frame; ``fresh``
draws new start noise for every frame (the behaviour before sampling defaults were stored
in checkpoints). The roll-out (:class:`enhancer.pipeline.Rollout`) owns that noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

NOISE_MODES = ("shared", "fresh")
GAMMA_RANGE = (0.0, 1.5)


@dataclass(frozen=True)
class Sampling:
    """How the residual is sampled; stored in checkpoints as ``sampling``.

    steps:   denoiser calls per frame (DDIM).
    gamma:   start-noise scale in [0, 1.5] (1: the model's prior; CDC decodes with 0.8;
             0: deterministic from the late-start mean).
    eta:     DDIM stochasticity in [0, 1] (0: deterministic given the start noise).
    t_start: diffusion time the reverse process starts from, in (0, 1] (1: pure noise;
             < 1: a DIRAC-style late start near the decoded frame).
    noise:   ``shared`` (one start-noise field per sequence) or ``fresh`` (per frame).
    residual_scale: the output blend ``s`` in [0, 1]: ``decoded + s * residual`` (1: the
             sampled residual as it is; 0: the codec's own decode, bit for bit).
    hold:    (video) where the decode changed by less than ``hold`` since the previous
             frame (mean absolute change of a pixel, on the [0, 1] scale), the previous
             frame's residual is kept, blended linearly (no change: kept whole; ``hold``
             or more: the new one), so static regions do not flicker with new detail;
             0: off, every frame's residual as sampled.

    The defaults are what every checkpoint without stored settings gets: the sampling
    of the first bundled models (10 steps from pure noise, fresh noise per frame, the
    whole residual).
    """

    steps: int = 10
    gamma: float = 1.0
    eta: float = 0.0
    t_start: float = 1.0
    noise: str = "fresh"
    residual_scale: float = 1.0
    hold: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"sampling steps must be an integer >= 1, got {self.steps!r}")
        low, high = GAMMA_RANGE
        if not low <= self.gamma <= high:
            raise ValueError(f"gamma (start-noise scale) must be in [{low}, {high}], got "
                             f"{self.gamma}; 1 is the model's prior, 0 starts without noise")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if not 0.0 < self.t_start <= 1.0:
            raise ValueError(f"t_start must be in (0, 1], got {self.t_start}; 1 starts from "
                             "pure noise, smaller values start part-way")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if not 0.0 <= self.residual_scale <= 1.0:
            raise ValueError(f"residual_scale must be in [0, 1], got {self.residual_scale}; "
                             "1 adds the whole sampled residual, 0 gives the codec's decode")
        if not 0.0 <= self.hold <= 1.0:
            raise ValueError(f"hold must be in [0, 1], got {self.hold}; it is the decode's "
                             "change per pixel below which the previous residual is kept "
                             "(0.01 is about 2.5 levels of 255; 0: off)")

    def override(self, **values: Any) -> Sampling:
        """A copy with the given fields replaced; ``None`` keeps a field as it is."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Sampling:
        """From a checkpoint's ``sampling`` entry (None: the defaults); unknown keys fail."""
        if values is None:
            return cls()
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown sampling settings {unknown}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        return cls(**values)

    def label(self) -> str:
        """Short text for rows and plots, e.g. ``4st g0.5 t0.6 shared`` (``s0.5`` is added
        when only part of the residual is added, ``h0.01`` with a hold)."""
        text = f"{self.steps}st g{self.gamma:g}"
        if self.t_start < 1:
            text += f" t{self.t_start:g}"
        if self.eta > 0:
            text += f" eta{self.eta:g}"
        text = f"{text} {self.noise}"
        if self.residual_scale != 1.0:
            text += f" s{self.residual_scale:g}"
        return text if self.hold == 0 else f"{text} h{self.hold:g}"
