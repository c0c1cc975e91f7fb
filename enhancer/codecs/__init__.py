"""Codec adapters behind one contract; see :mod:`enhancer.codecs.base`."""

from enhancer.codecs import conventional as _conventional  # noqa: F401  (registers)
from enhancer.codecs import dcvc as _dcvc  # noqa: F401  (registers)
from enhancer.codecs import dcvc_rt as _dcvc_rt  # noqa: F401  (registers)
from enhancer.codecs import dcvc_uf as _dcvc_uf  # noqa: F401  (registers)
from enhancer.codecs import dcvc_uf_chunks as _dcvc_uf_chunks  # noqa: F401  (registers)
from enhancer.codecs.registry import UNAVAILABLE_CODECS

try:  # CompressAI's codecs; a machine without CompressAI (a GPU box training x264 from a
    # data pack, enhancer.train.pack) still has every other codec.
    from enhancer.codecs import compressai_codecs as _compressai_codecs  # noqa: F401  (registers)
    from enhancer.codecs import ssf_small as _ssf_small  # noqa: F401  (registers)
except ModuleNotFoundError as _err:
    if _err.name is None or _err.name.split(".")[0] != "compressai":
        raise
    UNAVAILABLE_CODECS["bmshj2018-hyperprior, mbt2018-mean, ssf, ssf-small"] = (
        "CompressAI is not installed (pip install compressai)")

from enhancer.codecs.base import CodecAdapter, CodecError, CodecOutput, bpp_from_likelihoods
from enhancer.codecs.registry import available_codecs, codec_class, load_codec, register_codec
from enhancer.codecs.stream import CodecStream

__all__ = [
    "CodecAdapter",
    "CodecError",
    "CodecOutput",
    "CodecStream",
    "available_codecs",
    "bpp_from_likelihoods",
    "codec_class",
    "load_codec",
    "register_codec",
]
