"""``ocr:`` query terms: keep the pictures that show a text (``-ocr:``: drop them).

``loupe search 'ocr:"hotel lisboa"'`` ranks the pictures showing it by how well the text
matches (:class:`~loupe.search.text.index.TextMatch` scores); ``"a night street" +
ocr:bar`` keeps the pictures showing "bar" and ranks them by the other terms. Several
``ocr:`` terms must all be shown. A hit carries the lines that matched, with their boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from loupe.indexer.errors import LoupeError
from loupe.search.query_parse import OCR, Term
from loupe.search.store import Store
from loupe.search.text.index import TextMatch, items_matching
from loupe.search.text.table import require_ocr


def split_terms(terms: Sequence[Term]) -> tuple[list[Term], list[Term]]:
    """(terms a model embeds, ``ocr:`` terms)."""
    return ([t for t in terms if t.kind != OCR], [t for t in terms if t.kind == OCR])


@dataclass
class TextFilter:
    """What a query's ``ocr:`` terms ask for: per shown term, {item: its match}; the
    items showing an excluded text."""

    required: list[tuple[str, dict[str, TextMatch]]] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)

    def ids(self) -> set[str] | None:
        """The items showing every required text and no excluded one (None: no text is
        required, only excluded)."""
        if not self.required:
            return None
        keep = set(self.required[0][1])
        for _, found in self.required[1:]:
            keep &= set(found)
        return keep - self.excluded

    def mask(self, ids: np.ndarray, position) -> np.ndarray:
        """Boolean mask over a catalog's positions (``position``: id -> position)."""
        wanted = self.ids()
        if wanted is None:
            m = np.ones(len(ids), bool)
            drop = self.excluded
        else:
            m = np.zeros(len(ids), bool)
            drop = set()
            for i in wanted:
                p = position(i)
                if p is not None:
                    m[p] = True
        for i in drop:
            p = position(i)
            if p is not None:
                m[p] = False
        return m

    def score(self, item: str) -> float:
        """How well an item shows the required texts: the mean of their match scores."""
        if not self.required:
            return 0.0
        return float(np.mean([found[item].score for _, found in self.required]))

    def reading(self, item: str) -> str:
        """The reading an item's first required text was found in."""
        return self.required[0][1][item].reading

    def lines(self, items: Sequence[tuple[str, float | None]]) -> list[dict]:
        """The matched lines of these (item, timestamp) pairs: {text, score, box,
        timestamp, item, query}."""
        out = []
        for item, ts in items:
            for phrase, found in self.required:
                m = found.get(item)
                if m is None:
                    continue
                for line in m.matched_lines():
                    out.append({**line, "timestamp": ts, "item": item, "query": phrase})
        return out


def text_filter(store: Store, terms: Sequence[Term], fuzzy: bool = True) -> TextFilter:
    """The filter of a query's ``ocr:`` terms (LoupeError when the index reads no text)."""
    require_ocr(store)
    f = TextFilter()
    for t in terms:
        found = items_matching(store, t.value, fuzzy)
        if t.weight > 0:
            f.required.append((t.value, found))
        else:
            f.excluded |= set(found)
    return f


def check_text_terms(terms: Sequence[Term]) -> None:
    """LoupeError for ``ocr:`` terms given a weight: they keep or drop, they do not rank."""
    for t in terms:
        if t.kind == OCR and abs(t.weight) != 1.0:
            raise LoupeError(f"ocr:{t.value} takes no weight: it keeps the pictures showing "
                             "the text (or, after -, leaves them out)")
