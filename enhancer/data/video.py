"""Compressed video through PyAV: read MP4/MKV/AVI/MOV and raw H.264/HEVC, write MP4/MKV.

Decoded pictures are returned as their 4:2:0 planes *as stored* (no range conversion):
``yuv420p`` and ``yuvj420p`` pictures are used sample for sample; ``yuv444p`` pictures are
kept at 4:4:4 for RGB (:meth:`PyAVReader.native_planes`) and brought to 4:2:0 by the same
2x2 chroma average as :mod:`enhancer.data.color`; any other pixel format goes through
PyAV's ``reformat(format="yuv420p")``.

Writing encodes 4:2:0 planes (``yuv420p``) with libx264 (``crf`` = None keeps x264's
default, 23) or, for archives, with FFV1 (lossless, MKV).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from enhancer.data.reader import FrameReader, Planes
from enhancer.data.writer import FrameWriter
from enhancer.data.y4m import fps_to_fraction
from enhancer.data.yuv import check_even_size, check_planes

if TYPE_CHECKING:
    import av

READ_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts", ".264", ".h264", ".265",
                   ".hevc")
WRITE_FORMATS = {".mp4": "mp4", ".mkv": "matroska"}
WRITE_CODECS = ("libx264", "ffv1")
_NATIVE_420 = ("yuv420p", "yuvj420p")
_NATIVE_444 = ("yuv444p", "yuvj444p")


def pyav():
    """PyAV, imported on first use, so that raw .yuv/.y4m/PNG input works without it."""
    try:
        import av
    except ImportError as err:
        raise ImportError(
            "MP4/MKV/H.264 files need PyAV: pip install av (raw .yuv, .y4m and PNG folders do not)"
        ) from err
    return av


def _average_chroma(plane: np.ndarray) -> np.ndarray:
    """4:4:4 chroma (H, W) uint8 -> 4:2:0 (H/2, W/2) by rounded 2x2 average."""
    height, width = plane.shape
    blocks = plane.reshape(height // 2, 2, width // 2, 2).astype(np.float32)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


class PyAVReader(FrameReader):
    """Decodes the first video stream of a file. Each :meth:`planes` call decodes afresh.

    ``num_frames`` comes from the container when it says so (MP4, MKV with frame counts),
    otherwise it is counted once by demuxing packets (raw ``.264``: no decoding needed).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such video file: {self.path}")
        try:
            opened = pyav().open(str(self.path))
        except pyav().error.FFmpegError as err:
            raise ValueError(f"{self.path} is not a readable video: "
                             f"{getattr(err, 'strerror', None) or err}") from None
        with opened as container:
            if not container.streams.video:
                raise ValueError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            self.width = stream.codec_context.width
            self.height = stream.codec_context.height
            self.pix_fmt = stream.codec_context.pix_fmt
            rate = stream.average_rate or stream.guessed_rate
            self._rate = Fraction(rate) if rate else Fraction(30)
            self.fps = float(self._rate)
            # raw .264/.hevc streams carry no timestamps: they are always decoded from frame 0
            self._can_seek = stream.time_base is not None and stream.start_time is not None
            num_frames = stream.frames
            if not num_frames:
                num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        check_even_size(self.width, self.height, str(self.path))
        self.num_frames = int(num_frames)

    @property
    def is_444(self) -> bool:
        """True for 4:4:4 sources, whose RGB frames keep full chroma resolution."""
        return self.pix_fmt in _NATIVE_444

    def _decoded(self, start: int) -> Iterator[av.VideoFrame]:
        """Decoded pictures from frame ``start`` on.

        Where the container has timestamps, seek to the key frame before ``start`` and
        number the pictures from their timestamps at the average frame rate. If the first
        picture after the seek is marked corrupt, or the timestamps do not land on whole
        frame numbers (variable frame rate, odd edit lists), or the seek overshoots, decode
        from frame 0 and count instead. Both ways give identical pictures (tested).
        """
        if start > 0 and self._can_seek:
            with pyav().open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                first_pts = stream.start_time or 0
                ticks_per_frame = 1 / (self._rate * stream.time_base)
                target_pts = first_pts + round(start * ticks_per_frame)
                container.seek(target_pts, stream=stream, backward=True, any_frame=False)
                index = None
                for frame in container.decode(stream):
                    if index is None:  # first picture after the seek: trust its timestamp?
                        if frame.pts is None or frame.is_corrupt:
                            break  # e.g. FFmpeg decodes a seeked-to 4:4:4 IDR as garbage
                        position = float((frame.pts - first_pts) / ticks_per_frame)
                        index = round(position)
                        if abs(position - index) > 0.1 or not 0 <= index <= start:
                            break
                    else:
                        index += 1
                        if frame.is_corrupt:
                            raise self._damaged(index, "FFmpeg marked the picture corrupt")
                    if index >= start:
                        yield frame
                else:
                    return  # the seek path ran to the end of the stream
                # a `break` above happens only at the first picture, before any yield
        with pyav().open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # Fail on damaged data, as the codec adapters do: a concealed picture would
            # become the ground truth every score is measured against.
            stream.codec_context.options = {"err_detect": "explode"}
            decoded = 0  # pictures out so far: the damage is at or just after this one
            try:
                for frame in container.decode(stream):
                    if frame.is_corrupt:
                        raise self._damaged(decoded, "FFmpeg marked the picture corrupt")
                    if decoded >= start:
                        yield frame
                    decoded += 1
            except pyav().error.FFmpegError as err:
                raise self._damaged(decoded, getattr(err, "strerror", None) or str(err)) from None

    def _damaged(self, index: int, detail: str) -> ValueError:
        return ValueError(
            f"{self.path}: the video is damaged at frame {index} (counted from 0; {detail}); "
            "a decoder would conceal it, and the concealed picture would be scored as the "
            "source: repair or re-export the video"
        )

    def planes(self, start: int = 0, count: int | None = None) -> Iterator[Planes]:
        """4:2:0 uint8 planes ``Y (H, W)``, ``U, V (H/2, W/2)`` of frames ``start ..``."""
        for planes in self.native_planes(start, count):
            y, u, v = planes
            if u.shape == y.shape:
                u, v = _average_chroma(u), _average_chroma(v)
            yield y, u, v

    def native_planes(self, start: int = 0, count: int | None = None) -> Iterator[Planes]:
        """Planes at the source's chroma resolution: 4:2:0, or 4:4:4 for yuv444p sources."""
        stop = self.num_frames if count is None else start + count
        index = start
        if index >= stop:
            return
        for frame in self._decoded(start):
            yield self._planes(frame)
            index += 1
            if index >= stop:
                return
        raise ValueError(
            f"{self.path} ended after {index} frames, but frames {start}..{stop - 1} were asked for"
        )

    def _planes(self, frame: av.VideoFrame) -> Planes:
        height, width = self.height, self.width
        if (frame.height, frame.width) != (height, width):
            raise ValueError(
                f"{self.path}: picture size changed mid-stream from {width}x{height} to "
                f"{frame.width}x{frame.height}; such streams are not supported"
            )
        name = frame.format.name
        if name in _NATIVE_444:
            y, u, v = frame.to_ndarray()  # (3, H, W)
            return y, u, v
        if name not in _NATIVE_420:
            frame = frame.reformat(format="yuv420p")
        samples = frame.to_ndarray()  # (H*3/2, W): Y rows, then U and V rows of width W
        y = samples[:height]
        chroma = samples[height:].reshape(2, height // 2, width // 2)
        return y, chroma[0], chroma[1]


class PyAVWriter(FrameWriter):
    """Encodes 4:2:0 uint8 planes with libx264 (MP4 or MKV) or FFV1 (lossless, MKV).

    ``container_format`` is "mp4" or "matroska"; it is given explicitly so that the file
    may carry any name (the atomic writer in :mod:`enhancer.data.sequence` writes a temp
    name first). ``crf`` and ``preset`` apply to libx264 only.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float = 30.0,
        crf: int | None = None,
        container_format: str = "mp4",
        preset: str = "medium",
        codec: str = "libx264",
    ) -> None:
        check_even_size(width, height, str(path))
        if codec not in WRITE_CODECS:
            raise ValueError(f"cannot write video with {codec!r}; known: {WRITE_CODECS}")
        if codec == "ffv1" and (crf is not None or container_format != "matroska"):
            raise ValueError(f"FFV1 is lossless and written to MKV: got crf={crf}, "
                             f"container {container_format!r}; drop crf and name the file .mkv")
        if crf is not None and not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51 (0 = lossless, 23 = x264 default), got {crf}")
        self.path = Path(path)
        self.width, self.height = width, height
        self.num_frames = 0
        rate = fps_to_fraction(fps)
        options = {"preset": preset} if codec == "libx264" else {}
        if crf is not None:
            options["crf"] = str(crf)
        self._container = pyav().open(str(self.path), mode="w", format=container_format)
        try:
            self._stream = self._container.add_stream(codec, rate=rate, options=options)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = 1 / rate
        except Exception:
            self._container.close()
            raise

    def write_planes(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str = "bt709",
                     upsample: str = "bilinear") -> None:
        """Encode one frame given as uint8 planes ``Y (H, W)``, ``U, V (H/2, W/2)``; they are
        encoded as they are, so ``matrix``/``upsample`` are unused."""
        check_planes(y, u, v, self.width, self.height, np.dtype(np.uint8))
        # (H*3/2, W): the layout PyAV's yuv420p from_ndarray expects
        stacked = np.concatenate((y.ravel(), u.ravel(), v.ravel())).reshape(-1, self.width)
        frame = pyav().VideoFrame.from_ndarray(stacked, format="yuv420p")
        frame.pts = self.num_frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        self._container.close()
