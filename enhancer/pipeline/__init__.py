"""Enhancer = CodecAdapter + ResidualDiffusion, rolled out over a sequence (:class:`Rollout`)."""

from enhancer.diffusion import Sampling
from enhancer.pipeline.checkpoint import load_enhancer, read_checkpoint, save_enhancer
from enhancer.pipeline.enhancer import EnhancedFrame, Enhancer, build_diffusion
from enhancer.pipeline.rollout import Rollout

__all__ = ["EnhancedFrame", "Enhancer", "Rollout", "Sampling", "build_diffusion", "load_enhancer",
           "read_checkpoint", "save_enhancer"]
