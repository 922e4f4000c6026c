"""Loupe's indexer: scan -> decode -> embed -> write.

Stages live in their own modules: ``scan`` (walk roots, classify by content),
``fingerprint`` (content hashes), ``image_decode`` (Pillow decode to model input),
``encoders`` (the Encoder seam and its backends) and ``pipeline`` (the run itself).
"""

from loupe.indexer.errors import LoupeError

__all__ = ["LoupeError"]
