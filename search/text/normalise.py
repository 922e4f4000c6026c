"""How text read in pictures and text asked for are made comparable.

``normalise``: case folded, accents stripped ("Café" -> "cafe"), every run of anything
that is not a letter or a digit one space. ``squash``: the same without spaces, which is
what is matched: OCR often drops the spaces between words ("Region-basedsegmentation")
and a word hyphenated across two lines ("Lis-" / "boa") joins up again.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower case, no accents, words separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", bare.casefold()).strip()


def squash(text: str) -> str:
    """:func:`normalise` without the spaces."""
    return normalise(text).replace(" ", "")


def allowed_edits(length: int) -> int:
    """Letters that may differ (substituted, missing or extra) between a query of this
    many letters and the text it matches: 0 up to 5, 1 up to 11, then 2.

    Bounded so that the query can be cut into ``edits + 1`` pieces of at least 3
    letters, one of which must then appear exactly (what the trigram index finds).
    """
    if length < 6:
        return 0
    return 1 if length < 12 else 2


def pieces(squashed: str, edits: int) -> list[str]:
    """``squashed`` cut into ``edits + 1`` near-equal pieces: with at most ``edits``
    edits, at least one piece is left intact (the pigeonhole principle)."""
    n = edits + 1
    size, extra = divmod(len(squashed), n)
    out, at = [], 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        out.append(squashed[at:at + step])
        at += step
    return out
