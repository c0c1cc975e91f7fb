"""Networks only (no loss, no sampling): the temporal, latent-conditioned U-Net."""

from enhancer.models.unet import (
    PRESETS,
    ResidualUNet,
    UNetConfig,
    align_latent,
    build_unet,
    count_parameters,
)

__all__ = [
    "PRESETS",
    "ResidualUNet",
    "UNetConfig",
    "align_latent",
    "build_unet",
    "count_parameters",
]
