"""Reading a query's tokens: ``"dog" + ./beach.jpg - "people"``, ``"2:dog"`` weights.

The pure-Python half of :mod:`loupe.search.query` (which embeds the terms): no numpy, no
model, so that ``loupe search`` can tell files from words, and refuse a bad query, before
it knows whether a running server will answer it (see :mod:`loupe.search.client`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import MediaKind, Modality
from loupe.indexer.media.sniff import AUDIO_EXTS, HEAD_BYTES, IMAGE_EXTS, kind_from_extension, sniff

_WEIGHT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)):(.+)$", re.S)
# The kind of an ``ocr:"words"`` term: pictures showing that text (loupe.search.text).
OCR = "ocr"
_PREFIXES = {"text:": Modality.TEXT, "image:": Modality.IMAGE, "audio:": Modality.AUDIO,
             "ocr:": OCR}
# loupe.indexer.media.image.QUERY_MAX_PIXELS, not imported from there (it pulls numpy
# and Pillow); tests/test_cli_server.py checks that the two agree.
QUERY_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class QueryLimits:
    """How much work one query may ask for.

    ``terms``: terms at most; ``text_chars``: characters of all its text terms together;
    ``pixels``: of a query picture, checked from its header before decoding (pictures
    are also read only as JPEG, PNG, WebP, GIF, TIFF or BMP); ``sound_seconds``: only
    the first seconds of a query sound are used. Functions given None use these defaults.
    """

    terms: int = 32
    text_chars: int = 1000
    pixels: int = QUERY_MAX_PIXELS
    sound_seconds: float = 60.0


@dataclass(frozen=True)
class Term:
    """One part of a query."""

    weight: float
    kind: str  # "text", "image", "audio", or "ocr" (text shown in the picture)
    value: str  # the text, or the image / sound file's path


def check_limits(terms: Sequence[Term], limits: QueryLimits) -> None:
    """LoupeError (one line) when parsed terms ask for more than ``limits`` allow."""
    if len(terms) > limits.terms:
        raise LoupeError(f"too many terms in the query: at most {limits.terms} are taken "
                         "(quote words that belong together)")
    if sum(len(t.value) for t in terms if t.kind in (Modality.TEXT, OCR)) > limits.text_chars:
        raise LoupeError(f"the query's words are too long: at most {limits.text_chars:,} "
                         "characters are taken")


def parse_query(
    tokens: Sequence[str], is_file: Callable[[str], bool] = os.path.isfile,
    limits: QueryLimits | None = None,
) -> list[Term]:
    """Parse CLI tokens into terms.

    ``+`` and ``-`` standing alone are operators; ``W:term`` gives a weight;
    ``text:...``, ``image:...`` and ``audio:...`` force a term's kind; ``ocr:...`` (or
    ``ocr:"two words"``) asks for pictures showing that text; otherwise a token
    naming an existing file is a sound if it is an audio file, else an image, and
    anything else is text. A query over ``limits`` is refused (LoupeError, one line)
    as soon as that shows, before the rest is read.
    """
    limits = limits or QueryLimits()
    terms: list[Term] = []
    sign = 1.0
    pending_op = False
    chars = 0
    for tok in tokens:
        if tok in ("+", "-"):
            sign = sign * (-1.0 if tok == "-" else 1.0)
            pending_op = True
            continue
        weight = 1.0
        m = _WEIGHT.match(tok)
        if m and not is_file(tok):
            weight, tok = float(m.group(1)), m.group(2)
        prefix = next((p for p in _PREFIXES if tok.startswith(p)), None)
        if prefix:
            kind, value = _PREFIXES[prefix], tok[len(prefix):]
            if kind == OCR:
                value = _unquoted(value)
                if weight != 1.0:
                    raise LoupeError(f"ocr:{value} takes no weight: it keeps the pictures "
                                     "showing the text (or, after -, leaves them out)")
        elif is_file(tok):
            kind, value = (Modality.AUDIO if _is_sound(tok) else Modality.IMAGE), tok
        else:
            kind, value = Modality.TEXT, tok
        if kind not in (Modality.TEXT, OCR) and not is_file(value):
            what = "sound" if kind == Modality.AUDIO else "image"
            raise LoupeError(f"query {what} not found: {value}")
        ext = os.path.splitext(value)[1].lower()
        if (kind == Modality.TEXT and not prefix and ext in IMAGE_EXTS | AUDIO_EXTS
                and " " not in value):
            what = "sound" if ext in AUDIO_EXTS else "image"
            raise LoupeError(
                f"query {what} not found: {value} (write text:{value} to search for it as words)"
            )
        if not value.strip():
            raise LoupeError("empty query term")
        terms.append(Term(sign * weight, kind, value))
        chars += len(value) if kind in (Modality.TEXT, OCR) else 0
        if len(terms) > limits.terms or chars > limits.text_chars:
            check_limits(terms, limits)
        sign, pending_op = 1.0, False
    if pending_op:
        raise LoupeError("query ends with an operator: add a term after + or -")
    if not terms:
        raise LoupeError("empty query: give words, an image file, or both")
    return terms


def _unquoted(value: str) -> str:
    """``"two words"`` (or '...') without its quotes."""
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        return v[1:-1]
    return v


def _is_sound(path: str) -> bool:
    """An audio file, by content (falls back to the extension when unreadable)."""
    try:
        with open(path, "rb") as f:
            kind = sniff(f.read(HEAD_BYTES))
    except OSError:
        kind = None
    return (kind or kind_from_extension(path)) == MediaKind.AUDIO


def modalities(terms: Sequence[Term]) -> set[str]:
    """What an encoder must embed to answer these terms (``ocr:`` terms need none)."""
    return {t.kind for t in terms if t.kind != OCR}
