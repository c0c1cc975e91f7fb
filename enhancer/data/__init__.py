"""Video and image I/O, colour conversion, padding and training datasets.

Entry points: :func:`open_sequence` / :func:`open_writer` for every video format,
:mod:`enhancer.data.color` for BT.709/BT.601 YCbCr <-> RGB (DCVC's convention), and the
datasets in :mod:`enhancer.data.datasets`.
"""

from enhancer.data.color import (
    planes_to_rgb,
    planes_to_tensors,
    rgb_to_planes,
    rgb_to_yuv420,
    rgb_to_yuv444,
    tensors_to_planes,
    yuv420_to_rgb,
    yuv444_to_rgb,
)
from enhancer.data.padding import centre_crop, crop, pad_to_multiple, padded_size

# Readers, writers and datasets import PyAV and Pillow: load them on first use, so that
# the networks (which only pad and crop) import without them.
_LAZY = {
    "ImageFolderDataset": "enhancer.data.datasets",
    "VideoClipDataset": "enhancer.data.datasets",
    "Vimeo90kSeptuplet": "enhancer.data.datasets",
    "read_image": "enhancer.data.images",
    "write_image": "enhancer.data.images",
    "SequenceInfo": "enhancer.data.reader",
    "VideoReader": "enhancer.data.sequence",
    "VideoWriter": "enhancer.data.sequence",
    "open_sequence": "enhancer.data.sequence",
    "open_writer": "enhancer.data.sequence",
    "parse_yuv_name": "enhancer.data.yuv",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'enhancer.data' has no attribute {name!r}")


__all__ = [
    "ImageFolderDataset",
    "SequenceInfo",
    "VideoClipDataset",
    "VideoReader",
    "VideoWriter",
    "Vimeo90kSeptuplet",
    "centre_crop",
    "crop",
    "open_sequence",
    "open_writer",
    "pad_to_multiple",
    "padded_size",
    "parse_yuv_name",
    "planes_to_rgb",
    "planes_to_tensors",
    "read_image",
    "rgb_to_planes",
    "rgb_to_yuv420",
    "rgb_to_yuv444",
    "tensors_to_planes",
    "write_image",
    "yuv420_to_rgb",
    "yuv444_to_rgb",
]
