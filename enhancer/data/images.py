"""Still images and folders of frame images (``im00001.png``, ``im00002.png``, ...).

A folder of PNGs is a video whose frames are sorted by name, with numbers compared as
numbers (``im2.png`` before ``im10.png``). Frames are RGB, read with Pillow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from enhancer.data.color import planes_to_rgb, rgb_to_planes
from enhancer.data.reader import FrameReader, Planes
from enhancer.data.writer import FrameWriter

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``im2.png`` before ``im10.png``."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in parts)


def list_images(
    folder: str | Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS, recursive: bool = False
) -> list[Path]:
    """Image files in ``folder`` (optionally below it), in natural name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in candidates if p.is_file() and p.suffix.lower() in extensions]
    return sorted(files, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _open_image(path: str | Path) -> Image.Image:
    """``Image.open`` with a ``ValueError`` naming the file when it is no readable image."""
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{path} is not a readable image ({err}); remove it or re-save it "
                         "as PNG") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header only."""
    with _open_image(path) as image:
        return image.size


def read_image(path: str | Path) -> np.ndarray:
    """An image as uint8 RGB ``(H, W, 3)`` (grey, palette and alpha images are converted).

    16-bit grey images are scaled from [0, 65535] to [0, 255] and rounded (as 10-bit video
    is rounded to 8 bits), not clipped; 16-bit RGB keeps its high byte (Pillow's reading).
    """
    with _open_image(path) as image:
        try:
            if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
                grey = np.asarray(image, dtype=np.float64)  # (H, W) in [0, 65535]
                grey = np.clip(np.round(grey * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            if image.mode in ("I", "F"):
                raise ValueError(f"{path} holds {image.mode!r} samples (32-bit); convert it to "
                                 "8-bit or 16-bit PNG first")
            return np.array(image.convert("RGB"))  # a writable copy
        except OSError as err:  # truncated or damaged pixel data
            raise ValueError(f"{path} is damaged ({err}); re-save it") from None


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Save uint8 RGB ``(H, W, 3)`` to ``path`` (format from the extension)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    Image.fromarray(rgb).save(path)


class ImageFolderReader(FrameReader):
    """The PNG files of a folder as consecutive frames; their RGB pixels are used as
    stored, and 4:2:0 planes are converted from them with ``matrix``."""

    def __init__(self, folder: str | Path, fps: float = 30.0) -> None:
        self.path = Path(folder)
        self.files = list_images(self.path, extensions=(".png",))
        if not self.files:
            raise ValueError(f"{self.path} holds no .png frames")
        self.width, self.height = image_size(self.files[0])
        self.fps = fps
        self.num_frames = len(self.files)

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) as uint8 RGB ``(H, W, 3)``."""
        rgb = read_image(self.files[index])
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"{self.files[index]} is {rgb.shape[1]}x{rgb.shape[0]}, but the first frame "
                f"{self.files[0].name} is {self.width}x{self.height}; all frames must match"
            )
        return rgb

    def frames(self, start: int = 0, count: int | None = None, matrix: str = "bt709",
               upsample: str = "bilinear") -> Iterator[Tensor]:
        """RGB frames ``(1, 3, H, W)`` in [0, 1], ``start .. start+count-1`` (to the end when
        ``count`` is None); the pixels need no conversion, so ``matrix``/``upsample`` are unused."""
        stop = self.num_frames if count is None else start + count
        for index in range(start, stop):
            yield torch.from_numpy(self.read_frame(index)).permute(2, 0, 1)[None].float() / 255.0

    def yuv_frames(self, start: int = 0, count: int | None = None,
                   matrix: str = "bt709") -> Iterator[Planes]:
        """4:2:0 uint8 planes converted from the RGB frames with ``matrix``."""
        for rgb in self.frames(start, count):
            yield rgb_to_planes(rgb, matrix)


def _rgb_tensor_to_uint8(rgb: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    values = (rgb.detach().float().cpu()[0] * 255.0).round().clamp(0, 255)
    return values.permute(1, 2, 0).numpy().astype(np.uint8)


class ImageFolderWriter(FrameWriter):
    """Writes RGB frames as ``im00001.png``, ``im00002.png``, ... (DCVC's naming); 4:2:0
    planes are converted to RGB with ``matrix`` and ``upsample`` first. Nothing stays open."""

    def __init__(self, folder: str | Path, width: int, height: int) -> None:
        self.path = Path(folder)
        self.path.mkdir(parents=True, exist_ok=True)
        self.width, self.height = width, height
        self.num_frames = 0

    def write_rgb(self, rgb: Tensor, matrix: str = "bt709") -> None:
        """Append one RGB frame ``(1, 3, H, W)`` in [0, 1] as an 8-bit PNG; the pixels need no
        conversion, so ``matrix`` is unused."""
        pixels = _rgb_tensor_to_uint8(rgb)  # (H, W, 3)
        if pixels.shape != (self.height, self.width, 3):
            raise ValueError(
                f"expected a {self.width}x{self.height} frame (H, W, 3), got {pixels.shape}"
            )
        self.num_frames += 1
        write_image(self.path / f"im{self.num_frames:05d}.png", pixels)

    def write_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt709",
                     upsample: str = "bilinear") -> None:
        """Append one frame given as uint8 4:2:0 planes, converted to RGB with ``matrix``."""
        self.write_rgb(planes_to_rgb(y, u, v, matrix, upsample=upsample))
