"""Encode a video file to a ``.bin`` container and decode it back (what ``tools/codec.py`` runs).

It sits in the pipeline layer, not in ``enhancer.codecs``, because a codec may come from
an enhancer checkpoint (:mod:`enhancer.pipeline.checkpoint`).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from enhancer.codecs.base import CodecAdapter, CodecError
from enhancer.codecs.container import (
    Container,
    check_frame_size,
    decode_container,
    weights_fingerprint,
)
from enhancer.codecs.registry import codec_class, load_codec
from enhancer.data.paths import check_file_target, check_not_input, write_atomic_text
from enhancer.data.sequence import check_writer_target, open_sequence, open_writer
from enhancer.metrics.psnr import mse_to_psnr
from enhancer.pipeline.rollout import Rollout
from enhancer.strength import SignalConfig
from enhancer.strength.sei import attach_strength


@dataclass
class CodingReport:
    codec: str
    quality: int
    width: int
    height: int
    frames: int
    num_bytes: int
    bpp: float
    psnr_rgb: float | None  # mean over frames; None when decoding (no reference)
    seconds_per_frame: float
    strength_bytes: int = 0  # of num_bytes, the signalled strength maps'
    psnr_enhanced: float | None = None  # with --signal: the enhanced frames' mean PSNR-RGB

    def summary(self) -> str:
        psnr = f", PSNR-RGB {self.psnr_rgb:.2f} dB" if self.psnr_rgb is not None else ""
        text = (
            f"{self.codec} q{self.quality}: {self.frames} frames {self.width}x{self.height}, "
            f"{self.num_bytes} bytes, {self.bpp:.4f} bpp{psnr}, "
            f"{self.seconds_per_frame:.3f} s/frame"
        )
        if self.strength_bytes:
            share = 100 * self.strength_bytes / max(self.num_bytes, 1)
            text += (f"; strength maps {self.strength_bytes} bytes ({share:.2f} % of the "
                     f"stream), enhanced PSNR-RGB {self.psnr_enhanced:.2f} dB")
        return text

    def to_dict(self) -> dict:
        return asdict(self)


RANDOM_WEIGHTS_SEED = 0
# CompressAI zoo names: "bmshj2018-hyperprior-3-5c6f152b.pth.tar", "ssf2020-mse-3-c1b3b8d3.pth.tar"
_ZOO_QUALITY_RE = re.compile(r"-([0-9]{1,2})(?:-[0-9a-f]{6,})?\.pth(?:\.tar)?$", re.IGNORECASE)
_BUNDLED_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resolve_checkpoint(codec_name: str, checkpoint: str | None) -> str | None:
    """Learned codecs need weights: a path, or the explicit word ``random`` (untrained);
    codecs without weights refuse a checkpoint (as :func:`load_codec` does)."""
    cls = codec_class(codec_name)
    if not cls.learned:
        if checkpoint is not None:
            raise CodecError(f"codec {codec_name!r} has no weights; drop --checkpoint {checkpoint}")
        return None
    if checkpoint is None:
        raise CodecError(
            f"codec {codec_name!r} needs weights: pass --checkpoint PATH (a CompressAI zoo "
            f"file, an enhancer checkpoint or bundled enhancer name whose codec is "
            f"{codec_name}) or --checkpoint random for untrained weights"
        )
    return None if checkpoint == "random" else checkpoint  # "zoo": the codec downloads it


CODEC_SIDECAR_SUFFIX = ".json"  # codec.pth.tar -> codec.pth.tar.json: what the weights are


def write_codec_sidecar(weights_path: str | Path, codec: CodecAdapter) -> None:
    """Record next to a codec weights file which codec and quality it holds (the weights
    file itself stays a plain CompressAI state dict)."""
    sidecar = Path(str(weights_path) + CODEC_SIDECAR_SUFFIX)
    write_atomic_text(sidecar, json.dumps({"codec": codec.name, "quality": codec.quality}) + "\n")


def read_codec_sidecar(weights_path: str | Path) -> dict | None:
    """The ``{"codec", "quality"}`` recorded next to a weights file, or None."""
    sidecar = Path(str(weights_path) + CODEC_SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return None
    try:
        stored = json.loads(sidecar.read_text())
        return {"codec": str(stored["codec"]), "quality": int(stored["quality"])}
    except (ValueError, KeyError, TypeError) as err:
        raise CodecError(f"{sidecar} is damaged ({err}); delete it or rewrite it") from None


def zoo_file_quality(path: str | Path) -> int | None:
    """The quality a CompressAI zoo file name states (``...-3-<hash>.pth.tar`` -> 3), else None."""
    match = _ZOO_QUALITY_RE.search(Path(path).name)
    return int(match.group(1)) if match else None


def _enhancer_checkpoint(checkpoint: str) -> Path | None:
    """The enhancer checkpoint ``checkpoint`` names (a file of ours, or a bundled name), else None."""
    from enhancer.pipeline.checkpoint import CHECKPOINT_FORMAT, resolve_enhancer_path

    path = Path(checkpoint)
    if not path.is_file():
        if not _BUNDLED_NAME_RE.match(checkpoint) or ".." in checkpoint:
            return None  # names are names, not paths
        try:
            path = resolve_enhancer_path(checkpoint)
        except FileNotFoundError:
            return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # not ours; the codec loader names the problem
    return path if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT else None


def _codec_from_enhancer(path: Path, codec_name: str, quality: int, device: str) -> CodecAdapter:
    from enhancer.pipeline.checkpoint import load_enhancer

    codec = load_enhancer(path, device=device).codec
    if (codec.name, codec.quality) != (codec_name, quality):
        raise CodecError(
            f"enhancer checkpoint {str(path)!r} holds a {codec.name} q{codec.quality} codec, not "
            f"{codec_name} q{quality}; pass --codec {codec.name} --quality {codec.quality} "
            "or the checkpoint of that rate"
        )
    return codec


def load_codec_for_files(
    codec_name: str, quality: int, checkpoint: str | None, device: str = "cpu"
) -> CodecAdapter:
    """:func:`load_codec` for the tools: ``checkpoint="random"`` gives untrained weights drawn
    from a fixed seed, so an encoder and a later decoder process get the same ones.

    ``checkpoint`` may also be an enhancer checkpoint or bundled enhancer name (its codec is
    used, e.g. ``ssf_small_q1`` for ``ssf-small`` q1). A quality stated by a zoo file name or
    stored in an enhancer checkpoint must match ``quality``.
    """
    resolved = resolve_checkpoint(codec_name, checkpoint)
    if resolved is not None:
        enhancer_path = None if resolved == "zoo" else _enhancer_checkpoint(resolved)
        if enhancer_path is not None:
            return _codec_from_enhancer(enhancer_path, codec_name, quality, device)
        named = zoo_file_quality(resolved)
        if named is not None and named != quality:
            raise CodecError(
                f"checkpoint {Path(resolved).name!r} is a quality {named} file, but --quality is "
                f"{quality}; pass --quality {named} or the q{quality} checkpoint"
            )
        stored = read_codec_sidecar(resolved)
        if stored is not None and (stored["codec"], stored["quality"]) != (codec_name, quality):
            raise CodecError(
                f"checkpoint {Path(resolved).name!r} holds {stored['codec']} q{stored['quality']} "
                f"weights (its {CODEC_SIDECAR_SUFFIX} says so), not {codec_name} q{quality}; pass "
                f"--codec {stored['codec']} --quality {stored['quality']}"
            )
    if checkpoint != "random":
        return load_codec(codec_name, quality, checkpoint=resolved, device=device)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # asked for explicitly
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return load_codec(codec_name, quality, checkpoint=None, device=device)


def encode_file(
    input_path: str | Path,
    output_path: str | Path,
    codec_name: str,
    quality: int,
    *,
    checkpoint: str | None = None,
    frames: int | None = None,
    intra_period: int = -1,
    width: int | None = None,
    height: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    signal: SignalConfig | None = None,
    enhancer: str | None = None,
    seed: int = 0,
) -> CodingReport:
    """Code ``frames`` frames of any readable video into one container file.

    ``signal``: also choose, with the source in hand, every frame's strength map for
    ``enhancer`` (a bundled name or checkpoint; None: the bundled model for the codec) and
    send it with the frame (as SEI inside H.264/HEVC frames, else as the container's side
    payload); the decoder then enhances exactly as the encoder measured (``seed`` must match).
    Everything is checked before any frame is coded: the frame count, the intra period,
    the frame size, and that the output is writable and not the input.
    """
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1 (or None for all), got {frames}")
    output_path = Path(output_path)
    check_not_input(output_path, input_path)
    check_file_target(output_path, ".bin container")
    codec = load_codec_for_files(codec_name, quality, checkpoint, device)
    codec.check_intra_period(intra_period)  # before any work
    rollout = None
    if signal is not None:
        rollout = _signalling_rollout(codec, enhancer, signal, seed, device)
    with open_sequence(input_path, width=width, height=height) as reader:
        info = reader.info
        check_frame_size(info.width, info.height, str(input_path))
        padded_size = codec.padded_size((info.height, info.width))
        container = Container(
            codec=codec_name, quality=quality, width=info.width, height=info.height,
            intra_period=intra_period, fps=float(info.fps),
            weights_fingerprint=weights_fingerprint(codec),
        )
        total = frames if frames is not None else info.num_frames
        pending: list[torch.Tensor] = []  # the frame being coded, to score its decode

        def source():
            for frame in reader.frames(count=frames):
                pending.append(frame.to(device))
                yield pending[-1]

        squared_error, enhanced_error, strength_bytes = 0.0, 0.0, 0
        start = time.perf_counter()
        coded = codec.encode_sequence(source(), intra_period)
        for data, out in tqdm(coded, total=total, disable=not progress,
                              desc=f"encode {codec_name} q{quality}", unit="frame"):
            frame = pending.pop(0)  # in order: a chunk codec reads several frames ahead
            side = b""
            if rollout is not None:
                enhanced, map_bytes, _ = rollout.signal(frame, out.decoded, out.latent)
                enhanced_error += torch.mean((enhanced - frame) ** 2).item()
                length = len(data)
                data, side = attach_strength(codec_name, data, map_bytes)
                strength_bytes += len(data) - length + len(side)
            container.frames.append(data)
            container.side.append(side)
            container.padded_sizes.append(padded_size)
            squared_error += torch.mean((out.decoded - frame) ** 2).item()
    elapsed = time.perf_counter() - start
    if not container.frames:
        raise CodecError(f"{input_path} holds no frames to encode")
    container.save(output_path)
    count = len(container.frames)
    return CodingReport(
        codec_name, quality, info.width, info.height, count, container.num_bytes, container.bpp,
        mse_to_psnr(squared_error / count), elapsed / count, strength_bytes,
        mse_to_psnr(enhanced_error / count) if rollout is not None else None,
    )


def _signalling_rollout(codec: CodecAdapter, enhancer: str | None, signal: SignalConfig,
                        seed: int, device: str) -> Rollout:
    """The encoder-side roll-out that chooses strength maps for ``codec``'s frames."""
    from enhancer.pipeline.checkpoint import load_enhancer
    from enhancer.pipeline.stream import default_enhancer, quality_for_model

    name = enhancer if enhancer is not None else default_enhancer(codec.name, codec.quality,
                                                                  signalled=True)
    model = load_enhancer(name, device=device)
    if model.codec.name != codec.name:
        raise CodecError(f"--signal: the enhancer {name!r} serves {model.codec.name} streams, "
                         f"not {codec.name}; pass --enhancer with a model for {codec.name}")
    told = quality_for_model(model.codec.name, model.codec.quality, model.trained_qualities,
                             codec.name, codec.quality)
    return Rollout(model, seed=seed, quality=told, signal=signal)


def decode_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    checkpoint: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> CodingReport:
    """Decode a container to ``.y4m``, ``.yuv``, ``.mp4`` or a PNG folder (by the extension)."""
    check_not_input(output_path, input_path)
    check_writer_target(output_path)  # before the work, naming the real path
    container = Container.load(input_path)
    codec = load_codec_for_files(container.codec, container.quality, checkpoint, device)
    hint = f"the --checkpoint used to encode it (not {checkpoint!r})"
    start = time.perf_counter()
    try:
        frames = decode_container(codec, container, weights_hint=hint)  # checks before output
    except CodecError as err:
        raise CodecError(f"{input_path}: {err}") from err
    with open_writer(
        output_path, width=container.width, height=container.height, fps=container.fps
    ) as writer:
        for _, out in tqdm(frames, total=len(container.frames), disable=not progress,
                           desc=f"decode {container.codec}", unit="frame"):
            writer.write(out.decoded.cpu())
    count = len(container.frames)
    return CodingReport(
        container.codec, container.quality, container.width, container.height, count,
        container.num_bytes, container.bpp, None, (time.perf_counter() - start) / count,
    )

