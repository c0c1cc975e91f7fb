"""Enhancer = CodecAdapter + ResidualDiffusion, rolled out over a sequence."""

from enhancer.pipeline.enhancer import (
    EnhancedFrame,
    Enhancer,
    build_diffusion,
    load_enhancer,
    read_checkpoint,
    save_enhancer,
)

__all__ = ["EnhancedFrame", "Enhancer", "build_diffusion", "load_enhancer", "read_checkpoint", "save_enhancer"]
