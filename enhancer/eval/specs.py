"""Enhancers to evaluate: checkpoints checked against the codec, one per rate point if
trained so, with the sampling variants (steps, overrides, residual scales) to run."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from enhancer.data.paths import fill_quality, names_one_file
from enhancer.diffusion import Sampling
from enhancer.pipeline.checkpoint import (
    BUNDLED_DIR,
    checkpoint_codec,
    load_enhancer,
    resolve_enhancer_path,
)
from enhancer.pipeline.enhancer import Enhancer
from enhancer.strength import SignalConfig


@dataclass
class EnhancerSpec:
    """One enhancer to evaluate, with the step counts and residual scales to try
    (None in either: the checkpoint's own default).

    ``label`` names it in rows and plots; ``untrained`` marks random weights (the
    rows, plots and printout then say so loudly). ``by_quality`` holds one enhancer per
    rate point when each was trained on its own codec (``ssf_small_q{quality}``);
    ``enhancer`` is then the first of them.
    """

    enhancer: Enhancer
    label: str
    steps: list[int | None] = field(default_factory=lambda: [None])
    residual_scales: list[float | None] = field(default_factory=lambda: [None])
    untrained: bool = False
    by_quality: dict[int, Enhancer] | None = None
    sampling_overrides: dict[str, Any] = field(default_factory=dict)
    # The encoder chooses a strength map per frame for this enhancer (enhancer.strength):
    # the row's bpp counts the maps' bytes. None: the checkpoint's strength everywhere.
    signal: SignalConfig | None = None

    def variants(self) -> list[Sampling]:
        """The sampling settings to run: the enhancer's own defaults with each of ``steps``
        x ``residual_scales`` (None: its default) and ``sampling_overrides`` applied."""
        return [self.enhancer.sampling.override(steps=steps, residual_scale=scale,
                                                **self.sampling_overrides)
                for steps in self.steps for scale in self.residual_scales]

    def signalled(self, signal: SignalConfig) -> EnhancerSpec:
        """This enhancer at its own sampling with encoder-chosen strength maps (one variant;
        the map replaces the residual scale)."""
        return replace(self, label=f"{self.label} + {signal.objective} map", steps=[None],
                       residual_scales=[1.0], signal=signal)  # the map scales the residual

    def at(self, quality: int) -> EnhancerSpec:
        """The spec to run at rate point ``quality`` (itself unless it has one per quality)."""
        if self.by_quality is None:
            return self
        return replace(self, enhancer=self.by_quality[quality], by_quality=None)


def resolve_enhancer_name(name_or_path: str | Path) -> Path:
    """:func:`resolve_enhancer_path` (a checkpoint file or a bundled model's name) with a
    "did you mean" for a mistyped bundled name."""
    try:
        return resolve_enhancer_path(name_or_path)
    except FileNotFoundError as err:
        from enhancer.cli import did_you_mean

        bundled = sorted(p.stem for p in BUNDLED_DIR.glob("*.pt")) if BUNDLED_DIR.is_dir() else []
        hint = did_you_mean(Path(str(name_or_path)).stem, bundled)
        if not hint:
            raise
        raise FileNotFoundError(f"{err}{hint}") from None


def check_enhancer_codec(checkpoint: str | Path, codec_name: str | None) -> dict[str, Any]:
    """A checkpoint's codec config (:func:`checkpoint_codec`); raise if it was trained for
    another codec than ``codec_name`` (None: any codec)."""
    codec = checkpoint_codec(resolve_enhancer_name(checkpoint))
    if codec_name is not None and codec["name"] != codec_name:
        raise ValueError(
            f"enhancer {str(checkpoint)!r} was trained for codec {codec['name']!r} "
            f"(quality {codec['quality']}), but --codec is {codec_name!r}; pass --codec "
            f"{codec['name']} or an enhancer trained for {codec_name}"
        )
    return codec


def load_enhancer_spec(checkpoint: str | Path, codec_name: str | None,
                       steps: list[int | None], residual_scales: list[float | None],
                       device: str = "cpu",
                       label: str | None = None,
                       qualities: list[int] | None = None,
                       sampling_overrides: dict[str, Any] | None = None) -> EnhancerSpec:
    """Check, then load an enhancer checkpoint (or bundled name) as an :class:`EnhancerSpec`.

    A name with ``{quality}`` (``ssf_small_q{quality}``) loads one enhancer per quality in
    ``qualities``; each must have been trained for that quality. ``codec_name=None`` takes
    the codec the checkpoint was trained for (``spec.enhancer.codec``).
    """
    check_device(device)
    label = label or Path(str(checkpoint)).stem
    overrides = {k: v for k, v in (sampling_overrides or {}).items() if v is not None}
    if names_one_file(checkpoint):
        check_enhancer_codec(checkpoint, codec_name)
        return EnhancerSpec(load_enhancer(checkpoint, device=device), label, list(steps),
                            list(residual_scales), sampling_overrides=overrides)
    if not qualities:
        raise ValueError(f"enhancer {str(checkpoint)!r} ('{{quality}}' in its name) has one "
                         "model per quality: pass --quality")
    by_quality = {}
    for quality in qualities:
        path = fill_quality(checkpoint, quality)
        trained_for = check_enhancer_codec(path, codec_name)
        codec_name = trained_for["name"]
        if trained_for["quality"] != quality:
            raise ValueError(f"enhancer {path!r} was trained for {codec_name} quality "
                             f"{trained_for['quality']}, not {quality}")
        by_quality[quality] = load_enhancer(path, device=device)
    return EnhancerSpec(by_quality[qualities[0]], label, list(steps), list(residual_scales),
                        by_quality=by_quality, sampling_overrides=overrides)


def check_spec(spec: EnhancerSpec, codec_name: str) -> None:
    if spec.enhancer.codec.name != codec_name:
        raise ValueError(
            f"enhancer {spec.label!r} wraps codec {spec.enhancer.codec.name!r}, but the "
            f"evaluation codes with {codec_name!r}; use an enhancer trained for {codec_name}"
        )
    for quality_spec in [spec.at(q) for q in (spec.by_quality or [None])]:
        quality_spec.variants()  # invalid sampling settings (and scales) fail here


def check_device(device: str) -> torch.device:
    """``device`` as a torch device; a clear error when it does not exist here."""
    try:
        torch_device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: {err}; use cpu or cuda") from err
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} asked for, but no CUDA device is available; "
                         "use --device cpu")
    return torch_device


def untrained_enhancer(codec_name: str, quality: int, device: str = "cpu",
                       temporal: bool = True) -> EnhancerSpec:
    """A ``tiny`` enhancer with random weights, flagged untrained (demo and tests only)."""
    check_device(device)
    from enhancer.config import CodecConfig, EnhancerConfig

    config = EnhancerConfig(codec=CodecConfig(name=codec_name, quality=quality), unet="tiny",
                            temporal=temporal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random codec weights are expected here
        torch.manual_seed(0)
        enhancer = Enhancer.from_config(config, device=device)
    return EnhancerSpec(enhancer, "random-untrained", untrained=True)
