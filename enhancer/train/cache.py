"""Codec outputs cached on disk, so a frozen-codec run trains with no codec in the loop.

In ``mode: frozen`` the codec's output for a clip never changes. Each training video is
therefore coded once per (codec, weights, quality, intra period), for real (the bytes a
receiver would get), at its full frame size, and stored::

    <cache_dir>/<video stem>-<video hash>-<codec>-q<quality>-<weights fingerprint>-ip<intra>-n<frames>[-soft<s>]/
        original.npy   (T, H, W, 3) uint8   the source frames (RGB, BT.709 from YUV)
        decoded.npy    (T, H, W, 3) uint8   the codec's decode, rounded to 8 bits
        latent.npy     (T, C, h, w) float16 the conditioning latent (codecs that have one)
        meta.json      the key above, the arrays' sha256 and each frame's byte count

Training crops windows of ``clip_len`` frames from these memory-mapped arrays
(:class:`CachedClipDataset`). A folder whose key or checksums do not match (other codec
weights, an edited video, a damaged file) is rebuilt, never trained on. Entries are
written to a temporary folder and renamed into place, so a crash leaves no half entry.

Coding full frames also makes the training artefacts the real ones: before the cache,
every 64-px crop was coded as a tiny video of its own.

A softened copy (``soften``, :func:`soften_frame`) is the same video made soft at the
source (every frame downscaled by ``s`` and upscaled back) and then coded: old film,
upscaled or defocused footage, where the right enhancement of a soft decode is none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from enhancer.codecs.base import CodecAdapter
from enhancer.codecs.container import weights_fingerprint
from enhancer.config import ConfigError
from enhancer.utils.rate import bpp_from_bytes

CACHE_FORMAT = 1
ARRAYS = ("original", "decoded", "latent")


class CacheError(ConfigError):
    """A cache folder cannot be used or written (named in the message, with the fix)."""


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, sorted), as hex."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for item in files:
        if path.is_dir():
            digest.update(item.relative_to(path).as_posix().encode())
        with item.open("rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Source:
    """A training video as cache keys name it: its path, content digest and frame count
    (capped by ``max_frames``). Made once per run by :func:`plan_sources`, then shared by
    every quality and softened copy coded from it."""

    path: Path
    digest: str
    frames: int


def plan_sources(paths: list[Path], max_frames: int | None,
                 matrix: str = "bt709") -> list[Source]:
    """Hash and count the frames of every video once (``max_frames``: the cap, None: all)."""
    from enhancer.data.sequence import open_sequence

    sources = []
    for path in paths:
        path = Path(path)
        with open_sequence(path, matrix=matrix) as video:
            total = video.info.num_frames
            if total is None:
                total = sum(1 for _ in video.yuv_frames())
        frames = total if max_frames is None else min(total, max_frames)
        sources.append(Source(path, file_digest(path), frames))
    return sources


def _to_uint8(rgb: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (rgb[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


@dataclass
class CachedVideo:
    """One cache entry, memory-mapped: ``original``/``decoded`` (T, H, W, 3) uint8,
    ``latent`` (T, C, h, w) float16 or None, the frames' byte counts and the codec's
    :meth:`~enhancer.codecs.CodecAdapter.quality_level` of the entry's quality."""

    folder: Path
    source: str
    original: np.ndarray
    decoded: np.ndarray
    latent: np.ndarray | None
    frame_bytes: list[int]
    quality_level: float

    @property
    def num_frames(self) -> int:
        return self.original.shape[0]

    @property
    def bpp(self) -> float:
        frames, height, width = self.original.shape[:3]
        return bpp_from_bytes(sum(self.frame_bytes), height, width, frames)


def soften_frame(frame: Tensor, scale: float) -> Tensor:
    """``frame`` (N, 3, H, W) made soft at the source: area-downscaled by ``scale`` and
    bicubic-upscaled back to H x W (what upscaled or old footage looks like)."""
    if not scale > 1:
        raise ValueError(f"soften scale must be > 1, got {scale}")
    height, width = frame.shape[-2:]
    small = F.interpolate(frame, size=(max(1, round(height / scale)), max(1, round(width / scale))),
                          mode="area")
    return F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def entry_key(codec: CodecAdapter, source_digest: str, num_frames: int, intra_period: int,
              matrix: str, soften: float | None = None) -> dict:
    """What a cache entry depends on; any change means another entry."""
    key = {
        "format": CACHE_FORMAT,
        "codec": codec.name,
        "quality": codec.quality,
        "weights": weights_fingerprint(codec).hex(),
        "intra_period": intra_period,
        "frames": num_frames,
        "matrix": matrix,
        "source_sha256": source_digest,
    }
    if soften is not None:
        key["soften"] = float(soften)
    return key


def _entry_folder(cache_dir: Path, source: Path, key: dict) -> Path:
    name = (f"{source.stem}-{key['source_sha256'][:12]}-{key['codec']}-q{key['quality']}-"
            f"{key['weights']}-ip{key['intra_period']}-n{key['frames']}")
    if "soften" in key:
        name += f"-soft{key['soften']:g}"
    return cache_dir / name


def _open_entry(folder: Path, key: dict, verify: bool, quality_level: float) -> CachedVideo | None:
    """The entry in ``folder`` if its key and checksums match, else None (to rebuild)."""
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        return None
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        expected = meta.get("sha256", {}).get(name)
        if expected is None:
            arrays[name] = None
            continue
        if not path.is_file() or (verify and file_digest(path) != expected):
            return None
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None
    original, decoded = arrays["original"], arrays["decoded"]
    if original is None or decoded is None or original.shape != decoded.shape \
            or original.shape[0] != key["frames"]:
        return None
    return CachedVideo(folder, meta["source"], original, decoded, arrays["latent"],
                       list(meta["frame_bytes"]), quality_level)


def _check_writable(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".probe-")
        probe.close()
    except OSError as err:
        raise CacheError(
            f"data.codec_cache {str(cache_dir)!r} is not a writable folder ({err.strerror}); "
            "point data.codec_cache at a folder you can write, or set it to null"
        ) from err


@torch.no_grad()
def _code_video(codec: CodecAdapter, source: Path, num_frames: int, intra_period: int,
                matrix: str, folder: Path, key: dict, progress: tqdm | None) -> None:
    """Code ``num_frames`` frames of ``source`` for real and write the entry to ``folder``."""
    from enhancer.data.sequence import open_sequence

    device = next(codec.parameters(), torch.empty(0)).device
    originals, decodeds, latents, frame_bytes = [], [], [], []

    def source_frames(video):
        for frame in video.frames(0, num_frames):  # one read: kept, and coded
            if "soften" in key:
                frame = soften_frame(frame, key["soften"])
            originals.append(_to_uint8(frame))
            yield frame.to(device)

    with open_sequence(source, matrix=matrix) as video:
        for data, out in codec.encode_sequence(source_frames(video), intra_period):
            frame_bytes.append(len(data))
            decodeds.append(_to_uint8(out.decoded))
            if out.latent is not None:
                latents.append(out.latent[0].half().cpu().numpy())
            if progress is not None:
                progress.update(1)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        digests = {}
        for name, frames in (("original", originals), ("decoded", decodeds), ("latent", latents)):
            if not frames:
                continue
            path = temporary / f"{name}.npy"
            np.save(path, np.stack(frames))
            digests[name] = file_digest(path)
        meta = {"key": key, "source": str(source), "sha256": digests, "frame_bytes": frame_bytes}
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            shutil.rmtree(folder)  # a stale or damaged entry
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def cache_videos(codec: CodecAdapter, sources: list[Source], cache_dir: str | Path,
                 intra_period: int = -1, matrix: str = "bt709", verify: bool = True,
                 show_progress: bool = True, soften: float | None = None) -> list[CachedVideo]:
    """Code every video of ``sources`` (:func:`plan_sources`, made with the same
    ``matrix``) once, or reuse its valid entry; return the entries.

    ``soften``: code softened copies instead (:func:`soften_frame`, a scale > 1). The
    codec must be in eval mode: the cache holds exactly what its bytes decode to.
    """
    if soften is not None and not soften > 1:
        raise CacheError(f"soften scale must be > 1 (1 is the video itself), got {soften}")
    cache_dir = Path(cache_dir)
    _check_writable(cache_dir)
    codec.eval()
    plans = []
    for source in sources:
        key = entry_key(codec, source.digest, source.frames, intra_period, matrix, soften)
        plans.append((source.path, key, _entry_folder(cache_dir, source.path, key)))
    level = codec.quality_level(codec.quality)
    entries: list[CachedVideo | None] = [_open_entry(f, k, verify, level) for _, k, f in plans]
    missing = [i for i, entry in enumerate(entries) if entry is None]
    if missing:
        total = sum(plans[i][1]["frames"] for i in missing)
        label = f"caching {codec.name} q{codec.quality} decodes" + (
            f" of copies softened x{soften:g}" if soften is not None else "")
        with tqdm(total=total, desc=label,
                  unit="frame", disable=not show_progress, dynamic_ncols=True) as progress:
            for i in missing:
                source, key, folder = plans[i]
                progress.set_postfix_str(source.name)
                _code_video(codec, source, key["frames"], intra_period, matrix, folder, key,
                            progress)
                entries[i] = _open_entry(folder, key, verify=False, quality_level=level)
                if entries[i] is None:
                    raise CacheError(f"cache entry {str(folder)!r} could not be read back after "
                                     "writing it; check the disk")
    return entries  # type: ignore[return-value]


class CachedClipDataset(Dataset):
    """Random windows of ``clip_len`` frames, randomly cropped, from cached codec outputs.

    Item: ``{"frames": (T, 3, c, c), "decoded": (T, 3, c, c)`` float32 in [0, 1]``,
    "latent": (T, C, c / stride, c / stride), "quality_level": ()}`` (no ``latent`` for
    codecs without one).
    Crops start on multiples of ``align`` (the latent stride, so the latent crop covers
    exactly the pixel crop) and lie inside the unpadded frame. The randomness is a pure
    function of ``(seed, epoch, index)``, as in :class:`enhancer.data.VideoClipDataset`.
    ``texture_candidates`` > 1 draws that many crop positions and keeps the one where the
    codec lost most (mean absolute error of the window's first frame, decode vs source):
    CPU steps go to crops with something to restore, not to flat walls and sky.
    """

    def __init__(self, videos: list[CachedVideo], clip_len: int, crop_size: int,
                 samples_per_video: int = 1, seed: int = 0, latent_stride: int = 1,
                 align: int = 2, texture_candidates: int = 1):
        if texture_candidates < 1:
            raise ConfigError(f"data.texture_candidates must be >= 1, got {texture_candidates}")
        self.texture_candidates = texture_candidates
        if not videos:
            raise ValueError("no cached videos to train on")
        self.align = math.lcm(align, latent_stride)
        if crop_size % self.align:
            raise ConfigError(
                f"data.crop_size {crop_size} must be a multiple of {self.align} (the codec "
                f"latent stride / alignment); try {crop_size // self.align * self.align or self.align}"
            )
        for video in videos:
            frames, height, width = video.original.shape[:3]
            if frames < clip_len:
                raise ConfigError(f"{video.source} has {frames} cached frames, fewer than "
                                  f"clip_len={clip_len}; lower clip_len or remove the video")
            if height < crop_size or width < crop_size:
                raise ConfigError(f"{video.source} is {width}x{height}, smaller than "
                                  f"data.crop_size={crop_size}; lower crop_size or remove it")
        self.videos, self.clip_len, self.crop_size = videos, clip_len, crop_size
        self.samples_per_video, self.seed, self.latent_stride = samples_per_video, seed, latent_stride
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.samples_per_video

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        video = self.videos[index % len(self.videos)]
        frames, height, width = video.original.shape[:3]
        start = int(rng.integers(0, frames - self.clip_len + 1))
        crop, align = self.crop_size, self.align
        best_error = -1.0
        for _ in range(self.texture_candidates):
            cand_top = int(rng.integers(0, (height - crop) // align + 1)) * align
            cand_left = int(rng.integers(0, (width - crop) // align + 1)) * align
            if self.texture_candidates == 1:
                top, left = cand_top, cand_left
                break
            region = (start, slice(cand_top, cand_top + crop), slice(cand_left, cand_left + crop))
            error = float(np.abs(video.original[region].astype(np.int16)
                                 - video.decoded[region].astype(np.int16)).mean())
            if error > best_error:
                best_error, top, left = error, cand_top, cand_left
        window = slice(start, start + self.clip_len)
        rows, cols = slice(top, top + crop), slice(left, left + crop)

        def rgb(array: np.ndarray) -> Tensor:
            patch = np.ascontiguousarray(array[window, rows, cols])  # (T, c, c, 3) uint8
            return torch.from_numpy(patch).permute(0, 3, 1, 2).float() / 255.0

        item = {"frames": rgb(video.original), "decoded": rgb(video.decoded),
                "quality_level": torch.tensor(video.quality_level, dtype=torch.float32)}
        if video.latent is not None:
            s = self.latent_stride
            latent = video.latent[window, :, top // s:(top + crop) // s, left // s:(left + crop) // s]
            item["latent"] = torch.from_numpy(np.ascontiguousarray(latent)).float()
        return item
