"""The one per-frame roll-out of a sequence through codec and enhancer.

::

    rollout = Rollout(enhancer, seed=0, intra_period=32)      # the checkpoint's sampling
    for frame in frames:                                       # frames in: coded for real
        result = rollout.step(frame)                           # EnhancedFrame
    rollout = Rollout(enhancer, enhancer.sampling.override(residual_scale=0.5))
    for data, out in decode_container(codec, container):       # bytes in: decoded there
        enhanced = rollout.enhance(out.decoded, out.latent)
    rollout = Rollout(enhancer, signal=SignalConfig("lpips"))   # the encoder chooses a
    result = rollout.step(frame)                                # strength map per frame:
    rollout.enhance(decoded, latent, strength_bytes=result.strength_bytes)   # decoder side

A roll-out owns everything that carries from one frame to the next: the codec's
reference state and intra decision (:class:`enhancer.codecs.CodecStream`), the previous
enhanced frame, the seeded generator and the start noise. The conditioning dict is built
by :meth:`enhancer.diffusion.ResidualDiffusion.condition`, as in training.

Signalled strength (:mod:`enhancer.strength`): with ``signal``, :meth:`Rollout.step` has
the source in hand and chooses, per block, how much of the residual to add (a
:class:`enhancer.strength.StrengthMap`, coded to a few bytes that travel with the frame);
:meth:`Rollout.enhance` given those bytes applies the same map, so encoder and decoder make
the same frame. Without bytes the sampling's ``residual_scale`` applies everywhere.

Start noise (:attr:`enhancer.diffusion.Sampling.noise`): with ``shared`` the roll-out draws
one noise field (seeded) and starts every frame from it; with ``fresh`` every frame draws
its own. The roll-out needs only what :class:`RolloutEnhancer` lists of the enhancer, so
this module does not import :mod:`enhancer.pipeline.enhancer` (which imports it).
"""

from __future__ import annotations


import warnings
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter
from enhancer.codecs.stream import CodecStream
from enhancer.diffusion.sampling import Sampling
from enhancer.strength import MapChooser, SignalConfig, StrengthMap, StrengthMapError
from enhancer.strength.coding import decode_map, encode_map


@dataclass
class EnhancedFrame:
    index: int
    decoded: Tensor  # (1, 3, H, W) in [0, 1]: the codec's decode
    enhanced: Tensor  # (1, 3, H, W) in [0, 1]
    num_bytes: int | None  # bytes of this frame in the bitstream (None: not coded here),
    #                        its strength map's included
    strength_bytes: bytes = b""  # the coded strength map sent with the frame (b"": none)
    strength: StrengthMap | None = None  # the map the encoder chose (None: none)


class RolloutEnhancer(Protocol):
    """What a roll-out uses of :class:`enhancer.pipeline.Enhancer`."""

    codec: CodecAdapter
    sampling: Sampling
    student: Sampling | None
    temporal: bool
    signal_scales: tuple[float, ...]

    @property
    def model_tag(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def trained_for_steps(self, steps: int) -> bool: ...

    def canvas_shape(self, decoded: Tensor) -> tuple[int, ...]: ...

    def sample_residual(self, decoded: Tensor, latent: Tensor | None,
                        prev_enhanced: Tensor | None, sampling: Sampling,
                        generator: torch.Generator | None = None,
                        start_noise: Tensor | None = None,
                        quality: int | None = None) -> Tensor: ...


class Rollout:
    """One sequence, frame by frame, through the codec and the enhancer (push-style).

    Args:
        enhancer:       the :class:`enhancer.pipeline.Enhancer`.
        sampling:       None: the enhancer's own defaults (``enhancer.sampling``), the
                        residual scale included.
        seed:           seeds this sequence's generator (start noise, eta noise).
        intra_period:   the codec's intra period (for :meth:`step`).
        quality:        the codec quality of the decodes :meth:`enhance` gets (None: the
                        enhancer's codec's; an x264 model run at another CRF is told here).
        signal:         encoder side: choose a strength map for every frame :meth:`step`
                        codes (None: no map, ``sampling.residual_scale`` everywhere).
    """

    def __init__(self, enhancer: RolloutEnhancer, sampling: Sampling | None = None,
                 seed: int = 0, intra_period: int = -1, quality: int | None = None,
                 signal: SignalConfig | None = None):
        self.enhancer = enhancer
        self.sampling = sampling or enhancer.sampling
        student = enhancer.student
        if not enhancer.trained_for_steps(self.sampling.steps):
            warnings.warn(
                f"this enhancer is a {student.steps}-step student (trained for "
                f"{student.label()}); {self.sampling.steps} steps run but were never trained "
                f"or validated: drop --steps to use its own", stacklevel=2)
        self.quality = enhancer.codec.quality if quality is None else quality
        enhancer.codec.check_quality(self.quality)
        self.codec = CodecStream(enhancer.codec, intra_period)
        self.generator = torch.Generator(device=enhancer.device).manual_seed(seed)
        self.prev_enhanced: Tensor | None = None
        self.prev_residual: tuple[Tensor, Tensor] | None = None  # (decoded, residual): hold
        self.start_noise: Tensor | None = None
        self.index = 0
        self.chooser = (MapChooser(signal, default_scale=self.sampling.residual_scale)
                        if signal is not None else None)
        self.previous_map: StrengthMap | None = None  # the last map sent or received

    def step(self, frame: Tensor) -> EnhancedFrame:
        """Code ``frame`` (1, 3, H, W) for real, then enhance what the decoder sees (with
        ``signal``: choose this frame's strength map against ``frame`` and apply it)."""
        frame = frame.to(self.enhancer.device)
        data, coded = self.codec.compress(frame)
        index = self.index
        if self.chooser is None:
            enhanced = self.enhance(coded.decoded, coded.latent)
            return EnhancedFrame(index, coded.decoded, enhanced, len(data))
        enhanced, strength_bytes, strength = self.signal(frame, coded.decoded, coded.latent)
        return EnhancedFrame(index, coded.decoded, enhanced, len(data) + len(strength_bytes),
                             strength_bytes=strength_bytes, strength=strength)

    def signal(self, source: Tensor, decoded: Tensor,
               latent: Tensor | None) -> tuple[Tensor, bytes, StrengthMap]:
        """Encoder side, for a frame already coded elsewhere: choose the strength map of the
        next frame with its ``source`` in hand; returns ``(enhanced, strength_bytes,
        strength)``, ``enhanced`` being exactly what :meth:`enhance` makes of those bytes."""
        if self.chooser is None:
            raise ValueError("this roll-out has no signal settings; pass signal=SignalConfig()")
        residual = self._residual(decoded, latent)
        strength = replace(self.chooser.choose(source, decoded, residual),
                                       model_tag=self.enhancer.model_tag)
        unchanged = strength.same_as(self.previous_map)
        strength_bytes = b"" if unchanged else encode_map(strength, self.previous_map)
        return self._apply(decoded, residual, strength), strength_bytes, strength

    def enhance(self, decoded: Tensor, latent: Tensor | None,
                strength_bytes: bytes | None = None) -> Tensor:
        """Enhance the next frame's decode ``(1, 3, H, W)`` (and latent); advances the roll-out.

        ``strength_bytes``: the frame's coded strength map from the stream (None or empty:
        none was sent: the last map received persists; before any, the sampling's residual
        scale applies)."""
        if not strength_bytes and self.previous_map is not None:
            return self._apply(decoded, self._residual(decoded, latent), self.previous_map)
        if not strength_bytes:
            if self.sampling.residual_scale == 0.0:
                return self._advance(decoded.clone())  # the codec's own decode, bit for bit
            residual = self._residual(decoded, latent)
            return self._advance((decoded + self.sampling.residual_scale * residual).clamp(0, 1))
        strength = decode_map(strength_bytes, self.previous_map, tuple(decoded.shape[-2:]))
        if strength.model_tag is not None and strength.model_tag != self.enhancer.model_tag:
            raise StrengthMapError(
                f"the stream's strength maps were chosen for another enhancer (model tag "
                f"{strength.model_tag:04x}; this one is {self.enhancer.model_tag:04x}): decode "
                "with the enhancer the encoder used (--enhancer), or re-encode with this one")
        unknown = sorted(set(strength.scales) - set(self.enhancer.signal_scales))
        if unknown:
            raise StrengthMapError(
                f"the stream's strength map uses scales {unknown}, which this model was not "
                f"validated for (it knows {self.enhancer.signal_scales}); re-encode with "
                "--signal-scales from that set")
        return self._apply(decoded, self._residual(decoded, latent), strength)

    def _apply(self, decoded: Tensor, residual: Tensor, strength: StrengthMap) -> Tensor:
        self.previous_map = strength
        return self._advance(strength.apply(decoded, residual))

    def _advance(self, enhanced: Tensor) -> Tensor:
        self.prev_enhanced = enhanced
        self.index += 1
        return enhanced

    def _residual(self, decoded: Tensor, latent: Tensor | None) -> Tensor:
        """The model's residual for the next frame at full strength (``residual_scale`` not
        applied)."""
        enhancer = self.enhancer
        start_noise = None
        if self.sampling.noise == "shared":
            shape = enhancer.canvas_shape(decoded)
            if self.start_noise is None or tuple(self.start_noise.shape) != shape:
                self.start_noise = torch.randn(shape, generator=self.generator,
                                               device=decoded.device, dtype=decoded.dtype)
            start_noise = self.start_noise
        prev = self.prev_enhanced if enhancer.temporal else None
        residual = enhancer.sample_residual(decoded, latent, prev, self.sampling,
                                            generator=self.generator, start_noise=start_noise,
                                            quality=self.quality)
        if not bool(torch.isfinite(residual).all()):  # never a NaN frame in a file
            raise ValueError(f"frame {self.index}: the enhancer's residual holds NaN or inf "
                             "values (its weights diverged or overflow float32); use an "
                             "earlier checkpoint")
        return self._hold(decoded, residual)

    def _hold(self, decoded: Tensor, residual: Tensor) -> Tensor:
        """``sampling.hold``: the previous residual kept where the decode did not change."""
        hold, previous = self.sampling.hold, self.prev_residual
        if hold > 0 and previous is not None and previous[0].shape == decoded.shape:
            change = (decoded - previous[0]).abs_().mean(1, keepdim=True)  # (1, 1, H, W)
            kept = change.mul_(-1 / hold).add_(1).clamp_(0, 1)  # 1: unchanged, 0: >= hold
            residual = torch.lerp(residual, previous[1], kept)  # exactly previous at 1
        self.prev_residual = (decoded, residual)
        return residual
