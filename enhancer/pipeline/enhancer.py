"""The Enhancer: a codec adapter + a residual diffusion model, rolled out over a sequence.

::

    bytes ──codec.decompress──▶ decoded_t, latent_t
                                     │
    noise ──▶ DDIM, K steps of denoiser(r_k, k | latent_t, decoded_t, prev_enhanced) ──▶ r_t
                                     │
                 enhanced_t = decoded_t + s · r_t        (s = residual_scale in [0, 1])

``prev_enhanced`` is the previous *enhanced* frame (the decoded frame for the
first one). ``s = 0`` returns the codec's own decode exactly; ``s = 1`` the full
perceptual output. Frames larger than ``max_tile_pixels`` are denoised in
overlapping tiles blended with a linear ramp, at every sampling step, so the
whole frame shares one noise sample.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from enhancer.codecs.base import CodecAdapter, load_codec
from enhancer.codecs.container import Container, decode_container, write_atomic
from enhancer.config import EnhancerConfig, to_dict
from enhancer.data.padding import crop, pad_to_multiple
from enhancer.diffusion import ResidualDiffusion, sample_ddim
from enhancer.models import build_unet
from enhancer.pipeline.rollout import Rollout, Sampling


@dataclass
class EnhancedFrame:
    index: int
    decoded: Tensor  # (1, 3, H, W) in [0, 1]: the codec's decode
    enhanced: Tensor  # (1, 3, H, W) in [0, 1]
    num_bytes: int | None  # bytes of this frame in the bitstream (None: not coded here)


def build_diffusion(config: EnhancerConfig, codec: CodecAdapter) -> ResidualDiffusion:
    """The denoiser for ``codec``'s latent, wrapped in its parameterisation."""
    network = build_unet(
        config.unet_config(), codec.latent_channels, codec.latent_stride, config.temporal
    )
    return ResidualDiffusion(
        network,
        prediction=config.diffusion.prediction,
        target=config.diffusion.target,
        residual_scale_factor=config.diffusion.residual_scale_factor,
    )


class Enhancer(torch.nn.Module):
    """``Enhancer(codec, diffusion)``: decode, then sample the residual frame by frame."""

    def __init__(
        self,
        codec: CodecAdapter,
        diffusion: ResidualDiffusion,
        config: EnhancerConfig | None = None,
        max_tile_pixels: int = 1280 * 720,
        tile_size: int = 512,
        tile_overlap: int = 64,
    ):
        super().__init__()
        self.codec = codec
        self.diffusion = diffusion
        self.config = config
        self.temporal = bool(getattr(diffusion.network, "temporal", False))
        self.sampling = Sampling()  # load_enhancer sets the checkpoint's defaults
        self.max_tile_pixels = max_tile_pixels
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap

    @classmethod
    def from_config(cls, config: EnhancerConfig, device: str | torch.device = "cpu") -> Enhancer:
        codec = load_codec(
            config.codec.name, config.codec.quality, checkpoint=config.codec.checkpoint, device=device
        )
        return cls(codec, build_diffusion(config, codec), config).to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.diffusion.parameters()).device

    def canvas_shape(self, decoded: Tensor) -> tuple[int, ...]:
        """Shape of the padded canvas a decoded frame ``(B, 3, H, W)`` is denoised on."""
        multiple = self._canvas_multiple()
        height, width = decoded.shape[-2:]
        return (*decoded.shape[:-2], -(-height // multiple) * multiple,
                -(-width // multiple) * multiple)

    # --- one frame ----------------------------------------------------------------------
    @torch.no_grad()
    def enhance_frame(
        self,
        decoded: Tensor,
        latent: Tensor | None,
        prev_enhanced: Tensor | None = None,
        steps: int | None = None,
        residual_scale: float = 1.0,
        generator: torch.Generator | None = None,
        eta: float | None = None,
        gamma: float | None = None,
        t_start: float | None = None,
        start_noise: Tensor | None = None,
    ) -> Tensor:
        """Enhance one decoded frame ``(B, 3, H, W)``; returns ``(B, 3, H, W)`` in [0, 1].

        ``steps``, ``eta``, ``gamma``, ``t_start``: None takes :attr:`sampling`'s value.
        ``start_noise``: standard normal noise of :meth:`canvas_shape` (None: drawn from
        ``generator``). Sequences go through :class:`enhancer.pipeline.Rollout`.
        """
        if not 0.0 <= residual_scale <= 1.0:
            raise ValueError(f"residual_scale must be in [0, 1], got {residual_scale}")
        sampling = self.sampling.override(steps=steps, eta=eta, gamma=gamma, t_start=t_start)
        if residual_scale == 0.0:
            return decoded.clone()  # the codec's own MSE decode, bit for bit
        height, width = decoded.shape[-2:]
        # Work on the codec's padded canvas: the latent covers exactly that area.
        multiple = self._canvas_multiple()
        padded = pad_to_multiple(decoded, multiple)
        prev = pad_to_multiple(prev_enhanced, multiple) if prev_enhanced is not None else None
        cond = self.diffusion.condition(padded, latent, prev)

        def denoise(x_t: Tensor, t: Tensor) -> Tensor:
            return self._denoise_tiled(x_t, t, cond)

        start_mean = None
        if sampling.t_start < 1:  # a late start diffuses from "no residual" (the decode)
            start_mean = self.diffusion.encode_target(padded, padded)
        # One noise sample for the whole canvas (tiles share it).
        clean = sample_ddim(denoise, padded.shape, sampling.steps, eta=sampling.eta,
                            gamma=sampling.gamma, generator=generator, device=decoded.device,
                            dtype=decoded.dtype, start_noise=start_noise,
                            t_start=sampling.t_start, start_mean=start_mean)
        sample = self.diffusion.decode_target(clean, padded)
        residual = crop(sample, height, width) - decoded
        return (decoded + residual_scale * residual).clamp(0, 1)

    def _canvas_multiple(self) -> int:
        unet_multiple = self.diffusion.network.size_multiple
        return math.lcm(self.codec.pad_multiple, self.codec.latent_stride, unet_multiple)

    def _denoise_tiled(self, x_t: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        height, width = x_t.shape[-2:]
        if height * width <= self.max_tile_pixels:
            return self.diffusion.denoise(x_t, t, cond)
        align = self._canvas_multiple()
        tile = max(align, self.tile_size // align * align)
        overlap = min(self.tile_overlap // align * align or align, tile // 2)
        output = torch.zeros_like(x_t)
        weight_sum = torch.zeros_like(x_t[:, :1])
        stride = self.codec.latent_stride
        for top in _tile_starts(height, tile, overlap):
            for left in _tile_starts(width, tile, overlap):
                rows = slice(top, min(top + tile, height))
                cols = slice(left, min(left + tile, width))
                tile_cond = {k: v[..., rows, cols] for k, v in cond.items() if k != "latent"}
                if "latent" in cond:
                    tile_cond["latent"] = cond["latent"][
                        ..., top // stride : rows.stop // stride, left // stride : cols.stop // stride
                    ]
                prediction = self.diffusion.denoise(x_t[..., rows, cols], t, tile_cond)
                ramp = _ramp(rows.stop - top, cols.stop - left, overlap, x_t)
                output[..., rows, cols] += prediction * ramp
                weight_sum[..., rows, cols] += ramp
        return output / weight_sum

    # --- sequences ----------------------------------------------------------------------
    def enhance(
        self,
        source: Container | str | Path | Iterable[Tensor],
        steps: int | None = None,
        residual_scale: float = 1.0,
        seed: int = 0,
        intra_period: int = -1,
        *,
        gamma: float | None = None,
        eta: float | None = None,
        t_start: float | None = None,
        noise: str | None = None,
    ) -> Iterator[EnhancedFrame]:
        """Decode a bitstream (a :class:`Container` or its path) or code+decode frames, then
        enhance, streaming one :class:`EnhancedFrame` per frame.

        Frames are ``(1, 3, H, W)`` tensors in [0, 1]; they are coded for real with the
        codec (``intra_period`` applies), so the result is what a receiver of the bytes
        would see. Sampling settings left at None take the checkpoint's defaults
        (:attr:`sampling`).
        """
        sampling = self.sampling.override(steps=steps, gamma=gamma, eta=eta, t_start=t_start,
                                          noise=noise)
        if isinstance(source, (str, Path)):
            source = Container.load(source)
        if isinstance(source, Container):
            return self._enhance_container(source, sampling, residual_scale, seed)
        return self._enhance_frames(source, sampling, residual_scale, seed, intra_period)

    def _enhance_container(self, container: Container, sampling: Sampling,
                           residual_scale: float, seed: int) -> Iterator[EnhancedFrame]:
        rollout = Rollout(self, sampling, residual_scale, seed, container.intra_period)
        frames = decode_container(self.codec, container,
                                  weights_hint="the enhancer whose codec encoded it")
        for index, (data, coded) in enumerate(frames):  # decoded (and checked) there
            enhanced = rollout.enhance(coded.decoded, coded.latent)
            yield EnhancedFrame(index, coded.decoded, enhanced, len(data))

    def _enhance_frames(self, frames: Iterable[Tensor], sampling: Sampling,
                        residual_scale: float, seed: int,
                        intra_period: int) -> Iterator[EnhancedFrame]:
        rollout = Rollout(self, sampling, residual_scale, seed, intra_period)
        for frame in frames:
            yield rollout.step(frame)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(height: int, width: int, overlap: int, like: Tensor) -> Tensor:
    """(1, 1, h, w) blending weights: 1 inside, a linear ramp over ``overlap`` at the edges."""

    def ramp_1d(n: int) -> Tensor:
        position = torch.arange(n, device=like.device, dtype=like.dtype)
        edge = torch.minimum(position + 1, n - position) / (overlap + 1)
        return edge.clamp(max=1.0)

    return (ramp_1d(height)[:, None] * ramp_1d(width)[None, :])[None, None]


# --- checkpoints --------------------------------------------------------------------------
CHECKPOINT_FORMAT = "enhancer-checkpoint-v1"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"


def save_enhancer(path: str | Path, enhancer: Enhancer, extra: dict | None = None,
                  store_codec: bool = True) -> None:
    """Write an enhancer checkpoint atomically: config, denoiser (and codec) weights, ``extra``.

    ``extra`` carries training state (optimizer, EMA, step, ...) for ``enhancer.train``.
    """


    if enhancer.config is None:
        raise ValueError("an enhancer without a config cannot be saved; build it with from_config")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "enhancer_config": to_dict(enhancer.config),
        "denoiser": enhancer.diffusion.state_dict(),
        "codec": enhancer.codec.weights() if store_codec and enhancer.codec.learned else None,
        "sampling": enhancer.sampling.to_dict(),
    }
    payload.update(extra or {})
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(Path(path), buffer.getvalue())


def resolve_enhancer_path(name_or_path: str | Path) -> Path:
    """A checkpoint path, or the name of a bundled model (``enhancer/weights/<name>.pt``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / f"{name_or_path}.pt"
    if bundled.is_file():
        return bundled
    available = sorted(p.stem for p in BUNDLED_DIR.glob("*.pt")) if BUNDLED_DIR.is_dir() else []
    raise FileNotFoundError(
        f"no enhancer checkpoint {str(name_or_path)!r}: not a file, and not a bundled model "
        f"(bundled: {available or 'none'})"
    )


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for foreign files."""
    path = resolve_enhancer_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"could not read enhancer checkpoint {str(path)!r}: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not an enhancer checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else None!r}, expected "
            f"{CHECKPOINT_FORMAT!r}); train one with tools/train.py"
        )
    return payload


def load_enhancer(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True,
                  codec_checkpoint: str | Path | None = None) -> Enhancer:
    """Rebuild an :class:`Enhancer` from a checkpoint (or a bundled model name), eval mode.

    The codec weights come from the checkpoint when it stores them, else from
    ``codec_checkpoint`` or the path in the stored config. ``use_ema`` picks the
    EMA denoiser weights when the checkpoint has them.
    """
    from enhancer.config import from_dict

    payload = read_checkpoint(path)
    config = from_dict(EnhancerConfig, payload["enhancer_config"], where="checkpoint config")
    stored_codec = payload.get("codec")
    if stored_codec is None and payload.get("codec_from"):
        # Bundled models that share a codec store it once: "codec_from" names the
        # checkpoint (bundled name, or a file beside this one) that holds it.
        source = payload["codec_from"]
        sibling = resolve_enhancer_path(path).parent / f"{source}.pt"
        stored_codec = read_checkpoint(sibling if sibling.is_file() else source).get("codec")
        if stored_codec is None:
            raise ValueError(f"{str(path)!r} takes its codec from {source!r}, which holds none")
    with warnings.catch_warnings():
        if stored_codec is not None:  # weights follow right below: no random-weights warning
            warnings.simplefilter("ignore")
        codec = load_codec(
            config.codec.name, config.codec.quality, device=device,
            checkpoint=None if stored_codec is not None else codec_checkpoint or config.codec.checkpoint,
        )
    if stored_codec is not None:
        codec.load_weights(stored_codec)
    enhancer = Enhancer(codec, build_diffusion(config, codec), config)
    try:
        enhancer.sampling = Sampling.from_dict(payload.get("sampling"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"sampling settings in {str(path)!r} are invalid: {err}") from err
    denoiser_state = payload.get("ema") if use_ema and payload.get("ema") else payload["denoiser"]
    try:
        enhancer.diffusion.load_state_dict(denoiser_state)
    except RuntimeError as err:
        raise ValueError(f"denoiser weights in {str(path)!r} do not fit its config: {err}") from err
    return enhancer.to(device).eval()


def store_sampling(path: str | Path, sampling: Sampling, provenance: dict | None = None) -> Path:
    """Write ``sampling`` (and how it was chosen) into the checkpoint at ``path``, atomically.

    Everything else in the file stays as it is; returns the file written.
    """
    path = resolve_enhancer_path(path)
    payload = read_checkpoint(path)
    payload["sampling"] = sampling.to_dict()
    if provenance is not None:
        payload["sampling_provenance"] = provenance
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())
    return path
