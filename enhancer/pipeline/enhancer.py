"""The Enhancer: a codec adapter + a residual diffusion model, rolled out over a sequence.

::

    bytes ──codec.decompress──▶ decoded_t, latent_t
                                     │
    noise ──▶ DDIM, K steps of denoiser(r_k, k | latent_t, decoded_t, prev_enhanced) ──▶ r_t
                                     │
                 enhanced_t = decoded_t + s · r_t   (s = sampling.residual_scale in [0, 1])

``prev_enhanced`` is the previous *enhanced* frame (the decoded frame for the
first one). ``s = 0`` returns the codec's own decode exactly; ``s = 1`` the full
perceptual output. The conditioning work of a frame (the stem's response to the
decoded and previous frames, the latent's projections) is done once per frame, not
per step. A frame whose estimated denoiser memory exceeds ``memory_budget_mb`` is
denoised in the fewest overlapping tiles that fit (batched into as few forwards as the
budget allows), blended with a linear ramp at every sampling step, so the whole frame
shares one noise sample. Checkpoint files (saving, loading, bundled models) are
:mod:`enhancer.pipeline.checkpoint`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput
from enhancer.codecs.container import Container, decode_container
from enhancer.codecs.registry import load_codec
from enhancer.config import EnhancerConfig
from enhancer.data.padding import crop, pad_to_multiple
from enhancer.data.sequence import as_rgb_frame
from enhancer.diffusion import ResidualDiffusion, Sampling
from enhancer.models import build_unet
from enhancer.models.unet import FrameFeatures
from enhancer.pipeline.rollout import EnhancedFrame, Rollout
from enhancer.pipeline.stream import VideoStream, open_bitstream, quality_for_model
from enhancer.strength import DEFAULT_SCALES
from enhancer.strength.strength_map import model_tag as strength_model_tag
from enhancer.strength.sei import carried_strength


def build_diffusion(config: EnhancerConfig, codec: CodecAdapter) -> ResidualDiffusion:
    """The denoiser for ``codec``'s latent, wrapped in its parameterisation."""
    network = build_unet(config.unet_config(), codec.latent_channels, codec.latent_stride,
                         config.temporal, config.quality_conditioning)
    return ResidualDiffusion(
        network,
        prediction=config.diffusion.prediction,
        target=config.diffusion.target,
        residual_gain=config.diffusion.residual_gain,
    )


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None: float32, no autocast); unknown ones fail."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


class Enhancer(torch.nn.Module):
    """``Enhancer(codec, diffusion)``: decode, then sample the residual frame by frame."""

    def __init__(
        self,
        codec: CodecAdapter,
        diffusion: ResidualDiffusion,
        config: EnhancerConfig | None = None,
        *,
        sampling: Sampling | None = None,
        student: Sampling | None = None,
        student_any_steps: bool = False,
        precision: str = "fp32",
        trained_qualities: tuple[int, int] | None = None,
        memory_budget_mb: float = 1536.0,
        tile_overlap: int = 64,
    ):
        """``sampling``: the default sampling (None: :class:`Sampling`'s defaults; a
        checkpoint's own come from :func:`enhancer.pipeline.load_enhancer`).
        ``student``: a few-step student's trained sampling (other settings run, with a
        warning); None: a diffusion-trained model. ``student_any_steps``: the student was
        also trained along its own DDIM path (``consistency_weight``), so any step count
        from its start is one it was trained for. ``precision`` (:data:`PRECISIONS`):
        ``bf16`` autocasts the denoiser to bfloat16 (about 2x faster on CPUs with
        AVX512-BF16 / AMX, measured in tools/bench.py), ``fp16`` to float16 (CUDA); weights
        and the sampler's arithmetic stay float32. ``trained_qualities``: the codec
        qualities ``(low, high)`` the model was trained on, whose streams it enhances
        (None: its codec's own quality)."""
        super().__init__()
        precision_dtype(precision)  # an unknown precision fails here
        self.codec = codec
        self.diffusion = diffusion
        self.config = config
        self.temporal = bool(getattr(diffusion.network, "temporal", False))
        self.sampling = Sampling() if sampling is None else sampling
        self.student = student
        self.student_any_steps = student_any_steps
        self.precision = precision
        self.memory_budget_mb = memory_budget_mb
        self.tile_overlap = tile_overlap
        self.trained_qualities = (trained_qualities if trained_qualities is not None
                                  else (codec.quality, codec.quality))
        # The residual scales a signalled strength map may use with this model.
        self.signal_scales: tuple[float, ...] = DEFAULT_SCALES

    @property
    def model_tag(self) -> int:
        """16 bits naming these weights in the strength maps an encoder chooses for them
        (:func:`enhancer.strength.strength_map.model_tag`), computed once."""
        if getattr(self, "_model_tag", None) is None:
            self._model_tag = strength_model_tag(self.diffusion.network.state_dict())
        return self._model_tag

    def trained_for_steps(self, steps: int) -> bool:
        """Whether sampling with ``steps`` denoiser calls is what this model was trained
        for: any count for a diffusion-trained model or a student trained along its DDIM
        path (``consistency_weight``), at most its own for any other student."""
        return self.student is None or self.student_any_steps or steps <= self.student.steps

    @classmethod
    def from_config(cls, config: EnhancerConfig, device: str | torch.device = "cpu",
                    **settings) -> Enhancer:
        """A fresh enhancer (random denoiser) for ``config``; ``settings`` are the
        constructor's (``sampling``, ``student``, ...)."""
        codec = load_codec(
            config.codec.name, config.codec.quality, checkpoint=config.codec.checkpoint, device=device
        )
        return cls(codec, build_diffusion(config, codec), config, **settings).to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.diffusion.parameters()).device

    def canvas_shape(self, decoded: Tensor) -> tuple[int, ...]:
        """Shape of the padded canvas a decoded frame ``(B, 3, H, W)`` is denoised on."""
        multiple = self._canvas_multiple()
        height, width = decoded.shape[-2:]
        return (*decoded.shape[:-2], _round_up(height, multiple), _round_up(width, multiple))

    # --- one frame ----------------------------------------------------------------------
    @torch.no_grad()
    def enhance_frame(
        self,
        decoded: Tensor,
        latent: Tensor | None,
        prev_enhanced: Tensor | None = None,
        sampling: Sampling | None = None,
        generator: torch.Generator | None = None,
        start_noise: Tensor | None = None,
        quality: int | None = None,
    ) -> Tensor:
        """Enhance one decoded frame ``(B, 3, H, W)``; returns ``(B, 3, H, W)`` in [0, 1].

        ``sampling``: None takes :attr:`sampling` (``enhancer.sampling.override(steps=2)``
        changes one setting). ``start_noise``: standard normal noise of
        :meth:`canvas_shape` (None: drawn from ``generator``). ``quality``: the codec
        quality ``decoded`` was coded at (None: this enhancer's codec's); a
        quality-conditioned model takes it as an input.
        Sequences go through :class:`enhancer.pipeline.Rollout`.
        """
        sampling = self.sampling if sampling is None else sampling
        if sampling.residual_scale == 0.0:
            return decoded.clone()  # the codec's own MSE decode, bit for bit
        residual = self.sample_residual(decoded, latent, prev_enhanced, sampling, generator,
                                        start_noise, quality)
        return (decoded + sampling.residual_scale * residual).clamp(0, 1)

    @torch.no_grad()
    def sample_residual(
        self,
        decoded: Tensor,
        latent: Tensor | None,
        prev_enhanced: Tensor | None,
        sampling: Sampling,
        generator: torch.Generator | None = None,
        start_noise: Tensor | None = None,
        quality: int | None = None,
    ) -> Tensor:
        """The sampled residual ``(B, 3, H, W)`` at full strength (``sampling.residual_scale``
        is not applied): ``decoded + residual`` is the model's whole output."""
        height, width = decoded.shape[-2:]
        # Work on the codec's padded canvas: the latent covers exactly that area.
        multiple = self._canvas_multiple()
        padded = pad_to_multiple(decoded, multiple)
        prev = pad_to_multiple(prev_enhanced, multiple) if prev_enhanced is not None else None
        level = self.codec.quality_level(self.codec.quality if quality is None else quality)
        denoise = self._frame_denoiser(self.diffusion.condition(padded, latent, prev, level))

        # One noise sample for the whole canvas (tiles share it).
        with self._autocast():
            clean = self.diffusion.sample(denoise, padded, sampling, generator=generator,
                                          start_noise=start_noise)
        sample = self.diffusion.decode_target(clean.to(padded.dtype), padded)
        return crop(sample, height, width) - decoded

    def _autocast(self):
        """The autocast context of :attr:`precision` (a no-op for fp32)."""
        dtype = precision_dtype(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        device = self.device.type
        if dtype is torch.float16 and device != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; on a CPU use 'bf16'")
        return torch.autocast(device, dtype=dtype)

    def _canvas_multiple(self) -> int:
        unet_multiple = self.diffusion.network.size_multiple
        return math.lcm(self.codec.pad_multiple, self.codec.latent_stride, unet_multiple)

    def activation_bytes_per_pixel(self) -> float:
        """Estimated peak bytes per canvas pixel of one denoiser forward (no grad, fp32).

        Calibrated on the ``tiny`` preset (470 MB measured for an untiled 1920x1088
        canvas on CPU: about 225 B/px; the estimate gives 323, on the safe side).
        """
        config = self.diffusion.network.config
        p = config.pixel_unshuffle
        channels_per_pixel = sum(config.dim * m / (p * 2**i) ** 2
                                 for i, m in enumerate(config.dim_mults))
        return 4.0 * 8.0 * channels_per_pixel

    def tile_plan(self, height: int, width: int) -> tuple[int, int, list[tuple[slice, slice]], int]:
        """How a ``height`` x ``width`` canvas is denoised: ``(tile_h, tile_w, tiles, batch)``.

        One forward over the whole canvas when its estimated memory fits
        ``memory_budget_mb``; else the fewest tiles (each aligned to the canvas multiple,
        ``tile_overlap`` px of overlap) that fit, as many per forward as the budget allows.
        """
        budget = self.memory_budget_mb * 2**20 / self.activation_bytes_per_pixel()
        if height * width <= budget:
            return height, width, [(slice(0, height), slice(0, width))], 1
        align, overlap = self._canvas_multiple(), self._aligned_overlap()
        best = None
        for rows in range(1, height // align + 1):
            tile_h = _round_up(-(-(height + (rows - 1) * overlap) // rows), align)
            for cols in range(1, width // align + 1):
                tile_w = _round_up(-(-(width + (cols - 1) * overlap) // cols), align)
                if tile_h * tile_w <= budget or (tile_h == align and tile_w == align):
                    if best is None or rows * cols < best[0]:
                        best = (rows * cols, tile_h, tile_w, rows, cols)
                    break
        if best is None:  # the overlap alone is wider than a tile the budget allows
            raise ValueError(
                f"memory_budget_mb={self.memory_budget_mb:g} leaves no room for tiles of a "
                f"{height}x{width} canvas with tile_overlap={self.tile_overlap}; raise "
                "memory_budget_mb or lower tile_overlap")
        _, tile_h, tile_w, rows, cols = best
        tile_h, tile_w = min(tile_h, height), min(tile_w, width)
        tiles = [(slice(top, top + tile_h), slice(left, left + tile_w))
                 for top in _tile_starts(height, tile_h, rows)
                 for left in _tile_starts(width, tile_w, cols)]
        batch = max(1, int(budget // (tile_h * tile_w)))
        return tile_h, tile_w, tiles, batch

    def _aligned_overlap(self) -> int:
        """``tile_overlap`` rounded down to the canvas multiple (at least one multiple)."""
        align = self._canvas_multiple()
        return max(align, self.tile_overlap // align * align)

    def _frame_denoiser(self, cond: dict[str, Tensor]):
        """``(x_t, t) -> x0`` for one frame: the conditioning work is done here, once."""
        height, width = cond["decoded"].shape[-2:]
        tile_h, tile_w, tiles, batch = self.tile_plan(height, width)
        cond = self.diffusion.precompute(cond)
        if len(tiles) == 1:
            return lambda x_t, t: self.diffusion.denoise(x_t, t, cond)
        stride = self.codec.latent_stride
        unshuffle = self.diffusion.network.config.pixel_unshuffle
        ramp = _ramp(tile_h, tile_w, self._aligned_overlap(), cond["decoded"])
        groups = [tiles[i:i + batch] for i in range(0, len(tiles), batch)]

        def tile_cond(group: list[tuple[slice, slice]]) -> dict[str, Tensor]:
            parts = []
            for rows, cols in group:
                part = {k: cond[k][..., rows, cols] for k in ("decoded", "prev_enhanced")
                        if k in cond}
                if "quality_level" in cond:  # one number per frame: every tile has it
                    part["quality_level"] = cond["quality_level"]
                if "latent" in cond:
                    part["latent"] = cond["latent"][..., rows.start // stride:rows.stop // stride,
                                                    cols.start // stride:cols.stop // stride]
                part["features"] = cond["features"].tile(rows, cols, unshuffle)
                parts.append(part)
            merged = {k: torch.cat([part[k] for part in parts]) for k in parts[0]
                      if k != "features"}
            merged["features"] = FrameFeatures.cat([part["features"] for part in parts])
            return merged

        group_conds = [tile_cond(group) for group in groups]  # once per frame

        def denoise(x_t: Tensor, t: Tensor) -> Tensor:
            output = torch.zeros_like(x_t)
            weight_sum = torch.zeros_like(x_t[:, :1])
            for group, group_c in zip(groups, group_conds):
                x_tiles = torch.cat([x_t[..., rows, cols] for rows, cols in group])
                prediction = self.diffusion.denoise(x_tiles, t.repeat(len(group)), group_c)
                for k, (rows, cols) in enumerate(group):
                    part = prediction[k * x_t.shape[0]:(k + 1) * x_t.shape[0]]
                    output[..., rows, cols] += part * ramp
                    weight_sum[..., rows, cols] += ramp
            return output / weight_sum

        return denoise

    # --- sequences ----------------------------------------------------------------------
    def enhance(
        self,
        source: Container | VideoStream | str | Path | Iterable[Tensor],
        steps: int | None = None,
        residual_scale: float | None = None,
        seed: int = 0,
        intra_period: int = -1,
        *,
        gamma: float | None = None,
        eta: float | None = None,
        t_start: float | None = None,
        noise: str | None = None,
        hold: float | None = None,
    ) -> Iterator[EnhancedFrame]:
        """Decode a bitstream (a :class:`Container`, a :class:`VideoStream`, or the path of a
        ``.bin`` or of any H.264/HEVC file) or code+decode frames, then enhance, streaming
        one :class:`EnhancedFrame` per frame.

        A bitstream may be at any quality the model was trained for (:attr:`trained_qualities`;
        a quality-conditioned model is told the stream's); any other is refused at once,
        naming the range, or for a learned codec the bundled model of that quality.

        Frames are float ``(1, 3, H, W)`` tensors in [0, 1] (uint8 tensors are divided by
        255; anything else is refused, naming the frame); they are coded for real with the
        codec (``intra_period`` applies), so the result is what a receiver of the bytes
        would see. ``seed`` is an integer in 0..2**63-1. Sampling settings left at None
        take the checkpoint's defaults (:attr:`sampling`).
        """
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
        sampling = self.sampling.override(steps=steps, gamma=gamma, eta=eta, t_start=t_start,
                                          noise=noise, residual_scale=residual_scale,
                                          hold=hold)
        if isinstance(source, (str, Path)):
            source = open_bitstream(source)
        if isinstance(source, (Container, VideoStream)):  # checked here, decoded lazily
            side = source.side if isinstance(source, Container) else []
            return self._enhance_decoded(*self._decoder_of(source), sampling, seed,
                                         source.codec, side)
        return self._enhance_frames(source, sampling, seed, intra_period)

    def _decoder_of(self, source: Container | VideoStream
                    ) -> tuple[Iterator[tuple[bytes, CodecOutput]], int]:
        """The decoded frames of a bitstream, and the quality this model is told for it."""
        if source.quality is None:
            raise CodecError(f"{source.path}: no quality can be read ({source.quality_source}); "
                             "open it with open_video_stream(path, quality=CRF)")
        quality = quality_for_model(self.codec.name, self.codec.quality, self.trained_qualities,
                                    source.codec, source.quality)
        if isinstance(source, VideoStream):
            return source.decode(), quality
        codec = self.codec
        if (source.codec, source.quality) != (codec.name, codec.quality):
            codec = load_codec(source.codec, source.quality, device=self.device)  # no weights
        frames = decode_container(codec, source,
                                  weights_hint="the enhancer whose codec encoded it")
        return frames, quality

    def _enhance_decoded(self, frames: Iterator[tuple[bytes, CodecOutput]], quality: int,
                         sampling: Sampling, seed: int, codec: str,
                         side: list[bytes]) -> Iterator[EnhancedFrame]:
        rollout = Rollout(self, sampling, seed, quality=quality)
        for index, (data, coded) in enumerate(frames):  # decoded (and checked) there
            # A stream's per-frame data enters the roll-out here: the decode (and latent),
            # and the frame's strength map, if the encoder sent one (in the .bin's side
            # payload, or as SEI in an H.264/HEVC packet: enhancer.strength.sei).
            frame_side = side[index] if index < len(side) else b""
            strength_bytes = carried_strength(codec, data, frame_side)
            enhanced = rollout.enhance(coded.decoded, coded.latent, strength_bytes=strength_bytes)
            yield EnhancedFrame(index, coded.decoded, enhanced, len(data) + len(frame_side),
                                strength_bytes=strength_bytes or b"")

    def _enhance_frames(self, frames: Iterable[Tensor], sampling: Sampling, seed: int,
                        intra_period: int) -> Iterator[EnhancedFrame]:
        rollout = Rollout(self, sampling, seed, intra_period)
        for index, frame in enumerate(frames):
            yield rollout.step(as_rgb_frame(frame, f"frame {index}"))


def _tile_starts(size: int, tile: int, count: int) -> list[int]:
    """``count`` tile starts spread over ``size``: the first at 0, the last at ``size - tile``."""
    if count == 1 or size <= tile:
        return [0]
    step = (size - tile) / (count - 1)
    multiple = math.gcd(size, tile)  # both are multiples of the canvas alignment
    return [round(k * step / multiple) * multiple for k in range(count)]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _ramp(height: int, width: int, overlap: int, like: Tensor) -> Tensor:
    """(1, 1, h, w) blending weights: 1 inside, a linear ramp over ``overlap`` at the edges."""

    def ramp_1d(n: int) -> Tensor:
        position = torch.arange(n, device=like.device, dtype=like.dtype)
        edge = torch.minimum(position + 1, n - position) / (overlap + 1)
        return edge.clamp(max=1.0)

    return (ramp_1d(height)[:, None] * ramp_1d(width)[None, :])[None, None]
