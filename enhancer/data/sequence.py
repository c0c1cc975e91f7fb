"""One way in and one way out for every video the tools touch.

``open_sequence(path)`` reads raw ``.yuv``, ``.y4m``, compressed video (PyAV) or a folder
of PNG frames; ``open_writer(path, ...)`` writes ``.yuv``, ``.y4m``, ``.mp4``/``.mkv`` or a
folder of PNGs, atomically.

Frames come in two forms:

- ``yuv_frames()``: the stored 4:2:0 planes, uint8 ``Y (H, W)``, ``U, V (H/2, W/2)``;
  (10-bit files are rounded to 8 bits here; ``frames()`` keeps their precision);
- ``frames()`` / iteration: float32 RGB ``(1, 3, H, W)`` in [0, 1], converted with the
  BT.709 full-range matrix the way DCVC does (see :mod:`enhancer.data.color`).

>>> with open_sequence("CiscoVT2people_160x96_6fps.yuv") as video:
...     for rgb in video.frames(count=3):  # (1, 3, 96, 160)
...         ...
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from enhancer.data.color import MATRICES, UPSAMPLE_MODES
from enhancer.data.images import ImageFolderReader, ImageFolderWriter
from enhancer.data.paths import (
    check_file_target,
    check_regular_input,
    check_writable_parent,
    make_parent,
    naming_the_file,
)
from enhancer.data.reader import FrameReader, Planes, SequenceInfo
from enhancer.data.video import READ_EXTENSIONS as VIDEO_EXTENSIONS
from enhancer.data.video import WRITE_FORMATS, PyAVReader, PyAVWriter
from enhancer.data.writer import FrameWriter
from enhancer.data.y4m import Y4mReader, Y4mWriter
from enhancer.data.yuv import YuvReader, YuvWriter, check_even_size

if TYPE_CHECKING:
    from typing_extensions import Self

RAW_SUFFIXES = (".yuv", ".i420")  # headerless 4:2:0 planes
READ_SUFFIXES = (".yuv", ".y4m", *VIDEO_EXTENSIONS, ".i420")
WRITE_SUFFIXES = (".yuv", ".y4m", *WRITE_FORMATS)


def _check_matrix(matrix: str, upsample: str = "bilinear") -> None:
    if matrix not in MATRICES:
        raise ValueError(f"unknown colour matrix {matrix!r}; choose one of {sorted(MATRICES)}")
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"unknown chroma upsampling {upsample!r}; choose one of {UPSAMPLE_MODES}")


class VideoReader:
    """A readable video; get one from :func:`open_sequence`. Context manager and iterable.

    It speaks the reader contract of :mod:`enhancer.data.reader` with its own colour
    settings, and checks ``start``/``count`` against the length before any reading.
    """

    def __init__(
        self,
        source: FrameReader,
        info: SequenceInfo,
        matrix: str = "bt709",
        upsample: str = "bilinear",
    ) -> None:
        _check_matrix(matrix, upsample)
        self._source = source
        self.info = info
        self.matrix = matrix
        self.upsample = upsample

    def __len__(self) -> int:
        return self.info.num_frames or 0

    def _range(self, start: int, count: int | None) -> tuple[int, int | None]:
        """Check ``start``/``count`` against the length; return ``(start, count)``."""
        total = self.info.num_frames
        if start < 0 or (count is not None and count < 0):
            raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
        if total is None:
            return start, count
        if count is None:
            if start > total:
                raise ValueError(
                    f"asked for frames from {start} on of {self.info.path.name}, "
                    f"but it has only {total} frames"
                )
            return start, total - start
        if start + count > total:
            raise ValueError(
                f"asked for frames {start}..{start + count - 1} of {self.info.path.name}, "
                f"but it has only {total} frames"
            )
        return start, count

    def yuv_frames(self, start: int = 0, count: int | None = None) -> Iterator[Planes]:
        """4:2:0 uint8 planes ``Y (H, W)``, ``U (H/2, W/2)``, ``V (H/2, W/2)`` per frame."""
        start, count = self._range(start, count)
        return self._source.yuv_frames(start, count, matrix=self.matrix)

    def frames(self, start: int = 0, count: int | None = None) -> Iterator[Tensor]:
        """RGB frames ``(1, 3, H, W)`` float32 in [0, 1], ``start .. start+count-1``."""
        start, count = self._range(start, count)
        return self._source.frames(start, count, matrix=self.matrix, upsample=self.upsample)

    def __iter__(self) -> Iterator[Tensor]:
        return self.frames()

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_sequence(
    path: str | Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    matrix: str = "bt709",
    upsample: str = "bilinear",
) -> VideoReader:
    """Open a video for reading, choosing the reader by extension.

    ``.yuv`` (size from the name or ``width=``/``height=``), ``.y4m``,
    ``.mp4``/``.mkv``/``.avi``/``.mov``/``.264``/``.h264``/``.265``/``.hevc`` (PyAV), or a
    folder of ``.png`` frames. ``fps`` overrides the file's rate; for non-raw formats a
    ``width``/``height`` that disagrees with the file is an error.
    """
    path = Path(path)
    _check_matrix(matrix, upsample)
    check_regular_input(path, "video")
    if not path.exists():
        raise FileNotFoundError(f"no such video file or frame folder: {path}")
    suffix = path.suffix.lower()
    source: FrameReader
    if path.is_dir():
        source = ImageFolderReader(path, fps=fps or 30.0)
    elif suffix in RAW_SUFFIXES:
        source = YuvReader(path, width=width, height=height, fps=fps)
    elif suffix == ".y4m":
        source = Y4mReader(path)
    elif suffix in VIDEO_EXTENSIONS:
        source = PyAVReader(path)
    else:
        raise ValueError(
            f"cannot read {path.name!r}: unknown extension {suffix or '(none)'}; supported: "
            + ", ".join(READ_SUFFIXES) + ", or a folder of .png frames"
        )
    info = source.info
    for name, given, actual in (("width", width, info.width), ("height", height, info.height)):
        if given is not None and given != actual:
            source.close()
            raise ValueError(f"{path} has {name} {actual}, but {name}={given} was given")
    if fps is not None:
        info = dataclasses.replace(info, fps=float(fps))
    return VideoReader(source, info, matrix=matrix, upsample=upsample)


class VideoWriter:
    """A video being written; get one from :func:`open_writer`. Context manager.

    Frames go to a temporary file (or folder) next to the target; :meth:`close` renames
    it into place. If the ``with`` block raises, :meth:`abort` deletes the temporary, so
    no half-written output is ever left under the target name. Each frame is handed to the
    one writer :func:`open_writer` picked (the contract of :mod:`enhancer.data.writer`),
    which converts between RGB and 4:2:0 planes where its format needs it.
    """

    def __init__(
        self,
        path: Path,
        temp_path: Path,
        sink: FrameWriter,
        width: int,
        height: int,
        matrix: str,
        upsample: str = "bilinear",
    ) -> None:
        self.path = path
        self.temp_path = temp_path
        self._sink = sink
        self.width, self.height = width, height
        self.matrix = matrix
        self.upsample = upsample
        self.num_frames = 0
        self._done = False

    def write(self, rgb: Tensor) -> None:
        """Append one RGB frame ``(1, 3, H, W)`` in [0, 1] (values outside are clamped)."""
        if rgb.dim() != 4 or tuple(rgb.shape) != (1, 3, self.height, self.width):
            raise ValueError(
                f"expected an RGB frame of shape (1, 3, {self.height}, {self.width}), "
                f"got {tuple(rgb.shape)}"
            )
        try:
            self._sink.write_rgb(rgb, self.matrix)
        except OSError as err:  # a full disk names the file it could not write
            raise naming_the_file(err, self.path) from err
        self.num_frames += 1

    def write_yuv(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Append one frame given as uint8 planes ``Y (H, W)``, ``U, V (H/2, W/2)``."""
        try:
            self._sink.write_planes(y, u, v, self.matrix, self.upsample)
        except OSError as err:
            raise naming_the_file(err, self.path) from err
        self.num_frames += 1

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._done:
            return
        if self.num_frames == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}; nothing was saved")
        try:
            self._sink.close()
            if self.temp_path.is_dir():
                if self.path.is_dir():  # open_writer checked that it is empty
                    self.path.rmdir()
                self.temp_path.rename(self.path)
            else:
                os.replace(self.temp_path, self.path)
        except BaseException as err:
            self.abort()  # never leave the temporary behind
            if isinstance(err, OSError):
                raise naming_the_file(err, self.path) from err
            raise
        self._done = True

    def abort(self) -> None:
        """Drop everything written so far; the target path is left untouched."""
        if self._done:
            return
        self._done = True
        try:
            self._sink.abort()
        except OSError:
            pass  # flushing a temporary that is being dropped (e.g. on a full disk)
        finally:
            if self.temp_path.is_dir():
                shutil.rmtree(self.temp_path, ignore_errors=True)
            else:
                self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def check_writer_target(path: str | Path) -> None:
    """Raise a clear error, before any work, when :func:`open_writer` could not write ``path``:
    an unknown extension, a folder where a file should go, a non-empty folder for PNG frames,
    or no writable folder to put it in."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in WRITE_SUFFIXES:
        raise ValueError(
            f"cannot write {path.name!r}: unknown extension {suffix}; supported: "
            + ", ".join(WRITE_SUFFIXES) + ", or a path without extension for a folder of PNGs"
        )
    if suffix:
        check_file_target(path, f"{suffix} output")
        return
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"{path} already exists and is not an empty folder; remove it or pick a new name"
        )
    check_writable_parent(path)


def open_writer(
    path: str | Path,
    *,
    width: int,
    height: int,
    fps: float = 30.0,
    matrix: str = "bt709",
    crf: int | None = None,
    upsample: str = "bilinear",
    lossless: bool = False,
) -> VideoWriter:
    """Open a video for writing, choosing the format by extension.

    ``.yuv`` (8-bit I420), ``.y4m`` (C420jpeg), ``.mp4``/``.mkv`` (libx264 yuv420p;
    ``crf`` None = x264's default 23), ``.mkv`` with ``lossless`` (FFV1 yuv420p), or a path
    without extension: a folder of ``im00001.png``, ... (it must not exist yet, or be empty).
    """
    path = Path(path)
    _check_matrix(matrix, upsample)
    check_writer_target(path)
    suffix = path.suffix.lower()
    if suffix:
        try:
            check_even_size(width, height, str(path))
        except ValueError as err:
            raise ValueError(f"{err}, or write a folder of PNG frames (a path without "
                             "extension), which takes any size") from None
    if crf is not None and suffix not in WRITE_FORMATS:
        raise ValueError(f"crf= applies only to {', '.join(WRITE_FORMATS)} output, not {path.name}")
    if lossless and suffix != ".mkv":  # (PyAVWriter refuses a crf with FFV1)
        raise ValueError(f"lossless output is FFV1 in MKV: name the file .mkv, not {path.name!r}")
    path = make_parent(path)
    temp_path = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    sink: FrameWriter
    if suffix == ".yuv":
        sink = YuvWriter(temp_path, width, height)
    elif suffix == ".y4m":
        sink = Y4mWriter(temp_path, width, height, fps=fps)
    elif suffix in WRITE_FORMATS:
        sink = PyAVWriter(temp_path, width, height, fps=fps, crf=crf,
                          container_format=WRITE_FORMATS[suffix],
                          codec="ffv1" if lossless else "libx264")
    else:
        sink = ImageFolderWriter(temp_path, width, height)
    return VideoWriter(path, temp_path, sink, width, height, matrix, upsample)


def as_rgb_frame(frame: object, what: str = "the frame") -> Tensor:
    """The one form frames enter the enhancer in: float32 RGB ``(1, 3, H, W)`` in [0, 1].

    Float tensors (float16/32/64, bfloat16) in [0, 1] pass (converted to float32); uint8
    tensors are taken as 0..255 and divided by 255. Anything else (other dtypes, another
    shape, values outside [0, 1] such as 0..255 or -1..1 floats, NaN or inf) is refused
    with a :class:`ValueError` (:class:`TypeError` for a non-tensor) naming ``what`` and
    the expected form.
    """
    expected = ("expected a float tensor in [0, 1] (or uint8 in 0..255) of shape "
                "(1, 3, H, W), RGB")
    if not isinstance(frame, torch.Tensor):
        raise TypeError(f"{what}: {expected}, got {type(frame).__name__}")
    if frame.ndim != 4 or frame.shape[0] != 1 or frame.shape[1] != 3:
        raise ValueError(f"{what}: {expected}, got shape {tuple(frame.shape)}")
    if frame.dtype == torch.uint8:
        return frame.float() / 255
    if not frame.is_floating_point():
        raise ValueError(f"{what}: {expected}, got dtype {str(frame.dtype).removeprefix('torch.')}")
    finite = torch.isfinite(frame)
    if not bool(finite.all()):
        raise ValueError(f"{what}: {expected}, got {int((~finite).sum())} NaN or inf values")
    low, high = float(frame.min()), float(frame.max())
    if low < 0 or high > 1:
        raise ValueError(f"{what}: {expected}, got values in [{low:g}, {high:g}]"
                         + ("; divide 0..255 values by 255" if high > 1.5 else ""))
    return frame.float()
