"""Streams in, enhanced video out: an enhancer ``.bin`` or any H.264/HEVC file, the model
that serves it, and the file ``enhancer-enhance`` writes.

::

    source = open_bitstream("clip.mp4")        # a Container (.bin) or a VideoStream
    source.codec, source.quality               # "x264", 28 (from x264's SEI, or the QP)
    for data, coded in source.decode():        # (the frame's packet bytes, CodecOutput)
        ...
    default_enhancer("x264", 28)               # "x264_temporal_tiny": the bundled model for it
    stream_model_tag(source)                   # the model its strength maps name, or None
    enhance_file("clip.mp4", "enhanced.mp4")   # what enhancer-enhance runs

A :class:`VideoStream` is what a codec's decoder gives for a file made by anyone: the
decoded frames as :class:`enhancer.codecs.CodecOutput` (no latent), each with its packet's
bytes (where SEI messages live), exactly as :func:`enhancer.codecs.container.decode_container`
gives them for a ``.bin``; :meth:`enhancer.pipeline.Enhancer.enhance` rolls either out with
the one :class:`enhancer.pipeline.Rollout`.

Which quality a model is told (:func:`quality_for_model`): a learned codec's model serves
its own quality only (one model per rate point); an x264/x265 model serves any CRF in the
range it was trained on (its training config's ``data.codec_qualities``), x265 CRFs mapped
to x264's scale (:data:`enhancer.codecs.conventional.X265_CRF_ON_X264_SCALE`). A stream's
CRF comes from the encoder's SEI, else from its mean QP (:func:`crf_from_qp`), or is given.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from enhancer.codecs.base import CodecError, CodecOutput
from enhancer.codecs.container import MAGIC, Container
from enhancer.codecs.conventional import crf_from_qp, decoded_rgb, encoder_crf, equivalent_crf
from enhancer.codecs.registry import codec_class
from enhancer.data.paths import check_not_input, check_writable_parent
from enhancer.data.sequence import check_writer_target, open_writer
from enhancer.data.video import pyav
from enhancer.data.yuv import check_even_size

if TYPE_CHECKING:
    from enhancer.pipeline.enhancer import Enhancer

# PyAV decoder name -> the registered codec whose format (and CRF scale) the stream has
STREAM_CODECS = {"h264": "x264", "hevc": "x265"}
QUALITY_PROBE_FRAMES = 16  # frames decoded to read the QP of a stream without encoder info
HEADER_PACKETS = 4  # packets searched (after the header) for the encoder's SEI
NEAR_LOSSLESS_CRF = 12  # the .mp4/.mkv output (x264), as the evaluation's videos


@dataclass
class VideoStream:
    """An H.264 or HEVC stream in any container (MP4, MKV, Annex-B); see :func:`open_bitstream`.

    ``codec``: the registered codec of its format (``x264`` for H.264, ``x265`` for HEVC);
    ``quality``: its CRF on that codec's scale (None: none could be read, none given);
    ``quality_source``: where the CRF came from, for messages.
    """

    path: Path
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int | None
    quality: int | None
    quality_source: str

    def decode(self) -> Iterator[tuple[bytes, CodecOutput]]:
        """``(packet bytes, CodecOutput(decoded, None, None, None))`` per frame, in display
        order; ``decoded`` is RGB ``(1, 3, H, W)`` in [0, 1] (BT.709, as the codecs decode).
        With B-frames a frame's bytes are those of the packet with its timestamp."""
        with pyav().open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            by_pts: dict[int, bytes] = {}
            in_order: deque[bytes] = deque()  # packets without timestamps (Annex-B)
            for packet in container.demux(stream):
                if packet.size:
                    if packet.pts is None:
                        in_order.append(bytes(packet))
                    else:
                        by_pts[packet.pts] = bytes(packet)
                for frame in packet.decode():
                    data = by_pts.pop(frame.pts, None) if frame.pts is not None else None
                    if data is None:
                        data = in_order.popleft() if in_order else b""
                    yield data, CodecOutput(decoded_rgb(frame), None, None, None)

    def packets(self) -> Iterator[bytes]:
        """Each packet's bytes in stream order, without decoding (where SEI messages live)."""
        with pyav().open(str(self.path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    yield bytes(packet)


def stream_model_tag(source: Container | VideoStream, frames: int = 64) -> int | None:
    """The model tag of the first strength map ``source`` carries in its first ``frames``
    frames (:func:`enhancer.strength.strength_map.model_tag`: the enhancer the encoder chose
    the maps for), or None: no map there, or one written before maps had tags. Damaged
    bytes raise :class:`enhancer.strength.StrengthMapError`."""
    from enhancer.strength.coding import decode_map
    from enhancer.strength.sei import carried_strength

    if isinstance(source, Container):
        carried = (carried_strength(source.codec, data, side)
                   for data, side in itertools.zip_longest(source.frames, source.side,
                                                           fillvalue=b""))
    else:
        carried = (carried_strength(source.codec, data) for data in source.packets())
    for strength_bytes in itertools.islice(carried, frames):
        if strength_bytes:  # the first map of a stream is an intra map: it reads alone
            return decode_map(strength_bytes).model_tag
    return None


def _unreadable(path: Path, reason: str) -> ValueError:
    return ValueError(
        f"{path} is neither an enhancer .bin nor a video PyAV can open ({reason}); give a .bin "
        "written by enhancer-codec encode, or an H.264/HEVC file (.mp4, .mkv, .264, .265)")


def open_bitstream(path: str | Path, quality: int | None = None) -> Container | VideoStream:
    """An enhancer ``.bin`` (by its magic bytes) or any H.264/HEVC file PyAV can open.

    ``quality`` (files only: a ``.bin`` states its own) overrides the CRF read from the
    stream. Errors name the file and what to give instead.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"the input {path} is a folder; give a .bin or a video file")
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(len(MAGIC))
    if magic == MAGIC:
        container = Container.load(path)
        if quality is not None:
            raise ValueError(
                f"{path} is a .bin whose header states {container.codec} q{container.quality}; "
                f"--quality applies to H.264/HEVC files only: drop --quality {quality}")
        return container
    return open_video_stream(path, quality)


def open_video_stream(path: str | Path, quality: int | None = None) -> VideoStream:
    """Probe an H.264/HEVC file: size, rate, frame count, and its CRF (``quality`` given, the
    encoder's SEI, or for H.264 the mean P-frame QP of its first frames)."""
    path = Path(path)
    av = pyav()
    try:
        opened = av.open(str(path))
    except av.error.FFmpegError as err:
        raise _unreadable(path, getattr(err, "strerror", None) or str(err)) from None
    with opened as container:
        if not container.streams.video:
            raise _unreadable(path, "it has no video stream")
        stream = container.streams.video[0]
        decoder_name = stream.codec_context.name
        if decoder_name == "rawvideo":
            raise CodecError(f"{path} is uncompressed video: code it first (enhancer-codec "
                             "encode --codec x264 --quality 28 IN OUT.bin), then enhance the .bin")
        if decoder_name not in STREAM_CODECS:
            raise CodecError(f"{path} is a {decoder_name} stream; no bundled model serves it. "
                             f"{describe_bundled()}")
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 30.0
        header = bytes(stream.codec_context.extradata or b"")
        packet_sizes = []  # counted without decoding where the container states no length
        for packet in container.demux(stream):
            if len(packet_sizes) < HEADER_PACKETS:
                header += bytes(packet)
            if packet.size:
                packet_sizes.append(packet.size)
            if stream.frames and len(packet_sizes) >= HEADER_PACKETS:
                break
        num_frames = stream.frames or len(packet_sizes)
    check_even_size(width, height, str(path))
    codec = STREAM_CODECS[decoder_name]
    if quality is not None:
        codec_class(codec).check_quality(quality)
        source = "given"
    elif (found := encoder_crf(header)) is not None:
        encoder, crf = found
        quality, source = round(crf), f"{encoder} SEI crf={crf:g}"
    elif codec == "x264":
        mean_qp = _mean_p_frame_qp(path)
        quality = None if mean_qp is None else crf_from_qp(mean_qp)
        source = f"mean P-frame QP {mean_qp:.1f}" if mean_qp is not None else "no QP"
    else:
        source = "no encoder SEI, and HEVC decoding exports no QP"
    return VideoStream(path, codec, width, height, fps, num_frames, quality, source)


def _mean_p_frame_qp(path: Path) -> float | None:
    """Mean per-macroblock QP over the P-frames among the first :data:`QUALITY_PROBE_FRAMES`
    (the I-frames' when there are none); None when the decoder exports none."""
    av = pyav()
    qp_by_type: dict[str, list[float]] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"export_side_data": "venc_params"}
        for frame in itertools.islice(container.decode(stream), QUALITY_PROBE_FRAMES):
            # .get(Type): PyAV 18.1.0 iterates side data as values, 18.1.1 as their types
            params = frame.side_data.get(av.sidedata.sidedata.Type.VIDEO_ENC_PARAMS)
            if params is not None:
                picture_type = av.video.frame.PictureType(frame.pict_type).name
                qp_by_type.setdefault(picture_type, []).append(float(params.qp_map().mean()))
    values = qp_by_type.get("P") or qp_by_type.get("B") or qp_by_type.get("I")
    return sum(values) / len(values) if values else None


# --- which model serves which stream ------------------------------------------------------
def _told_quality(model_codec: str, model_quality: int, trained: tuple[int, int],
                  stream_codec: str, stream_quality: int) -> int | None:
    """The quality a model is told for a stream, or None when it does not serve it."""
    if codec_class(model_codec).learned or codec_class(stream_codec).learned:
        same = (stream_codec, stream_quality) == (model_codec, model_quality)
        return stream_quality if same else None
    quality = equivalent_crf(stream_quality, stream_codec, model_codec)
    return quality if trained[0] <= quality <= trained[1] else None


def quality_for_model(model_codec: str, model_quality: int, trained: tuple[int, int],
                      stream_codec: str, stream_quality: int) -> int:
    """The quality a model of ``model_codec`` (trained on qualities ``trained`` = low, high)
    is told for a ``stream_codec`` stream at ``stream_quality``.

    Raises :class:`CodecError` naming what the model serves and the bundled model for the
    stream: a learned codec's model serves only its own codec and quality; an x264/x265
    model any x264/x265 CRF within ``trained`` (x265 on x264's scale).
    """
    quality = _told_quality(model_codec, model_quality, trained, stream_codec, stream_quality)
    if quality is not None:
        return quality
    if codec_class(model_codec).learned or codec_class(stream_codec).learned:
        kind = "one model per quality" if codec_class(model_codec).learned else "x264/x265"
        raise CodecError(
            f"the bitstream is {stream_codec} q{stream_quality}, but the decoder is "
            f"{model_codec} q{model_quality}: this enhancer serves "
            f"{_served(model_codec, trained)} only ({kind}); "
            f"{serving_hint(stream_codec, stream_quality)}")
    quality = equivalent_crf(stream_quality, stream_codec, model_codec)
    on_scale = f" (CRF {quality} on {model_codec}'s scale)" if quality != stream_quality else ""
    low, high = trained
    raise CodecError(
        f"the stream is {stream_codec} CRF {stream_quality}{on_scale}, outside the range this "
        f"enhancer was trained for: {model_codec} CRF {low}..{high}; re-encode at a CRF in "
        f"{low}..{high}, or pass --quality if the stream's CRF was misread")


def _served(codec: str, trained: tuple[int, int]) -> str:
    low, high = trained
    if codec_class(codec).learned:
        return f"{codec} q{low}" if low == high else f"{codec} q{low}..q{high}"
    crf = f"CRF {low}" if low == high else f"CRF {low}..{high}"
    return f"x264/x265 {crf} (.bin, MP4, MKV, Annex-B)"


def describe_bundled() -> str:
    """Which bundled model serves what, in one line."""
    from enhancer.pipeline.checkpoint import bundled_models

    models = "; ".join(f"{m.name}: {_served(m.codec, m.qualities)}"
                       + (" with strength maps" if m.signalled else "")
                       for m in bundled_models())
    return f"Bundled models: {models or 'none'}"


@functools.lru_cache(maxsize=None)
def bundled_model_tag(name: str) -> int:
    """The model tag of a bundled model (hashing its weights takes a load: cached)."""
    from enhancer.pipeline.checkpoint import load_enhancer

    return load_enhancer(name).model_tag


def default_enhancer(codec: str, quality: int, *, model_tag: int | None = None,
                     signalled: bool = False) -> str:
    """The bundled model that serves a ``codec`` stream at ``quality`` (residual models
    before baselines); :class:`CodecError` listing what each serves when none does.

    ``model_tag``: the stream carries strength maps chosen for the model with this tag
    (:func:`stream_model_tag`): that model, or an error if no bundled model has it.
    Otherwise a model made for streams with maps (:attr:`BundledModel.signalled`: it
    harms where no map turns it down) is picked only with ``signalled`` (an encoder that
    sends maps), which falls back to any model that serves the stream."""
    from enhancer.pipeline.checkpoint import bundled_models

    serving = [m for m in bundled_models()
               if _told_quality(m.codec, m.qualities[0], m.qualities, codec, quality) is not None]
    if model_tag is not None:
        for model in serving:
            if bundled_model_tag(model.name) == model_tag:
                return model.name
        raise CodecError(f"the stream's strength maps were chosen for the enhancer with model "
                         f"tag {model_tag:04x}, which no bundled model serving {codec} "
                         f"q{quality} has: pass --enhancer with the file the encoder used")
    matching = [m for m in serving if m.signalled == signalled]
    if matching or (signalled and serving):
        return (matching or serving)[0].name
    raise CodecError(f"no bundled model serves {codec} q{quality}"
                     + (" without strength maps" if serving else "")
                     + f"; pick a stream or an --enhancer that does. {describe_bundled()}")


def serving_hint(codec: str, quality: int) -> str:
    """``the bundled model for it is NAME`` or, when there is none, what each one serves."""
    try:
        return f"the bundled model for it is {default_enhancer(codec, quality)}"
    except CodecError as err:
        return str(err)


# --- the file enhancer-enhance writes -----------------------------------------------------
@dataclass
class EnhanceReport:
    enhancer: str
    codec: str
    quality: int
    quality_source: str
    width: int
    height: int
    frames: int
    seconds: float
    mapped_frames: int = 0  # frames whose strength map came in the stream

    def summary(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        maps = (f"strength maps from the stream ({self.mapped_frames} sent; a map holds "
                "until the next)" if self.mapped_frames
                else "no strength maps in the stream: the model's default strength")
        return (f"{self.enhancer} on {self.codec} q{self.quality} ({self.quality_source}): "
                f"{self.frames} frames {self.width}x{self.height} in {self.seconds:.1f} s, "
                f"{fps:.2f} fps; {maps}")


def check_output(output: Path, input_path: Path, lossless: bool) -> None:
    """Everything about the output path that can fail, checked before any work."""
    if output.exists() and not (output.is_file() or output.is_dir()):
        raise ValueError(f"the output {output} is a device or special file; give a .mp4, .mkv "
                         "or .y4m file name, or a new folder for PNG frames")
    check_not_input(output, input_path)
    suffix = output.suffix.lower()
    if suffix not in (".mp4", ".mkv", ".y4m", ""):
        raise ValueError(f"cannot write {output.name!r}: the output is a .mp4, .mkv (with "
                         "--lossless) or .y4m file, or a path without extension for PNG frames")
    if lossless and suffix != ".mkv":
        raise ValueError(f"--lossless writes MKV: name the output .mkv, not {output.name!r}")
    try:
        check_writable_parent(output)  # first: a parent that is a file is not a folder
        check_writer_target(output)
    except PermissionError as err:
        raise PermissionError(f"{err}; pick an output in a folder you can write") from None


def enhance_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    enhancer: str | Path | None = None,
    quality: int | None = None,
    frames: int | None = None,
    side_by_side: bool = False,
    lossless: bool = False,
    seed: int = 0,
    sampling: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> EnhanceReport:
    """Enhance a ``.bin`` or an H.264/HEVC file into ``output_path`` (``.mp4``: x264 at CRF
    :data:`NEAR_LOSSLESS_CRF`; ``.mkv`` with ``lossless``: FFV1; ``.y4m``; or a PNG
    folder). ``enhancer``: a bundled name or checkpoint path (None: the bundled model for
    the stream's codec and quality); ``sampling``: overrides of the checkpoint's sampling
    (``steps``, ``gamma``, ``eta``, ``t_start``, ``noise``, ``residual_scale``);
    ``side_by_side``: each frame is decoded | enhanced. Every check runs before any frame
    is decoded; the output appears only when complete."""
    from enhancer.pipeline.checkpoint import load_enhancer

    input_path, output_path = Path(input_path), Path(output_path)
    if frames is not None and frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    check_output(output_path, input_path, lossless)
    source = open_bitstream(input_path, quality)
    if isinstance(source, Container):
        codec, stream_quality, quality_source = source.codec, source.quality, ".bin header"
        width, height, fps, total = source.width, source.height, source.fps, len(source.frames)
    else:
        if source.quality is None:
            raise ValueError(f"{input_path}: no quality can be read ({source.quality_source}); "
                             "pass --quality CRF (the CRF it was encoded with)")
        codec, stream_quality, quality_source = source.codec, source.quality, source.quality_source
        width, height, fps, total = source.width, source.height, source.fps, source.num_frames
    # Maps chosen for one model are served by that model; a stream without maps by the
    # bundled model for its codec and quality.
    name = enhancer if enhancer is not None else default_enhancer(
        codec, stream_quality, model_tag=stream_model_tag(source))
    model: Enhancer = load_enhancer(name, device=device)
    label = Path(name).stem if Path(name).is_file() else str(name)
    enhanced_frames = model.enhance(source, seed=seed, **(sampling or {}))  # checks run here
    if frames is not None:
        total = min(frames, total) if total else frames
        enhanced_frames = itertools.islice(enhanced_frames, frames)
    out_width = 2 * width if side_by_side else width
    count, mapped, start = 0, 0, time.perf_counter()
    crf = None if lossless or output_path.suffix.lower() not in (".mp4", ".mkv") \
        else NEAR_LOSSLESS_CRF
    with open_writer(output_path, width=out_width, height=height, fps=fps, crf=crf,
                     lossless=lossless) as writer:
        bar = tqdm(enhanced_frames, total=total, disable=not progress, unit="frame",
                   desc=f"enhance {label}", dynamic_ncols=True)
        for frame in bar:
            picture = frame.enhanced  # (1, 3, H, W) in [0, 1]
            if side_by_side:
                picture = _side_by_side(frame.decoded, frame.enhanced)
            writer.write(picture.cpu())
            count += 1
            mapped += bool(frame.strength_bytes)
    return EnhanceReport(label, codec, stream_quality, quality_source, width, height, count,
                         time.perf_counter() - start, mapped)


def _side_by_side(decoded, enhanced):
    """``decoded | enhanced``: (1, 3, H, 2W)."""
    import torch

    return torch.cat([decoded, enhanced], dim=-1)
