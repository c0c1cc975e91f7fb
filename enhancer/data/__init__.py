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
from enhancer.data.datasets import ImageFolderDataset, VideoClipDataset, Vimeo90kSeptuplet
from enhancer.data.images import read_image, write_image
from enhancer.data.padding import crop, pad_to_multiple, padded_size
from enhancer.data.sequence import (
    SequenceInfo,
    VideoReader,
    VideoWriter,
    open_sequence,
    open_writer,
)
from enhancer.data.yuv import parse_yuv_name

__all__ = [
    "ImageFolderDataset",
    "SequenceInfo",
    "VideoClipDataset",
    "VideoReader",
    "VideoWriter",
    "Vimeo90kSeptuplet",
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
