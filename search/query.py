"""Query arithmetic: ``"dog" + ./beach.jpg - "people"``, ``"2:dog"`` weights.

A query is a list of terms, each a weight and a text, an image file or a sound file.
Its vector is the normalised weighted sum of the terms' unit vectors (rclip's syntax).
What one query may cost is bounded (:class:`QueryLimits`), whoever asks: the CLI, the
UI, a caller of the library. Reading the tokens (:func:`parse_query`) lives in
:mod:`loupe.search.query_parse`, without numpy; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loupe.indexer.encoders.base import Encoder, l2_normalise
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import Modality
from loupe.indexer.media.image import QUERY_FORMATS, ImageDecodeError, decode_image_file
from loupe.search.query_parse import QueryLimits, Term, check_limits, modalities, parse_query

__all__ = ["EMBED_BATCH", "QueryLimits", "Term", "check_limits", "modalities", "parse_query",
           "query_vector"]

EMBED_BATCH = 32  # texts or pictures per model call


def query_vector(terms: Sequence[Term], encoder: Encoder,
                 limits: QueryLimits | None = None) -> np.ndarray:
    """The unit vector of a parsed query, within ``limits`` (LoupeError when over):
    texts and pictures are embedded ``EMBED_BATCH`` at a time, a sound's windows in
    batches too (:meth:`Encoder.embed_sounds`)."""
    from loupe.indexer.media.audio import AudioDecodeError

    limits = limits or QueryLimits()
    check_limits(terms, limits)

    # The same term twice is one term with the summed weight: "cat - cat" cancels exactly
    # (two rows of one batch need not embed to bitwise-equal vectors).
    merged: dict[tuple[str, str], float] = {}
    for t in terms:
        merged[(t.kind, t.value)] = merged.get((t.kind, t.value), 0.0) + t.weight
    if not any(merged.values()):
        raise LoupeError("the query's terms cancel out: nothing to search for")
    kept = [Term(w, kind, value) for (kind, value), w in merged.items() if w]
    texts = [t for t in kept if t.kind == Modality.TEXT]
    images = [t for t in kept if t.kind == Modality.IMAGE]
    sounds = [t for t in kept if t.kind == Modality.AUDIO]
    total = np.zeros(encoder.dim, np.float64)
    for i in range(0, len(texts), EMBED_BATCH):
        part = texts[i:i + EMBED_BATCH]
        vecs = encoder.embed_texts([t.value for t in part])
        for t, v in zip(part, vecs, strict=True):
            total += t.weight * v
    for i in range(0, len(images), EMBED_BATCH):
        part, pixels = images[i:i + EMBED_BATCH], []
        for t in part:
            try:
                pixels.append(decode_image_file(t.value, encoder.preprocess,
                                                max_pixels=limits.pixels,
                                                formats=QUERY_FORMATS).pixels)
            except (ImageDecodeError, OSError) as e:
                raise LoupeError(f"cannot use {t.value} as a query image: {e}") from e
        vecs = encoder.embed_pixels(np.stack(pixels))
        for t, v in zip(part, vecs, strict=True):
            total += t.weight * v
    for t in sounds:
        try:
            total += t.weight * encoder.embed_sounds([t.value], limits.sound_seconds)[0]
        except AudioDecodeError as e:
            raise LoupeError(f"cannot use {t.value} as a query sound: {e}") from e
    if not np.any(total):
        raise LoupeError("the query's terms cancel out: nothing to search for")
    return l2_normalise(total[None, :])[0]
