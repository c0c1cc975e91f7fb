"""Torch datasets for training: clips from videos, crops from images, Vimeo-90k septuplets.

Every item is a float32 RGB tensor in [0, 1]: ``(T, 3, crop, crop)`` for clips,
``(3, crop, crop)`` for images. Randomness (clip start, crop position) comes from a
generator seeded by ``(seed, epoch, index)``, so an item is reproducible and differs
between epochs once :meth:`set_epoch` is called; DataLoader workers need no extra seeding.

No dataset decodes a whole video per item: a clip reads only its ``clip_len`` frames
(raw files seek to them; PyAV seeks to the nearest key frame where it can).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from enhancer.data.color import planes_to_rgb
from enhancer.data.images import image_size, list_images, read_image
from enhancer.data.padding import centre_crop_box
from enhancer.data.reader import SequenceInfo
from enhancer.data.sequence import READ_SUFFIXES, open_sequence


def crop_box(
    rng: np.random.Generator | None, height: int, width: int, crop: int
) -> tuple[int, int]:
    """Top-left corner of a ``crop x crop`` window: random with ``rng``, else centred."""
    if rng is None:
        return centre_crop_box(height, width, crop, crop)
    return int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))


def _check_crop(path: Path, width: int, height: int, crop: int | None) -> None:
    if crop is not None and (width < crop or height < crop):
        raise ValueError(
            f"{path} is {width}x{height}, smaller than the {crop}x{crop} crop; "
            "lower crop_size or remove the file"
        )


def find_videos(root: str | Path) -> list[Path]:
    """Videos under ``root``: files ``open_sequence`` reads, and folders holding ``.png`` frames."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such video file or folder: {root}")

    def is_video(path: Path) -> bool:
        if path.is_dir():
            return any(p.suffix.lower() == ".png" for p in path.iterdir())
        return path.suffix.lower() in READ_SUFFIXES

    return [path for path in [root, *sorted(root.rglob("*"))] if is_video(path)]


class VideoClipDataset(Dataset):
    """Random ``clip_len``-frame clips, randomly cropped, from a folder (or list) of videos.

    Args:
        root_or_files: a folder searched recursively (see :func:`find_videos`), one video,
            or a list of videos.
        clip_len: consecutive frames per item.
        crop_size: side of the square crop; ``None`` keeps the full frame (all videos must
            then have the same size to be batched).
        max_frames_per_video: only the first this-many frames of each video are used.
        samples_per_video: items per video per epoch (``len = videos * samples_per_video``).
        seed: base seed of the per-item random generator.
        matrix: colour matrix for YUV sources.
        cache_frames: decode the usable frames of each video once (as 8-bit YUV 4:2:0
            planes, on first use) and crop clips from memory: far faster for compressed
            videos, at ``1.5 * W * H`` bytes per cached frame. Crops then start on even
            rows/columns and convert only the cropped pixels to RGB.
    """

    def __init__(
        self,
        root_or_files: str | Path | Sequence[str | Path],
        clip_len: int,
        crop_size: int | None,
        max_frames_per_video: int | None = None,
        seed: int = 0,
        samples_per_video: int = 1,
        matrix: str = "bt709",
        cache_frames: bool = False,
    ) -> None:
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        if isinstance(root_or_files, (str, Path)):
            paths = find_videos(root_or_files)
            where = str(root_or_files)
        else:
            paths = [Path(p) for p in root_or_files]
            where = f"the {len(paths)} given paths"
        if not paths:
            raise ValueError(
                f"no videos found in {where}; expected files with extensions "
                f"{', '.join(READ_SUFFIXES)} or folders of .png frames"
            )
        self.clip_len, self.crop_size = clip_len, crop_size
        self.samples_per_video, self.seed, self.matrix = samples_per_video, seed, matrix
        self.epoch = 0
        self.cache_frames = cache_frames
        self._planes: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self.videos: list[SequenceInfo] = []
        self.usable_frames: list[int] = []
        for path in paths:
            with open_sequence(path, matrix=matrix) as video:
                info = video.info
            _check_crop(path, info.width, info.height, crop_size)
            usable = info.num_frames or 0
            if max_frames_per_video is not None:
                usable = min(usable, max_frames_per_video)
            if usable < clip_len:
                raise ValueError(
                    f"{path} has {usable} usable frames, fewer than clip_len={clip_len}; "
                    "lower clip_len or remove the file"
                )
            self.videos.append(info)
            self.usable_frames.append(usable)

    def set_epoch(self, epoch: int) -> None:
        """Draw different clips and crops in each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.samples_per_video

    def __getitem__(self, index: int) -> Tensor:
        """A clip ``(T, 3, crop, crop)`` float32 RGB in [0, 1]."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        video_index = index % len(self.videos)
        info = self.videos[video_index]
        start = int(rng.integers(0, self.usable_frames[video_index] - self.clip_len + 1))
        crop = self.crop_size
        top, left = (0, 0) if crop is None else crop_box(rng, info.height, info.width, crop)
        if self.cache_frames:
            return self._cached_clip(video_index, start, top, left)
        with open_sequence(info.path, width=info.width, height=info.height,
                           matrix=self.matrix) as video:
            frames = list(video.frames(start, self.clip_len))  # each (1, 3, H, W)
        clip = torch.cat(frames)  # (T, 3, H, W)
        if crop is not None:
            clip = clip[:, :, top : top + crop, left : left + crop]
        return clip.contiguous()

    def _cached_clip(self, video_index: int, start: int, top: int, left: int) -> Tensor:
        info = self.videos[video_index]
        if video_index not in self._planes:
            with open_sequence(info.path, width=info.width, height=info.height,
                               matrix=self.matrix) as video:
                self._planes[video_index] = list(
                    video.yuv_frames(0, self.usable_frames[video_index])
                )
        crop = self.crop_size
        top, left = top // 2 * 2, left // 2 * 2  # chroma-aligned
        height = info.height if crop is None else crop
        width = info.width if crop is None else crop
        frames = []
        for y, u, v in self._planes[video_index][start : start + self.clip_len]:
            frames.append(planes_to_rgb(
                y[top : top + height, left : left + width],
                u[top // 2 : (top + height) // 2, left // 2 : (left + width) // 2],
                v[top // 2 : (top + height) // 2, left // 2 : (left + width) // 2],
                self.matrix,
            ))
        return torch.cat(frames).contiguous()  # (T, 3, crop, crop)


class ImageFolderDataset(Dataset):
    """Square crops of the images under ``root`` (recursive), as ``(3, crop, crop)``.

    ``random_crop=False`` takes the centre crop (for validation).
    """

    def __init__(
        self, root: str | Path, crop_size: int, seed: int = 0, random_crop: bool = True
    ) -> None:
        self.root = Path(root)
        self.files = list_images(self.root, recursive=True)
        if not self.files:
            raise ValueError(f"no images (.png, .jpg, ...) found under {self.root}")
        for path in self.files:
            width, height = image_size(path)
            _check_crop(path, width, height, crop_size)
        self.crop_size, self.seed, self.random_crop = crop_size, seed, random_crop
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops in each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 RGB ``(H, W, 3)``."""
        return read_image(self.files[index])

    def __getitem__(self, index: int) -> Tensor:
        """A crop ``(3, crop, crop)`` float32 RGB in [0, 1]."""
        rgb = self._image(index)  # (H, W, 3) uint8
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.random_crop else None
        top, left = crop_box(rng, rgb.shape[0], rgb.shape[1], self.crop_size)
        patch = rgb[top : top + self.crop_size, left : left + self.crop_size]
        return torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float() / 255.0


class Vimeo90kSeptuplet(Dataset):
    """Vimeo-90k septuplets: ``root/sequences/<xxxxx>/<yyyy>/im1.png .. im7.png``.

    The split lists ``root/sep_trainlist.txt`` / ``root/sep_testlist.txt`` name one
    ``xxxxx/yyyy`` per line. Training items take ``clip_len`` consecutive frames at a
    random start with a random crop; test items take the first ``clip_len`` frames and
    the centre crop. ``crop_size=None`` keeps the full 448x256 frames.
    """

    FRAMES = 7

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        clip_len: int = 7,
        crop_size: int | None = 256,
        seed: int = 0,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not 1 <= clip_len <= self.FRAMES:
            raise ValueError(f"clip_len must be 1..{self.FRAMES} for septuplets, got {clip_len}")
        self.root = Path(root)
        list_file = self.root / f"sep_{split}list.txt"
        if not list_file.is_file():
            raise FileNotFoundError(
                f"{list_file} not found; expected the Vimeo-90k septuplet layout "
                "root/sep_trainlist.txt, root/sep_testlist.txt, root/sequences/xxxxx/yyyy/im1.png"
            )
        self.entries = [line.strip() for line in list_file.read_text().splitlines()
                        if line.strip()]
        if not self.entries:
            raise ValueError(f"{list_file} lists no sequences")
        self.split, self.clip_len, self.crop_size, self.seed = split, clip_len, crop_size, seed
        self.epoch = 0
        first = self._frame_path(0, 1)
        if not first.is_file():
            raise FileNotFoundError(f"{first} (first entry of {list_file.name}) does not exist")
        width, height = image_size(first)
        _check_crop(first, width, height, crop_size)

    def _frame_path(self, index: int, frame: int) -> Path:
        return self.root / "sequences" / self.entries[index] / f"im{frame}.png"

    def set_epoch(self, epoch: int) -> None:
        """Draw different clips and crops in each epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Tensor:
        """A clip ``(T, 3, crop, crop)`` float32 RGB in [0, 1]."""
        train = self.split == "train"
        rng = np.random.default_rng([self.seed, self.epoch, index]) if train else None
        start = int(rng.integers(0, self.FRAMES - self.clip_len + 1)) if rng is not None else 0
        frames = []
        for frame in range(start + 1, start + 1 + self.clip_len):
            path = self._frame_path(index, frame)
            if not path.is_file():
                raise FileNotFoundError(f"missing Vimeo-90k frame {path}")
            frames.append(read_image(path))  # (H, W, 3) uint8
        clip = np.stack(frames)  # (T, H, W, 3)
        if self.crop_size is not None:
            _check_crop(path, clip.shape[2], clip.shape[1], self.crop_size)
            top, left = crop_box(rng, clip.shape[1], clip.shape[2], self.crop_size)
            clip = clip[:, top : top + self.crop_size, left : left + self.crop_size]
        return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0
