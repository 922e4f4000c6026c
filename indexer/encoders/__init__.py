"""Encoders: the one seam between pixels, texts and sounds and vectors.

``load_encoder`` builds a backend from what the CLI was given, ``encoder_from_spec``
from the spec an index recorded (so queries always use the encoder that built the
vectors); both go through the registry (:mod:`loupe.indexer.encoders.registry`).
Loaded on first use: ``encoders.spec`` is plain data that the media decoders import,
and must not pull in the models with it.
"""

from loupe.indexer.lazy import exports

_EXPORTS = {
    "AudioPreprocess": "loupe.indexer.encoders.spec",
    "Backend": "loupe.indexer.encoders.registry",
    "DEFAULT_MODEL": "loupe.indexer.encoders.openclip",
    "DEFAULT_PRETRAINED": "loupe.indexer.encoders.openclip",
    "Encoder": "loupe.indexer.encoders.base",
    "EncoderSet": "loupe.indexer.encoders.registry",
    "EncoderSpec": "loupe.indexer.encoders.spec",
    "ImagePreprocess": "loupe.indexer.encoders.spec",
    "LazyEncoder": "loupe.indexer.encoders.registry",
    "backends": "loupe.indexer.encoders.registry",
    "encoder_from_spec": "loupe.indexer.encoders.registry",
    "l2_normalise": "loupe.indexer.encoders.base",
    "licence": "loupe.indexer.encoders.registry",
    "load_encoder": "loupe.indexer.encoders.registry",
    "register_backend": "loupe.indexer.encoders.registry",
    "same_source": "loupe.indexer.encoders.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
