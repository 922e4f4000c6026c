"""Encoders: the one seam between pixels, texts and sounds and vectors.

``load_encoder`` builds a backend from what the CLI was given, ``encoder_from_spec``
from the spec an index recorded (so queries always use the encoder that built the
vectors); both go through the registry (:mod:`loupe.indexer.encoders.registry`).
"""

from loupe.indexer.encoders.base import Encoder, l2_normalise
from loupe.indexer.encoders.registry import (
    Backend,
    EncoderSet,
    LazyEncoder,
    backends,
    encoder_from_spec,
    licence,
    load_encoder,
    register_backend,
    same_source,
)
from loupe.indexer.encoders.spec import AudioPreprocess, EncoderSpec, ImagePreprocess

__all__ = [
    "AudioPreprocess",
    "Backend",
    "Encoder",
    "EncoderSet",
    "EncoderSpec",
    "ImagePreprocess",
    "LazyEncoder",
    "backends",
    "encoder_from_spec",
    "l2_normalise",
    "licence",
    "load_encoder",
    "register_backend",
    "same_source",
]
