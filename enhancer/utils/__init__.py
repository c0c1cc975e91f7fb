"""Helpers below every layer (codecs, metrics, pipeline, training, evaluation): they
import nothing from ``enhancer`` themselves, so any module can use them without a loop.

``weights``: how a loaded state dict fails to fit a model, why ``torch.load`` failed;
``rate``: bits per pixel from byte counts.
"""
