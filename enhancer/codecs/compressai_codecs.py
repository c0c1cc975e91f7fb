"""Adapters for CompressAI codecs: ScaleSpaceFlow (video) and hyperprior image auto-encoders.

The adapters call the CompressAI modules' own layers in the order CompressAI's
``forward`` / ``compress`` / ``decompress`` call them, so the weights and the
bitstream are CompressAI's; they only add what the enhancer needs: the
quantised latent ``y_hat`` next to every decoded frame.

Conditioning latents (all at 1/16 of the padded frame):

* ``ssf`` (and ``ssf-small``, 96 channels, :mod:`enhancer.codecs.ssf_small`):
  ``cat(y_hat, y_motion_hat)`` with 384 channels. For a keyframe
  ``y_hat`` is the image latent and the motion half is zeros; for a P-frame
  ``y_hat`` is the residual latent and ``y_motion_hat`` the scale-space-flow
  latent. Both halves are what SSF's own decoders see.
* ``bmshj2018-hyperprior`` / ``mbt2018-mean``: the image latent ``y_hat``
  (192 channels at quality 1-5, 320 at 6-8).

Checkpoints are CompressAI zoo files (``ssf2020-mse-3-*.pth.tar``,
``bmshj2018-hyperprior-3-*.pth.tar``): a plain state dict, optionally under a
``"state_dict"`` key, loaded with ``weights_only=True`` and CompressAI's own key
renaming (``load_pretrained``).
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from typing import Any

import torch
from compressai.models.google import MeanScaleHyperprior, ScaleHyperprior
from compressai.models.video.google import ScaleSpaceFlow
from compressai.zoo.image import cfgs as image_cfgs
from compressai.zoo.pretrained import load_pretrained
from torch import Tensor, nn

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput
from enhancer.codecs.packing import pack_strings, unpack_strings
from enhancer.codecs.registry import register_codec
from enhancer.utils.weights import load_error_reason, state_dict_mismatch


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a CompressAI-style checkpoint file into a state dict (keys renamed as the zoo does)."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"codec checkpoint {str(path)!r} does not exist; pass the path of a .pth.tar file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CodecError(
            f"could not read codec checkpoint {str(path)!r}: {load_error_reason(err)}"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == "enhancer-checkpoint-v1":
        raise CodecError(
            f"{str(path)!r} is an enhancer checkpoint, not codec weights; tools/codec.py takes "
            "it as --checkpoint (its codec is used), in Python: load_enhancer(path).codec"
        )
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CodecError(f"codec checkpoint {str(path)!r} does not hold a state dict of tensors "
                         "(a CompressAI zoo .pth.tar, or codec.pth.tar of a codec training run)")
    return load_pretrained(obj)


def load_weights_into(model: nn.Module, path: str | Path, codec_name: str) -> None:
    """Load ``path`` into ``model`` strictly; name missing/unexpected/mis-shaped keys on failure."""
    state_dict = load_state_dict_file(path)
    # Entropy-model CDF buffers change shape after update(); they are rebuilt below.
    problems = state_dict_mismatch(
        model.state_dict(), state_dict, ignore_suffixes=CodecAdapter.ENTROPY_TABLES
    )
    if problems:
        raise CodecError(
            f"checkpoint {str(path)!r} does not fit codec {codec_name!r} at this quality: "
            f"{problems}. Pass a checkpoint of the same architecture and quality."
        )
    # The entropy tables are rebuilt from the weights by update(): a file without them (or
    # with tables of another size) loads the same; every other key was checked above.
    weights = {k: v for k, v in state_dict.items()
               if not k.endswith(CodecAdapter.ENTROPY_TABLES)}
    nn.Module.load_state_dict(model, weights, strict=False)


def zoo_checkpoint(codec_name: str, zoo_name: str | None, quality: int) -> Path:
    """The CompressAI zoo file of ``codec_name`` at ``quality`` (MSE), downloaded on request.

    Uses CompressAI's own URLs and torch hub's cache (``$TORCH_HOME/hub/checkpoints``); a
    file already there is used as is. Offline, it fails at once with the URL, the path to
    put the file at by hand, and the ``--checkpoint PATH`` alternative.
    """
    from compressai.zoo import image, video

    zoo = {**image.model_urls, **video.model_urls}
    if zoo_name is None or zoo_name not in zoo:
        have = sorted(_ZOO_CODECS)
        raise CodecError(f"codec {codec_name!r} has no CompressAI zoo weights; --checkpoint zoo "
                         f"works for {have}")
    urls = zoo[zoo_name]["mse"]
    if quality not in urls:
        raise CodecError(f"the CompressAI zoo has {codec_name} at qualities {sorted(urls)}, not "
                         f"{quality}")
    url = urls[quality]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except Exception as err:  # noqa: BLE001 - offline, proxy, HTTP errors: one clear line
        cached.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise CodecError(f"could not download {url} ({reason}); put the file at {cached} by "
                         "hand, or pass --checkpoint PATH") from None
    finally:
        socket.setdefaulttimeout(previous)
    return cached


class _CompressAIAdapter(CodecAdapter):
    """Shared loading and entropy-model handling for CompressAI models."""

    model: nn.Module
    zoo_name: str | None = None  # CompressAI's zoo entry (``checkpoint="zoo"``), if any

    def _init_weights(self, checkpoint: str | Path | None) -> None:
        if checkpoint == "zoo":
            checkpoint = zoo_checkpoint(self.name, self.zoo_name, self.quality)
        if checkpoint is None:
            warnings.warn(
                f"codec {self.name!r} q{self.quality} has random weights (no checkpoint given): "
                "fine for training from scratch and tests, meaningless for evaluation",
                stacklevel=3,
            )
        else:
            load_weights_into(self.model, checkpoint, self.name)
        self.update()

    def update(self) -> None:
        """Rebuild the entropy coders' CDF tables from the current weights (after training)."""
        self.check_finite_weights()  # NaN tables or latents would hang the rANS coder
        self.model.update(force=True)

    def aux_loss(self) -> Tensor:
        """CompressAI's auxiliary loss, summed over the model's entropy bottlenecks."""
        loss = self.model.aux_loss()
        return sum(loss) if isinstance(loss, list) else loss

    def aux_parameter_names(self) -> set[str]:
        """The entropy bottlenecks' ``quantiles`` (CompressAI trains them by ``aux_loss``)."""
        return {name for name, _ in self.named_parameters() if name.endswith("quantiles")}


# --- image auto-encoders ---------------------------------------------------------------
class _HyperpriorImageCodec(_CompressAIAdapter):
    """Ballé-style hyperprior auto-encoders (CompressAI ``ScaleHyperprior`` family)."""

    qualities = tuple(range(1, 9))
    pad_multiple = 64
    latent_stride = 16
    is_video = False
    architecture: type[nn.Module]
    uses_means: bool

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        channels_n, channels_m = image_cfgs[self.name][quality]
        self.model = self.architecture(channels_n, channels_m)
        self.latent_channels = channels_m
        self._init_weights(checkpoint)

    def _hyper_params(self, z_hat: Tensor) -> tuple[Tensor, Tensor | None]:
        params = self.model.h_s(z_hat)
        if self.uses_means:
            scales_hat, means_hat = params.chunk(2, 1)
            return scales_hat, means_hat
        return params, None

    def _hyper_input(self, y: Tensor) -> Tensor:
        return y if self.uses_means else torch.abs(y)

    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        model = self.model
        y = model.g_a(frame)
        z_hat, z_likelihoods = model.entropy_bottleneck(model.h_a(self._hyper_input(y)))
        scales_hat, means_hat = self._hyper_params(z_hat)
        y_hat, y_likelihoods = model.gaussian_conditional(y, scales_hat, means=means_hat)
        decoded = model.g_s(y_hat).clamp(0, 1)
        return CodecOutput(decoded, y_hat, {"y": y_likelihoods, "z": z_likelihoods}, None)

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        model = self.model
        y = model.g_a(frame)
        z = model.h_a(self._hyper_input(y))
        self.check_finite_latent(y, "latent")
        self.check_finite_latent(z, "hyper-latent")
        z_strings = model.entropy_bottleneck.compress(z)
        z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        scales_hat, means_hat = self._hyper_params(z_hat)
        indexes = model.gaussian_conditional.build_indexes(scales_hat)
        y_strings = model.gaussian_conditional.compress(y, indexes, means=means_hat)
        data = pack_strings([y_strings[0], z_strings[0]])
        # What the decoder reconstructs, computed the decoder's way.
        return data, self._decompress_padded(data, tuple(frame.shape[-2:]), None)

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int], state: Any) -> CodecOutput:
        model = self.model
        y_string, z_string = unpack_strings(data, 2)
        z_shape = (padded_hw[0] // 64, padded_hw[1] // 64)
        z_hat = model.entropy_bottleneck.decompress([z_string], z_shape)
        scales_hat, means_hat = self._hyper_params(z_hat)
        indexes = model.gaussian_conditional.build_indexes(scales_hat)
        y_hat = model.gaussian_conditional.decompress([y_string], indexes, z_hat.dtype, means_hat)
        decoded = model.g_s(y_hat).clamp(0, 1)
        return CodecOutput(decoded, y_hat, None, None)


@register_codec("bmshj2018-hyperprior")
class Bmshj2018Hyperprior(_HyperpriorImageCodec):
    """Ballé et al., "Variational image compression with a scale hyperprior", ICLR 2018."""

    architecture = ScaleHyperprior
    uses_means = False
    zoo_name = "bmshj2018-hyperprior"


@register_codec("mbt2018-mean")
class Mbt2018Mean(_HyperpriorImageCodec):
    """Minnen et al., "Joint autoregressive and hierarchical priors", NeurIPS 2018 (mean-scale, no context model)."""

    architecture = MeanScaleHyperprior
    uses_means = True
    zoo_name = "mbt2018-mean"


# --- ScaleSpaceFlow ----------------------------------------------------------------------
@register_codec("ssf")
class SSF(_CompressAIAdapter):
    """Agustsson et al., "Scale-space flow for end-to-end optimized video compression", CVPR 2020.

    ::

        I-frame:  x ──img_encoder──▶ y ──hyperprior──▶ y_hat ──img_decoder──▶ x_hat
        P-frame:  (x, ref) ──motion_encoder──▶ m_hat ──motion_decoder──▶ flow ─warp(ref)─▶ pred
                  x - pred ──res_encoder──▶ r_hat;  pred + res_decoder(cat(r_hat, m_hat)) = x_hat

    The reference state is the previous reconstruction (unclamped, as CompressAI).
    """

    qualities = tuple(range(1, 10))
    zoo_name = "ssf2020"
    pad_multiple = 128
    latent_channels = 384
    latent_stride = 16
    hyper_stride = 128  # the hyper-latent z is at 1/128 of the padded frame
    is_video = True

    def __init__(self, quality: int, checkpoint: str | Path | None = None):
        super().__init__(quality)
        # SSF's architecture is the same at every quality; only the weights differ.
        self.model = ScaleSpaceFlow()
        self._init_weights(checkpoint)

    @staticmethod
    def _latent(main_hat: Tensor, motion_hat: Tensor | None) -> Tensor:
        if motion_hat is None:
            motion_hat = torch.zeros_like(main_hat)
        return torch.cat([main_hat, motion_hat], dim=1)

    def _forward_padded(self, frame: Tensor, state: Any) -> CodecOutput:
        model = self.model
        if state is None:
            y_hat, likelihoods = model.img_hyperprior(model.img_encoder(frame))
            reconstruction = model.img_decoder(y_hat)
            latent = self._latent(y_hat, None)
            likelihoods = {f"keyframe_{k}": v for k, v in likelihoods.items()}
        else:
            reference = state
            y_motion = model.motion_encoder(torch.cat([frame, reference], dim=1))
            motion_hat, motion_likelihoods = model.motion_hyperprior(y_motion)
            prediction = model.forward_prediction(reference, model.motion_decoder(motion_hat))
            residual_hat, residual_likelihoods = model.res_hyperprior(
                model.res_encoder(frame - prediction)
            )
            reconstruction = prediction + model.res_decoder(torch.cat([residual_hat, motion_hat], 1))
            latent = self._latent(residual_hat, motion_hat)
            likelihoods = {f"motion_{k}": v for k, v in motion_likelihoods.items()}
            likelihoods |= {f"residual_{k}": v for k, v in residual_likelihoods.items()}
        return CodecOutput(reconstruction.clamp(0, 1), latent, likelihoods, reconstruction)

    def _compress_padded(self, frame: Tensor, state: Any) -> tuple[bytes, CodecOutput]:
        model = self.model
        check = self.check_finite_latent  # before each entropy coder
        if state is None:
            y = model.img_encoder(frame)
            check(y, "intra latent")
            _, out = model.img_hyperprior.compress(y)
            strings = out["strings"]
        else:
            reference = state
            y_motion = model.motion_encoder(torch.cat([frame, reference], dim=1))
            check(y_motion, "motion latent")
            motion_hat, motion_out = model.motion_hyperprior.compress(y_motion)
            prediction = model.forward_prediction(reference, model.motion_decoder(motion_hat))
            y_residual = model.res_encoder(frame - prediction)
            check(y_residual, "residual latent")
            _, residual_out = model.res_hyperprior.compress(y_residual)
            strings = motion_out["strings"] + residual_out["strings"]
        data = pack_strings([s[0] for s in strings])
        return data, self._decompress_padded(data, tuple(frame.shape[-2:]), state)

    def _decompress_padded(self, data: bytes, padded_hw: tuple[int, int], state: Any) -> CodecOutput:
        model = self.model
        z_shape = torch.Size((padded_hw[0] // self.hyper_stride, padded_hw[1] // self.hyper_stride))
        if state is None:
            y_string, z_string = unpack_strings(data, 2)
            y_hat = model.img_hyperprior.decompress([[y_string], [z_string]], z_shape)
            reconstruction = model.img_decoder(y_hat)
            latent = self._latent(y_hat, None)
        else:
            reference = state
            motion_y, motion_z, residual_y, residual_z = unpack_strings(data, 4)
            motion_hat = model.motion_hyperprior.decompress([[motion_y], [motion_z]], z_shape)
            prediction = model.forward_prediction(reference, model.motion_decoder(motion_hat))
            residual_hat = model.res_hyperprior.decompress([[residual_y], [residual_z]], z_shape)
            reconstruction = prediction + model.res_decoder(torch.cat([residual_hat, motion_hat], 1))
            latent = self._latent(residual_hat, motion_hat)
        return CodecOutput(reconstruction.clamp(0, 1), latent, None, reconstruction)


_ZOO_CODECS = {"ssf": "ssf2020", "bmshj2018-hyperprior": "bmshj2018-hyperprior",
               "mbt2018-mean": "mbt2018-mean"}

__all__ = ["SSF", "Bmshj2018Hyperprior", "Mbt2018Mean", "load_state_dict_file"]
