"""Training data for :mod:`enhancer.train`: datasets from a :class:`DataConfig`, a resumable order.

Every training item is a clip ``(T, 3, crop, crop)`` in [0, 1] (images are clips of
one frame). The order of items is a pure function of ``(seed, global step)``:
epoch ``e`` visits a permutation drawn from ``seed`` and ``e``, and the dataset's own
crop/clip randomness is seeded by ``(seed, e, index)``. A resumed run therefore sees
exactly the batches an uninterrupted one would, with any number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from enhancer.config import ConfigError
from enhancer.data.datasets import ImageFolderDataset, VideoClipDataset, find_videos
from enhancer.data.images import read_image
from enhancer.data.padding import centre_crop
from enhancer.data.sequence import open_sequence
from enhancer.train.config import DataConfig

# The held-out test set: never trained on (tools/eval and the bundled-model numbers use it).
TEST_SET = (
    "images/kodak",
    "video/intel/walk.mkv",
    "video/intel/sister.mkv",
    "video/imageio/realshort.mp4",
    "video/openh264/CiscoVT2people_320x192_12fps.yuv",
    "video/openh264/CiscoVT2people_160x96_6fps.yuv",  # the same scene, smaller
)
# Validation clips of the bundled video models (data.val, tools/tune_sampling.py): never
# trained on either, but allowed as data.val.
VALIDATION_SET = (
    "video/mdn/friday.mp4",
    "video/sam2/04_coffee.mp4",
)
HELD_OUT = TEST_SET + VALIDATION_SET


def _check_not_held_out(path: Path, held_out_set: tuple[str, ...] = HELD_OUT) -> None:
    text = path.resolve().as_posix()
    for held_out in held_out_set:
        if text.endswith("/" + held_out) or f"/{held_out}/" in text:
            kind = "validation" if held_out in VALIDATION_SET else "held-out test"
            raise ConfigError(
                f"training data {str(path)!r} is in the {kind} set ({held_out}); "
                "remove it from data.train"
            )


def _existing(entry: str) -> Path:
    path = Path(entry)
    if not path.exists():
        raise ConfigError(
            f"data.train entry {entry!r} does not exist (relative paths are resolved against "
            f"the current directory {str(Path.cwd())!r}; run from the repository root)"
        )
    return path


def training_files(data: DataConfig) -> list[Path]:
    """Expand ``data.train`` into video files (kind video) or image folders (kind image)."""
    files: list[Path] = []
    for entry in data.train:
        path = _existing(entry)
        if data.kind == "video":
            found = find_videos(path)
            if not found:
                raise ConfigError(
                    f"data.train entry {entry!r} holds no usable videos "
                    "(.yuv, .y4m, .mp4, .mkv, .264, ... or folders of .png frames)"
                )
        else:
            if not path.is_dir():
                raise ConfigError(
                    f"data.train entry {entry!r} is not a folder; for kind 'image' list folders "
                    "of images"
                )
            found = [path]
        for item in found:
            _check_not_held_out(item)
            if data.kind == "image":
                for image in item.rglob("*"):
                    _check_not_held_out(image)
        files.extend(found)
    return files


def build_cached_dataset(data: DataConfig, seed: int, codec, intra_period: int) -> Dataset:
    """Clips with the frozen codec's outputs from ``data.codec_cache`` (coded once)."""
    from enhancer.codecs import load_codec
    from enhancer.train.cache import CachedClipDataset, cache_videos, plan_sources

    sources = plan_sources(training_files(data), data.max_frames_per_video)
    videos = []
    for quality in data.codec_qualities or [codec.quality]:
        if quality != codec.quality and codec.learned:
            raise ConfigError(
                f"data.codec_qualities: {codec.name} is a learned codec, its quality is its "
                f"weights (q{codec.quality}); list qualities only for conventional codecs"
            )
        coder = codec if quality == codec.quality else load_codec(codec.name, quality)
        for soften in [None, *(data.soften_scales or [])]:
            videos += cache_videos(coder, sources, data.codec_cache, intra_period,
                                   soften=soften)
    return CachedClipDataset(videos, data.clip_len, data.crop_size, data.samples_per_video,
                             seed, latent_stride=codec.latent_stride,
                             texture_candidates=data.texture_candidates)


def build_train_dataset(data: DataConfig, seed: int) -> Dataset:
    """The dataset of training clips ``(T, 3, crop, crop)``; clear errors for bad data."""
    files = training_files(data)
    try:
        if data.kind == "video":
            return VideoClipDataset(
                files, data.clip_len, data.crop_size, max_frames_per_video=data.max_frames_per_video,
                seed=seed, samples_per_video=data.samples_per_video,
                cache_frames=data.cache_images,
            )
        image_dataset = CachedImageDataset if data.cache_images else ImageFolderDataset
        return ConcatDataset([image_dataset(folder, data.crop_size, seed) for folder in files])
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        raise ConfigError(f"data.train: {err}") from err


class CachedImageDataset(ImageFolderDataset):
    """:class:`ImageFolderDataset` that decodes each image once (same crops, from memory)."""

    def __init__(self, root: str | Path, crop_size: int, seed: int = 0) -> None:
        super().__init__(root, crop_size, seed)
        self._images: dict[int, np.ndarray] = {}

    def _image(self, index: int) -> np.ndarray:
        if index not in self._images:
            self._images[index] = super()._image(index)  # (H, W, 3) uint8
        return self._images[index]


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        part.set_epoch(epoch)


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``size`` items."""
    return np.random.default_rng([seed, epoch]).permutation(size)


class EpochStream(Dataset):
    """Global item ``i`` -> item ``perm_e[i % n]`` of epoch ``e = i // n``, always a clip."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self.size = len(dataset)
        self._epoch, self._perm = -1, np.arange(0)

    def __len__(self) -> int:  # an endless stream; the sampler decides what is read
        return 2**62

    def __getitem__(self, global_index: int) -> Tensor:
        epoch, position = divmod(global_index, self.size)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = epoch_permutation(self.seed, epoch, self.size)
            _set_epoch(self.dataset, epoch)
        item = self.dataset[int(self._perm[position])]
        if isinstance(item, dict):  # cached codec outputs: already clips
            return item
        return item if item.ndim == 4 else item.unsqueeze(0)  # (T, 3, c, c)


class StepSampler(Sampler[int]):
    """Item ids of step ``k`` on rank ``r`` of ``w``: ``(k * w + r) * B + j``, from ``start_step``."""

    def __init__(self, batch_size: int, start_step: int, rank: int = 0, world_size: int = 1):
        self.batch_size, self.start_step = batch_size, start_step
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            step += 1


def train_loader(dataset: Dataset, data: DataConfig, seed: int, start_step: int,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """An endless loader of ``(B, T, 3, c, c)`` batches starting at ``start_step``."""
    return DataLoader(
        EpochStream(dataset, seed),
        batch_size=data.batch_size,
        sampler=StepSampler(data.batch_size, start_step, rank, world_size),
        num_workers=data.num_workers,
        generator=torch.Generator().manual_seed(seed),  # never touch the global RNG
    )


def load_val_clip(data: DataConfig) -> Tensor | None:
    """The validation frames ``(T, 3, h, w)`` (centre crop ``val_crop``), or None."""
    if data.val is None:
        return None
    path = Path(data.val)
    if not path.is_file():
        raise ConfigError(f"data.val {data.val!r} is not a file")
    _check_not_held_out(path, TEST_SET)
    if data.kind == "image":
        rgb = read_image(path)  # (H, W, 3) uint8
        frames = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)
    else:
        with open_sequence(path) as video:
            frames = torch.cat(list(video.frames(0, data.val_frames)))  # (T, 3, H, W)
    height, width = frames.shape[-2:]
    if data.val_crop is not None:
        if height < data.val_crop or width < data.val_crop:
            raise ConfigError(
                f"data.val {data.val!r} is {width}x{height}, smaller than val_crop={data.val_crop}; "
                "lower data.val_crop or set it to null"
            )
        frames = centre_crop(frames, data.val_crop, data.val_crop)
    return frames.contiguous()
