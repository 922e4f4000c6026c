"""Searching an index: query -> vector -> FAISS -> hits with their provenance."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from loupe.indexer.encoders import Encoder, encoder_from_spec
from loupe.indexer.errors import LoupeError
from loupe.search.ann import VectorIndex, load_index
from loupe.search.explain.duplicates import check_threshold, drop_near_duplicates
from loupe.search.explain.tags import ids_with_tags
from loupe.search.query import Term, modalities, parse_query, query_vector
from loupe.search.store import Store
from loupe.search.thumbs import item_row


@dataclass
class Moment:
    """One matching moment of a video or sound file."""

    id: str
    timestamp: float
    score: float
    kind: str  # "frame" or "audio"
    end: float | None = None


@dataclass
class Hit:
    """One search result: a photo, or a video / sound file with its best moments
    (or, ungrouped, one frame or sound window)."""

    id: str
    path: str
    kind: str
    score: float
    timestamp: float | None = None  # the best moment, for video frames and sound windows
    end: float | None = None  # sound windows: end of the window's audio
    moments: list[Moment] = field(default_factory=list)  # best first (grouped results)

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


@dataclass
class SearchResult:
    """A search's hits and how it went."""

    hits: list[Hit]
    column: str  # the vector column that answered
    seconds: float  # the search itself (the model and the index were loaded before)
    load_seconds: float  # loading the model and the index for it (0 once loaded)
    hidden: int = 0  # near-duplicate hits left out


class Searcher:
    """Searches one store with the encoders that built it.

    Each query is answered from the vector column of a model that embeds all of its
    terms (text, images, sounds): the one asked for, else the first such model of the
    index. FAISS indexes are reloaded whenever the store has moved on (another process
    indexed meanwhile), so results never include rows the store no longer has.
    """

    def __init__(self, store: Store, encoder: Encoder | None = None, device: str = "auto"):
        self.store = store
        self._requested = encoder
        self._device = device
        self._encoders: dict[str, Encoder] = {}
        self._indexes: dict[str, VectorIndex] = {}
        # The default column: validates a requested encoder at once.
        self.column, self.spec = store.meta.query_column(encoder.spec if encoder else None)
        if encoder is not None:
            self._encoders[self.column] = encoder
        self.last_query_seconds = 0.0
        self.last_hidden = 0  # near-duplicate hits hidden by the last search (dedupe)

    def column_for(self, needs: set[str]) -> str:
        """The vector column that answers a query needing these modalities."""
        spec = self._requested.spec if self._requested else None
        return self.store.meta.query_column(spec, needs)[0]

    def encoder_of(self, column: str | None = None) -> Encoder:
        """The encoder of a column (loaded on first use)."""
        column = column or self.column
        if column not in self._encoders:
            spec = self.store.meta.encoders[column]
            self._encoders[column] = encoder_from_spec(spec, self._device)
        return self._encoders[column]

    def index_of(self, column: str | None = None) -> VectorIndex:
        """The FAISS index of a column, fresh with respect to the store."""
        column = column or self.column
        idx = self._indexes.get(column)
        if idx is None or idx.info.version != self.store.version():
            idx = self._indexes[column] = load_index(self.store, column, previous=idx)
        return idx

    @property
    def encoder(self) -> Encoder:
        """The default column's encoder."""
        return self.encoder_of()

    @property
    def index(self) -> VectorIndex:
        """The default column's index."""
        return self.index_of()

    def _raw(self, index: VectorIndex, vector: np.ndarray, k: int,
             mask: np.ndarray | None) -> tuple[list[Hit], dict[str, int]]:
        """Ungrouped hits, and the index position of each hit's id."""
        scores, pos = index.search(vector[None, :], k, mask)
        hits, where, cat = [], {}, index.catalog
        for s, p in zip(scores[0], pos[0], strict=True):
            if p < 0:
                continue
            ts, end = cat.timestamps[p], cat.ends[p]
            hits.append(Hit(str(cat.ids[p]), str(cat.paths[p]), str(cat.kinds[p]),
                            float(s), None if np.isnan(ts) else float(ts),
                            None if np.isnan(end) else float(end)))
            where[hits[-1].id] = int(p)
        return hits, where

    def search_vector(self, vector: np.ndarray, k: int = 10, kind: str | None = None,
                      folder: str | None = None, column: str | None = None,
                      group: bool = True, moments: int = 3, since: float | None = None,
                      until: float | None = None, dedupe: float | None = None,
                      tags: Sequence[str] = ()) -> list[Hit]:
        """Top-k hits for a unit query vector, with optional kind/folder/date filters
        (``since``/``until``: file modification time, seconds since the epoch) and
        ``tags``: only items whose stored zero-shot tags include every one of them.

        ``group``: a video or sound file appears once, at the rank of its best moment,
        with up to ``moments`` best moments; otherwise every frame / window is a hit.
        ``dedupe``: hide a hit whose vector (a grouped file's: its best moment's) has
        cosine >= ``dedupe`` with a better-ranked hit's, identical copies included; k
        hits are still returned when the index has them, and ``last_hidden`` says how
        many were hidden.
        """
        self.last_hidden = 0
        if dedupe is not None:
            check_threshold(dedupe)
        index = self.index_of(column)
        mask = index.catalog.mask(kind=kind, folder=folder, since=since, until=until)
        if tags:
            tagged = np.isin(index.catalog.ids, list(ids_with_tags(self.store, tags)))
            mask = tagged if mask is None else (mask & tagged)
        if mask is not None and not mask.any():
            return []
        if not group and dedupe is None:
            return self._raw(index, vector, k, mask)[0]
        n = len(index)
        fetch = k * 4 + 32
        while True:
            raw, where = self._raw(index, vector, min(fetch, n), mask)
            hits = _group(raw, moments) if group else raw
            hits, hidden = (_dedupe(index, hits, where, dedupe, k) if dedupe is not None
                            else (hits, 0))
            if len(hits) >= k or len(raw) < min(fetch, n) or fetch >= n:
                self.last_hidden = hidden
                return hits[:k]
            fetch *= 4

    def search(self, query: Sequence[str] | Sequence[Term], k: int = 10,
               kind: str | None = None, folder: str | None = None,
               group: bool = True, since: float | None = None,
               until: float | None = None, dedupe: float | None = None,
               tags: Sequence[str] = ()) -> list[Hit]:
        """Search with CLI-style tokens (``["dog", "+", "beach.jpg"]``) or parsed terms;
        ``dedupe`` and ``tags`` as in :meth:`search_vector`."""
        t0 = time.perf_counter()
        terms = list(query)
        if terms and not isinstance(terms[0], Term):
            terms = parse_query(terms)  # type: ignore[arg-type]
        column = self.column_for(modalities(terms))  # type: ignore[arg-type]
        vec = query_vector(terms, self.encoder_of(column))  # type: ignore[arg-type]
        hits = self.search_vector(vec, k=k, kind=kind, folder=folder, column=column,
                                  group=group, since=since, until=until, dedupe=dedupe,
                                  tags=tags)
        self.last_query_seconds = time.perf_counter() - t0
        return hits

    def query(self, terms: Sequence[Term], k: int = 10, kind: str | None = None,
              folder: str | None = None, group: bool = True, column: str | None = None,
              since: float | None = None, until: float | None = None,
              dedupe: float | None = None, tags: Sequence[str] = ()) -> SearchResult:
        """Search parsed terms like ``loupe search`` does: with the first model that
        embeds every term (or ``column``'s, checked against the terms), the model and
        index loaded outside the timing."""
        if not terms:
            raise LoupeError("empty query: give words, a picture, a sound, or a mix")
        if k < 1:
            raise LoupeError("ask for at least one result")
        needs = modalities(terms)
        if column is None:
            column = self.column_for(needs)
        else:
            known = self.store.meta.encoders
            if column not in known:
                raise LoupeError("that model is not in this index any more: reload the page")
            column = self.store.meta.query_column(known[column], needs)[0]
        t0 = time.perf_counter()
        encoder = self.encoder_of(column)
        self.index_of(column)
        t1 = time.perf_counter()
        vec = query_vector(terms, encoder)
        hits = self.search_vector(vec, k=k, kind=kind, folder=folder, column=column,
                                  group=group, since=since, until=until, dedupe=dedupe,
                                  tags=tags)
        return SearchResult(hits, column, time.perf_counter() - t1, t1 - t0, self.last_hidden)

    def more_like(self, item_id: str, k: int = 10, kind: str | None = None,
                  folder: str | None = None, group: bool = True,
                  column: str | None = None) -> SearchResult:
        """Items like a stored one, searched with its own stored vector (itself left
        out): in ``column`` when it has a vector there, else in the first column that
        does."""
        store = self.store
        row = item_row(store, item_id)  # refuses what is not an item of this index
        columns = [c for c in ([column] if column else []) + list(store.meta.encoders) if c]
        for col in dict.fromkeys(columns):
            vec = store.get_items([item_id], ["id", col]).get(item_id, {}).get(col)
            if vec is None:
                continue
            t0 = time.perf_counter()
            self.index_of(col)
            t1 = time.perf_counter()
            v = np.asarray(vec, dtype=np.float32)
            norm = float(np.linalg.norm(v))
            if not norm:
                break
            hits = self.search_vector(v / norm, k=k + 1, kind=kind, folder=folder,
                                      column=col, group=group)
            hits = [h for h in hits if h.id != item_id][:k]
            return SearchResult(hits, col, time.perf_counter() - t1, t1 - t0)
        raise LoupeError(f"{os.path.basename(row['path'])} has no vector to compare with yet "
                         "(re-index to compute it)")

def _dedupe(index: VectorIndex, hits: list[Hit], where: dict[str, int], threshold: float,
            k: int) -> tuple[list[Hit], int]:
    """(the first k hits that are not near duplicates of better ones, how many were
    hidden before the last of them)."""
    kept = drop_near_duplicates(index.vectors([where[h.id] for h in hits]), threshold, limit=k)
    shown = [hits[i] for i in kept]
    seen = kept[-1] + 1 if len(kept) >= k else len(hits)
    return shown, seen - len(kept)


def _group(raw: list[Hit], moments: int) -> list[Hit]:
    """Collapse frames and sound windows of one file into one hit (ranked by its best)."""
    out: list[Hit] = []
    by_path: dict[str, Hit] = {}
    for h in raw:
        if h.timestamp is None:
            out.append(h)
            continue
        g = by_path.get(h.path)
        if g is None:
            g = by_path[h.path] = Hit(h.id, h.path, h.kind, h.score, h.timestamp, h.end)
            out.append(g)
        if len(g.moments) < moments:
            g.moments.append(Moment(h.id, h.timestamp, h.score, h.kind, h.end))
    return out
