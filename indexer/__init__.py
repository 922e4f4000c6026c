"""Loupe's indexer: scan -> decode -> embed -> write.

The stages live in sub-packages: ``scan`` (walk the roots), ``media`` (bytes to pixels,
frames and sound windows), ``decode`` (worker processes), ``encoders`` (the Encoder
seam and its backends) and ``pipeline`` (the run: diff, embed, write).

The public names below are loaded on first use, so that a decode worker importing
``loupe.indexer.decode`` does not pull in the store (LanceDB) or the models.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoupeError": "loupe.indexer.errors",
    "ItemKind": "loupe.indexer.kinds",
    "MediaKind": "loupe.indexer.kinds",
    "Modality": "loupe.indexer.kinds",
    "SkipCode": "loupe.indexer.kinds",
    "AudioPreprocess": "loupe.indexer.encoders",
    "Backend": "loupe.indexer.encoders",
    "Encoder": "loupe.indexer.encoders",
    "EncoderSet": "loupe.indexer.encoders",
    "EncoderSpec": "loupe.indexer.encoders",
    "ImagePreprocess": "loupe.indexer.encoders",
    "LazyEncoder": "loupe.indexer.encoders",
    "encoder_from_spec": "loupe.indexer.encoders",
    "licence": "loupe.indexer.encoders",
    "load_encoder": "loupe.indexer.encoders",
    "register_backend": "loupe.indexer.encoders",
    "same_source": "loupe.indexer.encoders",
    "IndexOptions": "loupe.indexer.pipeline",
    "IndexReport": "loupe.indexer.pipeline",
    "index_paths": "loupe.indexer.pipeline",
    "scan": "loupe.indexer.scan",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loupe.indexer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
