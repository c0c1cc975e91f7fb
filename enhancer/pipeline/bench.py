"""Benchmark: decode alone vs decode + K-step enhancement, as seconds per frame and peak memory.

The decode is the baseline, measured in the same process: every row reports
``ratio = (decode + enhance) / decode``. Peak memory is the CUDA allocator's
peak on GPUs, and the peak resident set size above the pre-run level on CPU
(sampled every 5 ms by a thread).
"""

from __future__ import annotations

import functools
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from enhancer.codecs import load_codec
from enhancer.config import EnhancerConfig, from_dict
from enhancer.diffusion import Sampling
from enhancer.pipeline.checkpoint import load_enhancer
from enhancer.pipeline.enhancer import Enhancer, precision_dtype

RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280), "1080p": (1080, 1920)}


@dataclass
class BenchRow:
    preset: str  # a U-Net preset (random weights) or a checkpoint's name
    resolution: str
    steps: int
    tiled: bool
    decode_s: float
    enhance_s: float  # decode + enhancement, seconds per frame
    ratio: float
    peak_mem_mb: float
    device: str
    dtype: str
    codec: str  # whose decode is the baseline of the ratio
    # With ``signal``: seconds per frame to read and apply a signalled strength map (decode
    # an intra map, expand it, blend), and that as a share of the enhancement's own time.
    map_s: float | None = None
    map_share: float | None = None
    # With ``signal`` too: seconds per frame of the hold (``sampling.hold``: the previous
    # residual kept where the decode did not change), and its share of the enhancement.
    hold_s: float | None = None
    hold_share: float | None = None


class _PeakMemory:
    """Peak memory in MB of the block, above its starting level."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = _rss_bytes()
            self._peak = self._start
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._running = False
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.peak_mb = (peak - self._start) / 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocator, cuDNN autotune, entropy tables)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def synthetic_frame(height: int, width: int, device: torch.device) -> torch.Tensor:
    """A smooth synthetic frame with texture (1, 3, H, W): stands in for video content."""
    generator = torch.Generator().manual_seed(0)
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    base = torch.stack([ys * xs, (1 - ys) * xs, ys * (1 - xs)])
    texture = 0.1 * torch.rand(3, height, width, generator=generator)
    return (0.8 * base + texture).clamp(0, 1)[None].to(device)


def benchmark(
    presets: tuple[str, ...] = ("tiny",),
    resolutions: tuple[str, ...] = ("480p", "1080p"),
    steps: int | None = None,
    codec: str = "ssf",
    quality: int = 3,
    device: str = "cpu",
    precision: str = "fp32",
    repeats: int = 1,
    memory_budget_mb: float | None = None,
    checkpoints: tuple[str, ...] = (),
    report: Callable[[BenchRow], None] | None = None,
    signal: bool = False,
) -> list[BenchRow]:
    """Run every preset (random weights) and checkpoint x resolution; returns (and reports
    as they finish) one row each.

    The baseline is ``codec``'s decode of the same frame (random weights: timing only),
    measured in the same run: a P-frame for video codecs (the frame shifted by 4 pixels,
    predicted from the frame itself), the intra frame for image codecs. A checkpoint runs at
    its own default sampling steps (its ``sampling``), a preset at 10, unless ``steps`` is
    given. ``precision``: the denoiser's (:attr:`enhancer.pipeline.Enhancer.precision`); the
    decode stays fp32. ``signal``: also time reading and applying a strength map (an intra
    map of 64-px blocks, the worst case: a repeated map costs no decoding).
    """
    torch_device = torch.device(device)
    dtype_name = str(precision_dtype(precision) or torch.float32).replace("torch.", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: timing only
        baseline = load_codec(codec, quality, device=device)
    subjects = []  # (label, enhancer, steps, codec whose decode is the baseline)
    for preset in presets:
        config = from_dict(EnhancerConfig, {"codec": {"name": codec, "quality": quality},
                                            "unet": preset})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            subjects.append((preset, Enhancer.from_config(config, device=device,
                                                          precision=precision), steps or 10,
                             baseline))
    for name in checkpoints:
        enhancer = load_enhancer(name, device=device, precision=precision)
        # A latent-conditioned model needs its own codec's latent: its decode is the baseline.
        own = enhancer.codec if enhancer.diffusion.network.latent_channels is not None else baseline
        subjects.append((Path(name).stem, enhancer, steps or enhancer.sampling.steps, own))
    rows = []
    for label, enhancer, subject_steps, coder in subjects:
        if memory_budget_mb is not None:
            enhancer.memory_budget_mb = memory_budget_mb
        takes_latent = enhancer.diffusion.network.latent_channels is not None
        for resolution in resolutions:
            if resolution not in RESOLUTIONS:
                raise ValueError(f"unknown resolution {resolution!r}; choose from {list(RESOLUTIONS)}")
            height, width = RESOLUTIONS[resolution]
            frame = synthetic_frame(height, width, torch_device)
            data, first = coder.compress(frame)
            reference = None
            if coder.is_video:  # time a P-frame (what a video is mostly made of), not the intra
                reference = first.state
                data, _ = coder.compress(frame.roll(4, -1), reference)
            decode = functools.partial(coder.decompress, data, (height, width), reference)
            decode_and_enhance = functools.partial(
                _decode_and_enhance, enhancer, decode,
                enhancer.sampling.override(steps=subject_steps), torch_device, takes_latent,
            )
            decode_s = _timed(decode, torch_device, repeats)
            with _PeakMemory(torch_device) as memory:
                enhance_s = _timed(decode_and_enhance, torch_device, repeats)
            canvas = enhancer.canvas_shape(frame)[-2:]
            tiled = len(enhancer.tile_plan(*canvas)[2]) > 1
            row = BenchRow(label, resolution, subject_steps, tiled, decode_s,
                           enhance_s, enhance_s / decode_s, memory.peak_mb, str(torch_device),
                           dtype_name, coder.name)
            if signal:
                row.map_s = _timed(functools.partial(_apply_map, frame), torch_device, repeats)
                row.map_share = row.map_s / max(enhance_s - decode_s, 1e-9)
                row.hold_s = _timed(_hold(enhancer, frame), torch_device, repeats)
                row.hold_share = row.hold_s / max(enhance_s - decode_s, 1e-9)
            rows.append(row)
            if report is not None:
                report(row)
    return rows


def _decode_and_enhance(enhancer: Enhancer, decode: Callable, sampling: Sampling,
                        device: torch.device, takes_latent: bool) -> torch.Tensor:
    out = decode()
    latent = out.latent if takes_latent else None
    generator = torch.Generator(device=device).manual_seed(0)
    return enhancer.enhance_frame(out.decoded, latent, sampling=sampling, generator=generator)


def _hold(enhancer: Enhancer, frame: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The roll-out's hold on ``frame``'s size, after a frame that changed a little."""
    from enhancer.pipeline.rollout import Rollout

    rollout = Rollout(enhancer, enhancer.sampling.override(hold=0.01))
    residual = torch.zeros_like(frame)
    moved = (frame + 0.004).clamp(0, 1)

    def hold() -> torch.Tensor:
        rollout.prev_residual = (frame, residual)
        return rollout._hold(moved, residual)
    return hold


def _apply_map(frame: torch.Tensor) -> torch.Tensor:
    """Read a coded intra strength map and expand it to ``frame``'s pixels: what a signalled
    stream adds to a frame's enhancement (the blend ``decoded + scale * residual`` is done
    either way, with a number or with this map)."""
    from enhancer.strength import DEFAULT_SCALES, StrengthMap, decode_map, encode_map
    from enhancer.strength.strength_map import grid_shape

    height, width = frame.shape[-2:]
    rows, cols = grid_shape(height, width, 64)
    indices = (torch.arange(rows * cols) % len(DEFAULT_SCALES)).reshape(rows, cols)
    data = encode_map(StrengthMap(64, DEFAULT_SCALES, indices.to(torch.uint8).numpy()))
    strength = decode_map(data, frame_size=(height, width))
    return strength.expand(height, width, frame.device, frame.dtype)


def row_dict(row: BenchRow) -> dict:
    return asdict(row)
