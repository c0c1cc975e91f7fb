"""A data pack: a frozen codec's training crops as uint8 arrays that travel with the code.

A borrowed GPU machine takes the working tree plus a few tens of MiB per run, and has
neither CompressAI nor PyAV. The decode cache (:mod:`enhancer.train.cache`, many GB, made
with PyAV) cannot go there; a pack can. :func:`build_pack` reads the cache (it codes only
entries that are missing) and keeps, per training video, ``crops_per_video`` windows of
``clip_len`` frames cropped to ``crop_size`` where the codec lost most (the best of
``texture_candidates`` positions, as :class:`~enhancer.train.cache.CachedClipDataset`
picks them), each with its decode at every quality (or at ``qualities_per_crop`` of them,
drawn per window: more windows for the same bytes)::

    <out_dir>/pack.npz          one zip (LZMA: 3 similar frames compress ~2x better than deflate)
        source        (M, T, 3, c, c) uint8  the source crops (shared by their qualities)
        decoded       (N, T, 3, c, c) uint8  the codec's decodes of those crops
        origin        (M, 4) int32           each source crop's clip (meta["clips"]), first frame,
                                             top and left
        source_index  (N,) int32             decoded[i] is the decode of source[source_index[i]]
        quality       (N,) int16             the codec quality (x264/x265: the CRF)
        quality_level (N,) float32           CodecAdapter.quality_level(quality)
        meta          ()  str (JSON)         codec, crop, clip_len, qualities, clips, seed ...
    <out_dir>/runtime/          yaml, tqdm, pytorch_msssim and lpips as pure Python (lpips
                                without its trainer module, which needs SciPy), for
                                machines without them
    <out_dir>/lpips_weights/    alexnet.ckpt, the LPIPS trunk (ENHANCER_LPIPS_WEIGHTS)

``data.pack`` in a training config points at it (:class:`PackDataset`): the whole pack
is moved to the training device once and batches are gathered there, in the order the
DataLoader path would give (:func:`pack_batches`), so a run stays resumable bit for bit.
``tools/train_gpu.sh`` runs the trainer from a pack on a GPU machine (docs/training.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from enhancer.config import ConfigError
from enhancer.train.config import TrainConfig
from enhancer.train.data import StepSampler, epoch_permutation

PACK_FORMAT = 1
PACK_FILE = "pack.npz"
RUNTIME_DIR = "runtime"
LPIPS_DIR = "lpips_weights"
# Pure-Python packages the trainer imports that a bare GPU machine may lack; lpips's own
# __init__ imports its trainer module (SciPy, tqdm), which LPIPS as a loss never uses.
RUNTIME_PACKAGES = ("yaml", "tqdm", "lpips", "pytorch_msssim")
_LPIPS_TRAINER_IMPORT = "from lpips.trainer import *"
ARRAY_NAMES = ("source", "decoded", "source_index", "quality", "quality_level")


def _crop_position(rng: np.random.Generator, original: np.ndarray, decoded: np.ndarray,
                   start: int, crop: int, candidates: int) -> tuple[int, int]:
    """(top, left), on even pixels, of the candidate where the decode of frame ``start``
    lost most (mean absolute error against ``original``, both (T, H, W, 3) uint8)."""
    height, width = original.shape[1:3]
    best, position = -1.0, (0, 0)
    for _ in range(candidates):
        top = int(rng.integers(0, (height - crop) // 2 + 1)) * 2
        left = int(rng.integers(0, (width - crop) // 2 + 1)) * 2
        region = (start, slice(top, top + crop), slice(left, left + crop))
        error = float(np.abs(original[region].astype(np.int16)
                             - decoded[region].astype(np.int16)).mean())
        if error > best:
            best, position = error, (top, left)
    return position


def _planar(array: np.ndarray, window: slice, top: int, left: int, crop: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the crop as (t, 3, c, c) uint8."""
    patch = array[window, top:top + crop, left:left + crop]
    return np.ascontiguousarray(patch.transpose(0, 3, 1, 2))


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with LZMA members (``np.load`` reads them), written atomically."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_LZMA) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_runtime(out_dir: Path, lpips_net: str = "alex") -> None:
    """Copy the pure-Python packages of :data:`RUNTIME_PACKAGES` (from this environment) to
    ``out_dir/runtime`` and the LPIPS trunk weights to ``out_dir/lpips_weights``."""
    from enhancer.metrics.lpips import find_trunk_checkpoint

    runtime = out_dir / RUNTIME_DIR
    shutil.rmtree(runtime, ignore_errors=True)
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"package {name!r} is not installed here; a pack carries it for "
                              f"machines without it: pip install {name} and build again")
        package = Path(next(iter(spec.submodule_search_locations)))
        for item in package.rglob("*"):
            if "__pycache__" in item.parts or not item.is_file():
                continue
            if item.suffix != ".py" and not (name == "lpips" and item.name == f"{lpips_net}.pth"):
                continue  # compiled extensions belong to this Python; the .py fallbacks serve
            target = runtime / name / item.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item, target)
    init = runtime / "lpips" / "__init__.py"
    text = init.read_text()
    if _LPIPS_TRAINER_IMPORT not in text:
        raise ConfigError(f"{init}: this lpips version does not import its trainer as 0.1.4 "
                          f"does ({_LPIPS_TRAINER_IMPORT!r}); install lpips==0.1.4")
    init.write_text(text.replace(_LPIPS_TRAINER_IMPORT, "pass  # data pack: no lpips.trainer"))
    weights = out_dir / LPIPS_DIR
    weights.mkdir(parents=True, exist_ok=True)
    checkpoint = find_trunk_checkpoint(lpips_net)
    shutil.copyfile(checkpoint, weights / checkpoint.name)


def build_pack(cfg: TrainConfig, out_dir: str | Path, crops_per_video: int, seed: int = 0,
               qualities_per_crop: int | None = None, show_progress: bool = True) -> dict:
    """Write a pack of ``cfg``'s training data to ``out_dir`` (see the module docstring) from
    its ``data.codec_cache``; returns the pack's metadata plus ``bytes`` and ``seconds``.

    Crops: ``data.crop_size``; frames: ``data.clip_len``; qualities:
    ``data.codec_qualities`` (else the model's); positions: the best of
    ``data.texture_candidates`` by the decode's error at the middle quality; each window
    at every quality, or at ``qualities_per_crop`` of them drawn at random.
    """
    from enhancer.codecs import load_codec
    from enhancer.train.cache import cache_videos, plan_sources
    from enhancer.train.data import training_files

    began = time.time()
    data, codec_cfg = cfg.data, cfg.model.codec
    if crops_per_video < 1:
        raise ConfigError(f"crops_per_video must be >= 1, got {crops_per_video}")
    if data.codec_cache is None:
        raise ConfigError("a pack is cut from data.codec_cache; set it in the config "
                          "(e.g. data.codec_cache=.cache/codec_outputs)")
    if data.soften_scales:
        raise ConfigError(f"data.soften_scales {data.soften_scales}: softened copies are not "
                          "packed; set data.soften_scales=null")
    if cfg.loss.rho > 0 and cfg.loss.lpips_net != "alex":
        raise ConfigError(f"lpips_net {cfg.loss.lpips_net!r}: a pack carries LPIPS-Alex weights "
                          "only (VGG's are 59 MB); set loss.lpips_net=alex")
    qualities = list(data.codec_qualities or [codec_cfg.quality])
    per_crop = len(qualities) if qualities_per_crop is None else qualities_per_crop
    if not 1 <= per_crop <= len(qualities):
        raise ConfigError(f"qualities_per_crop must be in 1..{len(qualities)} (the qualities "
                          f"{qualities}), got {qualities_per_crop}")
    sources = plan_sources(training_files(data), data.max_frames_per_video)
    entries = {}
    for quality in qualities:
        codec = load_codec(codec_cfg.name, quality, codec_cfg.checkpoint)
        if codec.latent_channels is not None:
            raise ConfigError(f"codec {codec.name!r} has a latent, which packs do not carry; "
                              "packs are for conventional codecs (x264, x265)")
        entries[quality] = cache_videos(codec, sources, data.codec_cache,
                                        codec_cfg.intra_period, verify=False,
                                        show_progress=show_progress)
    level = {q: float(type(codec).quality_level(q)) for q in qualities}
    reference = qualities[len(qualities) // 2]
    crop, frames = data.crop_size, data.clip_len
    source_crops, origins, decoded_crops, source_index, quality_of = [], [], [], [], []
    for index, source in enumerate(sources):
        original = entries[reference][index].original  # (T, H, W, 3) uint8, memory-mapped
        total, height, width = original.shape[:3]
        if total < frames or height < crop or width < crop:
            raise ConfigError(f"{source.path} has {total} frames of {width}x{height}, fewer than "
                              f"data.clip_len={frames} or smaller than data.crop_size={crop}; "
                              "remove it from data.train")
        for k in range(crops_per_video):
            rng = np.random.default_rng([seed, index, k])
            start = int(rng.integers(0, total - frames + 1))
            top, left = _crop_position(rng, original, entries[reference][index].decoded, start,
                                       crop, data.texture_candidates)
            window = slice(start, start + frames)
            source_crops.append(_planar(original, window, top, left, crop))
            origins.append((index, start, top, left))
            drawn = sorted(rng.choice(qualities, per_crop, replace=False).tolist())
            for quality in drawn:
                decoded_crops.append(_planar(entries[quality][index].decoded, window, top, left,
                                             crop))
                source_index.append(len(source_crops) - 1)
                quality_of.append(quality)
    meta = {
        "format": PACK_FORMAT, "codec": codec_cfg.name, "intra_period": codec_cfg.intra_period,
        "crop": crop, "clip_len": frames, "qualities": qualities,
        "crops_per_video": crops_per_video, "qualities_per_crop": per_crop,
        "texture_candidates": data.texture_candidates,
        "seed": seed, "items": len(decoded_crops),
        "clips": [{"path": str(s.path), "sha256": s.digest, "frames": s.frames} for s in sources],
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_npz(out_dir / PACK_FILE, {
        "source": np.stack(source_crops), "origin": np.asarray(origins, dtype=np.int32),
        "decoded": np.stack(decoded_crops),
        "source_index": np.asarray(source_index, dtype=np.int32),
        "quality": np.asarray(quality_of, dtype=np.int16),
        "quality_level": np.asarray([level[q] for q in quality_of], dtype=np.float32),
        "meta": np.asarray(json.dumps(meta)),
    })
    write_runtime(out_dir, cfg.loss.lpips_net)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return meta | {"bytes": (out_dir / PACK_FILE).stat().st_size, "folder_bytes": size,
                   "seconds": time.time() - began}


def pack_file(path: str | Path) -> Path:
    """``path`` itself, or the pack file inside a pack folder."""
    path = Path(path)
    return path / PACK_FILE if path.is_dir() else path


class PackDataset(Dataset):
    """The items of a pack, held on ``device`` as uint8 (moved there once).

    Item: ``{"frames": (T, 3, c, c), "decoded": (T, 3, c, c)`` float32 in [0, 1],
    ``"quality_level": ()}``, as :class:`~enhancer.train.cache.CachedClipDataset` gives;
    :meth:`batch` gathers many at once on the device.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = pack_file(path)
        if not path.is_file():
            raise ConfigError(f"data.pack {str(path)!r} does not exist; build it with "
                              "python tools/make_pack.py CONFIG OUT_DIR (docs/training.md)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in (*ARRAY_NAMES, "meta")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise ConfigError(f"data.pack {str(path)!r} is not a readable pack ({err}); "
                              "build it again with tools/make_pack.py") from err
        self.meta = json.loads(str(arrays.pop("meta")))
        if self.meta.get("format") != PACK_FORMAT:
            raise ConfigError(f"data.pack {str(path)!r} has format {self.meta.get('format')}, "
                              f"this code reads {PACK_FORMAT}; build it again")
        count = len(arrays["decoded"])
        if not count or any(len(arrays[n]) != count for n in ARRAY_NAMES[2:]) \
                or arrays["source_index"].max() >= len(arrays["source"]):
            raise ConfigError(f"data.pack {str(path)!r} is inconsistent (array lengths differ "
                              "or an index points past source); build it again")
        self.path, self.device = path, torch.device(device)
        self.source = torch.from_numpy(arrays["source"]).to(self.device)  # (M, T, 3, c, c)
        self.decoded = torch.from_numpy(arrays["decoded"]).to(self.device)  # (N, T, 3, c, c)
        self.source_index = torch.from_numpy(arrays["source_index"]).long().to(self.device)
        self.quality_level = torch.from_numpy(arrays["quality_level"]).to(self.device)

    def check_fits(self, cfg: TrainConfig) -> None:
        """The pack was made for ``cfg``'s codec, crop and clip length, or a ConfigError."""
        wanted = {"codec": cfg.model.codec.name, "crop": cfg.data.crop_size,
                  "clip_len": cfg.data.clip_len}
        for key, value in wanted.items():
            if self.meta[key] != value:
                raise ConfigError(f"data.pack {str(self.path)!r} holds {key} {self.meta[key]!r}, "
                                  f"the config wants {value!r}; build a pack for this config "
                                  "(tools/make_pack.py) or change the config")

    def __len__(self) -> int:
        return len(self.decoded)

    def set_epoch(self, epoch: int) -> None:
        """Packs have fixed crops: nothing depends on the epoch but the order."""

    def batch(self, indices: Tensor) -> dict[str, Tensor]:
        """Items ``indices`` (B,) stacked: ``frames``/``decoded`` (B, T, 3, c, c) float32."""
        indices = indices.to(self.device)
        return {"frames": self.source[self.source_index[indices]].float() / 255.0,
                "decoded": self.decoded[indices].float() / 255.0,
                "quality_level": self.quality_level[indices]}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        return {k: v[0] for k, v in self.batch(torch.tensor([index])).items()}


def pack_batches(dataset: PackDataset, batch_size: int, seed: int, start_step: int,
                 rank: int = 0, world_size: int = 1) -> Iterator[dict[str, Tensor]]:
    """Endless batches from ``start_step``: the items :func:`enhancer.train.data.train_loader`
    would give (the same step sampler and epoch permutations), gathered on the device."""
    ids = iter(StepSampler(batch_size, start_step, rank, world_size))
    permutations: dict[int, np.ndarray] = {}
    while True:
        items = []
        for global_index in islice(ids, batch_size):
            epoch, position = divmod(global_index, len(dataset))
            if epoch not in permutations:
                permutations = {epoch: epoch_permutation(seed, epoch, len(dataset))}
            items.append(int(permutations[epoch][position]))
        yield dataset.batch(torch.tensor(items))
