"""Reading the sequences of an evaluation: frames of a :class:`SequenceSpec` (video,
PNG folder or still image, optionally cropped: at the centre, or where the first frame has
the most texture, :func:`textured_origin`), and the check of every sequence
before any coding starts (:func:`check_sequences`), so that a wrong size, a short file
or a bad crop is reported at once, not an hour in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from enhancer.data.images import read_image
from enhancer.data.padding import centre_crop
from enhancer.data.sequence import open_sequence
from enhancer.eval.sequences import SequenceSpec

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_FRAMES = 96


@dataclass
class SourceInfo:
    width: int
    height: int
    fps: float
    num_frames: int | None


CROP_POSITIONS = ("centre", "textured")


def textured_origin(frame: Tensor, crop: tuple[int, int], stride: int = 8) -> tuple[int, int]:
    """``(top, left)`` of the ``crop`` ``(h, w)`` window of ``frame`` ``(1, 3, H, W)`` with
    the most texture (mean luma gradient magnitude): where a codec's loss of detail, and
    an enhancer's return of it, are visible. Even offsets (4:2:0 chroma stays aligned)."""
    luma = (0.2126 * frame[:, 0] + 0.7152 * frame[:, 1] + 0.0722 * frame[:, 2])[:, None]
    grad_y = (luma[..., 1:, :-1] - luma[..., :-1, :-1]).abs()
    grad_x = (luma[..., :-1, 1:] - luma[..., :-1, :-1]).abs()
    texture = grad_x + grad_y  # (1, 1, H-1, W-1)
    crop_h, crop_w = min(crop[0], texture.shape[-2]), min(crop[1], texture.shape[-1])
    scores = F.avg_pool2d(texture, (crop_h, crop_w), stride=stride)[0, 0]  # window means
    row, col = divmod(int(scores.argmax()), scores.shape[1])
    top = min(row * stride, frame.shape[-2] - crop[0]) // 2 * 2
    left = min(col * stride, frame.shape[-1] - crop[1]) // 2 * 2
    return top, left


class FrameSource:
    """Frames of one :class:`SequenceSpec`, optionally cropped: ``(1, 3, h, w)`` in [0, 1].

    ``crop`` ``(h, w)`` is taken at ``origin`` ``(top, left)``, or at the centre (None).
    """

    def __init__(self, sequence: SequenceSpec, crop: tuple[int, int] | None = None,
                 origin: tuple[int, int] | None = None):
        self.sequence = sequence
        self._reader = None
        if sequence.kind == "image":
            self._image = _load_image(sequence.path, sequence.resize)  # (1, 3, H, W)
            height, width = self._image.shape[-2:]
            fps, num_frames = 1.0, 1
        else:
            self._reader = open_sequence(sequence.path, width=sequence.width,
                                         height=sequence.height)
            info = self._reader.info
            width, height, fps, num_frames = info.width, info.height, info.fps, info.num_frames
        self.full_size = (height, width)
        self.crop, self.origin = crop, origin
        if crop is not None:
            crop_h, crop_w = crop
            if crop_h > height or crop_w > width:
                self.close()
                raise ValueError(
                    f"{sequence.name}: crop {crop_w}x{crop_h} is larger than the frame "
                    f"{width}x{height}; pick a smaller --crop"
                )
            height, width = crop_h, crop_w
        self.info = SourceInfo(width, height, fps, num_frames or None)

    def frames(self, count: int) -> Iterator[Tensor]:
        if self._reader is None:
            yield self._crop(self._image)
            return
        for frame in self._reader.frames(count=count if self.info.num_frames else None):
            yield self._crop(frame)
            count -= 1
            if count == 0:
                return

    def _crop(self, frame: Tensor) -> Tensor:
        if self.crop is None:
            return frame
        if self.origin is None:
            return centre_crop(frame, *self.crop).contiguous()
        (top, left), (crop_h, crop_w) = self.origin, self.crop
        return frame[..., top:top + crop_h, left:left + crop_w].contiguous()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _load_image(path: Path, resize: str | None) -> Tensor:
    """An image as ``(1, 3, H, W)`` in [0, 1]; ``"cdc"``: short side 768, centre 768x768."""
    rgb = read_image(path)  # (H, W, 3) uint8; clear errors for junk and 16-bit files
    if resize == "cdc":
        image = Image.fromarray(rgb)
        width, height = image.size
        scale = 768 / min(width, height)
        size = (max(768, round(width * scale)), max(768, round(height * scale)))
        rgb = np.array(image.resize(size, Image.BILINEAR))
    frame = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    return centre_crop(frame, 768, 768).contiguous() if resize == "cdc" else frame


@dataclass(frozen=True)
class SequencePlan:
    """What will be coded of one sequence: frame count and (cropped) size."""

    frames: int
    width: int
    height: int
    fps: float
    crop_origin: tuple[int, int] | None = None  # (top, left) of the crop; None: centred


def check_sequences(sequences: list[SequenceSpec], frames: int | None,
                    crop: tuple[int, int] | None = None,
                    crop_at: str = "centre") -> dict[str, SequencePlan]:
    """Open every sequence once; return ``name -> plan``. Errors name the bad value and fix.

    ``crop_at="textured"`` places each sequence's crop where its first frame has the most
    texture (:func:`textured_origin`) instead of at the centre.
    """
    if crop_at not in CROP_POSITIONS:
        raise ValueError(f"crop position {crop_at!r} is not one of {', '.join(CROP_POSITIONS)}")
    plans = {}
    for seq in sequences:
        wanted = frames if frames is not None else seq.frames or DEFAULT_FRAMES
        if seq.kind == "image":
            wanted = 1
        if wanted < 1:
            raise ValueError(f"--frames must be >= 1, got {wanted}")
        with FrameSource(seq, crop) as source:
            info = source.info
            if info.num_frames is not None and info.num_frames < wanted:
                raise ValueError(
                    f"{seq.name} ({seq.path.name}) has only {info.num_frames} frames, but "
                    f"{wanted} were asked for; pass --frames {info.num_frames} or fewer"
                )
            if info.width % 2 or info.height % 2:
                raise ValueError(
                    f"{seq.name} is {info.width}x{info.height}; YUV 4:2:0 metrics and the MP4 "
                    "need even sizes: pass an even --crop"
                )
        origin = None
        if crop is not None and crop_at == "textured":
            with FrameSource(seq) as full:
                origin = textured_origin(next(iter(full.frames(1))), crop)
        plans[seq.name] = SequencePlan(wanted, info.width, info.height, info.fps, origin)
    return plans
