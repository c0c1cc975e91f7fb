"""enhancer: latent-conditioned residual diffusion on top of learned video codecs."""

__version__ = "0.1.0"
