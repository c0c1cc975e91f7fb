"""The codec contract every adapter speaks, and the registry that builds them.

An adapter wraps one codec family (CompressAI SSF, a CompressAI image
auto-encoder, DCVC, x264, ...) behind the same small, CompressAI-like API::

    codec = load_codec("ssf", quality=3, checkpoint="ssf2020-mse-3.pth.tar")

    # differentiable training path, one frame at a time
    state = None                                  # None = next frame is intra
    out = codec(frame, state)                     # CodecOutput
    out.decoded, out.latent, out.likelihoods, out.state
    codec.aux_loss()                              # the entropy bottlenecks' own loss (or 0)
    codec.aux_parameter_names()                   # what only that loss trains (or none)

    # real coding path: bytes in, bytes out
    data, enc_out = codec.compress(frame, state)  # bytes, CodecOutput (decoder's view)
    dec_out = codec.decompress(data, (H, W), state)

Frames are ``(B, 3, H, W)`` RGB tensors in ``[0, 1]`` of any size; the adapter
pads to its required multiple (replicate padding) and crops the decoded frame
back. The reference state (decoded picture buffer, reference features) is an
opaque value returned with every output and passed back for the next frame:
nothing is stored on the module, so two sequences can never leak into each
other. ``state=None`` codes the frame as intra.

:class:`~enhancer.codecs.stream.CodecStream` carries one sequence through a codec (encoder, decoder or
training path) and applies an intra period: ``-1`` codes only the first frame as
intra, ``32`` every 32nd. :meth:`CodecAdapter.encode_sequence` is the one helper over it.

The stream that drives the contract lives in :mod:`enhancer.codecs.stream`, the registry
(:func:`register_codec`, :func:`load_codec`) in :mod:`enhancer.codecs.registry` and the
string packing adapters share in :mod:`enhancer.codecs.packing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from enhancer.data.padding import crop, pad_to_multiple, padded_size


@dataclass
class CodecOutput:
    """What a codec gives for one frame.

    decoded:      (B, 3, H, W) in [0, 1], cropped to the input size.
    latent:       (B, C, h, w) conditioning latent for the enhancer, or None
                  for codecs without one (x264). h, w = padded size / latent_stride.
    likelihoods:  name -> likelihood tensor (training path only; None when
                  decoded from bytes or for conventional codecs).
    state:        opaque reference state to pass with the next frame.
    """

    decoded: Tensor
    latent: Tensor | None
    likelihoods: dict[str, Tensor] | None
    state: Any


class CodecError(ValueError):
    """A codec was asked for something it cannot do (bad quality, bad bytes, ...)."""


class CodecAdapter(nn.Module):
    """Base class of all codec adapters. Subclasses implement the four hooks.

    Class attributes a subclass sets:
        name:            registry name ("ssf", "x264", ...).
        qualities:       the valid quality indices.
        pad_multiple:    frames are padded to a multiple of this.
        latent_channels: channels of ``CodecOutput.latent`` (None: no latent).
        latent_stride:   padded frame size / latent size.
        is_video:        whether P-frames use the reference state.
        learned:         whether the codec has weights (and likelihoods).
        detects_damaged_frames: whether decompress raises on truncated/damaged frame
                         bytes (a concealing decoder cannot; the container's CRC-32 does).
    """

    name: str = ""
    qualities: tuple[int, ...] = ()
    pad_multiple: int = 1
    latent_channels: int | None = None
    latent_stride: int = 1
    is_video: bool = False
    learned: bool = True
    detects_damaged_frames: bool = True

    def __init__(self, quality: int):
        super().__init__()
        self.check_quality(quality)
        self.quality = quality

    @classmethod
    def check_quality(cls, quality: int) -> None:
        """Raise :class:`CodecError` listing the valid qualities if ``quality`` is not one."""
        if quality not in cls.qualities:
            ordered = sorted(cls.qualities)
            contiguous = len(ordered) > 4 and ordered == list(range(ordered[0], ordered[-1] + 1))
            choices = (f"an integer from {ordered[0]} to {ordered[-1]}" if contiguous
                       else f"one of {ordered}")
            raise CodecError(f"codec {cls.name!r} has no quality {quality!r}; choose {choices}")

    @classmethod
    def quality_level(cls, quality: int) -> float:
        """Where ``quality`` lies among the codec's rate points: 0 the coarsest, 1 the finest.

        A quality-conditioned enhancer takes it as an input (what the decoder knows of
        the stream's quality). Learned codecs: the index's position in :attr:`qualities`
        (higher = more bits); conventional codecs override it (their CRF runs the other way).
        """
        cls.check_quality(quality)
        ordered = sorted(cls.qualities)
        return ordered.index(quality) / max(len(ordered) - 1, 1)

    # --- hooks for subclasses: frames here are already padded -------------------------
    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        raise NotImplementedError

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        raise NotImplementedError

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int], state: Any) -> CodecOutput:
        raise NotImplementedError

    # --- weights ------------------------------------------------------------------------
    ENTROPY_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")

    def update(self) -> None:
        """Rebuild entropy-coder tables from the weights (learned codecs override)."""

    def check_finite_weights(self) -> None:
        """Raise :class:`CodecError` naming the first parameter or buffer that holds NaN or
        inf: such weights (what a diverged run leaves) would send the entropy coder into an
        endless loop. Learned adapters call it before building their entropy tables."""
        for name, tensor in itertools.chain(self.named_parameters(), self.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise CodecError(
                    f"codec {self.name!r} q{self.quality}: weight {name!r} holds {bad} non-finite "
                    "values (NaN or inf), as a diverged training run leaves them; use an "
                    "earlier checkpoint of the run"
                )

    def check_finite_latent(self, latent: Tensor, what: str) -> None:
        """Raise :class:`CodecError` if ``latent`` (about to be entropy coded) holds NaN or
        inf: it names a non-finite weight if there is one, else says the weights overflow."""
        if bool(torch.isfinite(latent).all()):
            return
        self.check_finite_weights()
        raise CodecError(
            f"codec {self.name!r} q{self.quality}: the {what} holds non-finite values although "
            "the frame and the weights are finite: the weights overflow float32 (a diverged "
            "run); use an earlier checkpoint"
        )

    def aux_loss(self) -> Tensor:
        """The auxiliary loss of the codec's entropy bottlenecks, a scalar tensor.

        It fits the bottlenecks' CDF ``quantiles`` (CompressAI's ``aux_loss``) and is
        minimised by an optimizer of its own while the codec trains; no other weight gets
        a gradient from it. Codecs without such bottlenecks (x264, x265) give a constant
        zero that needs no gradient.
        """
        reference = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.zeros((), device=None if reference is None else reference.device)

    def aux_parameter_names(self) -> set[str]:
        """Names (as :meth:`named_parameters` gives them) of the parameters that only
        :meth:`aux_loss` trains: the entropy bottlenecks' ``quantiles``.

        While the codec trains they get the auxiliary optimizer and are kept out of the
        main one; the rate-distortion loss gives them no gradient. Default: none, for codecs
        without such bottlenecks (x264, x265) and for those whose entropy models train
        through the rate term alone (DCVC-FM's bit estimators).
        """
        return set()

    def weights(self) -> dict[str, Tensor]:
        """The trainable state, without entropy-coder tables (rebuilt by :meth:`update`)."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith(self.ENTROPY_TABLES)}

    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Inverse of :meth:`weights`: strict on every key but the entropy tables."""
        result = self.load_state_dict(weights, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith(self.ENTROPY_TABLES)]
        if missing or result.unexpected_keys:
            raise CodecError(
                f"codec weights do not fit {self.name!r} q{self.quality}: missing {missing[:3]}, "
                f"unexpected {result.unexpected_keys[:3]}"
            )
        self.update()

    # --- public API ---------------------------------------------------------------------
    def forward(self, frame: Tensor, state: Any = None) -> CodecOutput:
        """Differentiable training path (eval mode: equals the decoded bytes)."""
        _check_frame(frame)
        height, width = frame.shape[-2:]
        out = self._forward_padded(pad_to_multiple(frame, self.pad_multiple), state)
        out.decoded = crop(out.decoded, height, width)
        return out

    @torch.no_grad()
    def compress(self, frame: Tensor, state: Any = None) -> tuple[bytes, CodecOutput]:
        """Encode one (1, 3, H, W) frame to bytes; also return what the decoder will see."""
        _check_frame(frame)
        if frame.shape[0] != 1:
            raise CodecError(f"compress codes one frame at a time, got a batch of {frame.shape[0]}")
        check_finite_frame(frame, "the frame")  # NaN or inf would hang the entropy coder
        height, width = frame.shape[-2:]
        data, out = self._compress_padded(pad_to_multiple(frame, self.pad_multiple), state)
        out.decoded = crop(out.decoded, height, width)
        return data, out

    @torch.no_grad()
    def decompress(self, data: bytes, size: tuple[int, int], state: Any = None) -> CodecOutput:
        """Decode the bytes of one frame of ``size = (H, W)`` given the reference state."""
        height, width = size
        padded_hw = self.padded_size(size)
        try:
            out = self._decompress_padded(data, padded_hw, state)
        except CodecError:
            raise
        except Exception as err:  # entropy decoders fail in many ways on bad bytes
            raise CodecError(
                f"could not decode {len(data)} bytes as a {self.name} q{self.quality} frame of "
                f"{width}x{height}: {err}. The data is corrupt or was written by another codec."
            ) from err
        out.decoded = crop(out.decoded, height, width)
        return out

    def padded_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The ``(H, W)`` a frame of ``size = (H, W)`` is coded at (a multiple of pad_multiple)."""
        return padded_size(*size, self.pad_multiple)

    # --- sequences ----------------------------------------------------------------------
    @staticmethod
    def check_intra_period(intra_period: int) -> None:
        """Refuse an intra period that is neither -1 (only frame 0) nor positive."""
        if intra_period == 0 or intra_period < -1:
            raise CodecError(f"intra period must be -1 or a positive number, got {intra_period}")

    @staticmethod
    def is_intra(index: int, intra_period: int) -> bool:
        """Frame ``index`` is intra for this period (-1: only frame 0)."""
        CodecAdapter.check_intra_period(intra_period)
        return index == 0 if intra_period == -1 else index % intra_period == 0

    def encode_sequence(
        self, frames: Iterable[Tensor], intra_period: int = -1
    ) -> Iterator[tuple[bytes, CodecOutput]]:
        """Yield (bytes, decoder-side output) per frame; frames are (1, 3, H, W)."""
        from enhancer.codecs.stream import CodecStream  # the stream drives this contract

        stream = CodecStream(self, intra_period)
        for frame in frames:
            yield stream.compress(frame)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, quality={self.quality}"


def _check_frame(frame: Tensor) -> None:
    if frame.ndim != 4 or frame.shape[1] != 3:
        raise CodecError(f"expected an RGB frame of shape (B, 3, H, W), got {tuple(frame.shape)}")


def check_finite_frame(frame: Tensor, what: str) -> None:
    """Raise :class:`CodecError` naming ``what`` (``"frame 3"``) if it holds NaN or inf: no
    such value may reach an entropy coder (CompressAI's rANS coder loops forever on one).
    Integer frames (uint8 0..255) are refused too: codecs take float RGB in [0, 1]."""
    if not frame.is_floating_point():
        raise CodecError(f"{what} is {str(frame.dtype).removeprefix('torch.')}; codecs take "
                         "float RGB in [0, 1] (divide uint8 frames by 255)")
    finite = torch.isfinite(frame)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise CodecError(f"{what} holds {bad} non-finite pixel values (NaN or inf); frames must "
                         "be finite RGB in [0, 1]")


# --- bpp ---------------------------------------------------------------------------------
def bpp_from_likelihoods(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated bits per pixel, summed over all entropy models, averaged over the batch."""
    batch = next(iter(likelihoods.values())).shape[0]
    total_bits = sum((-torch.log2(lk.clamp_min(1e-9))).sum() for lk in likelihoods.values())
    return total_bits / (num_pixels * batch)


