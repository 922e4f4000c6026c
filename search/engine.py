"""Searching an index: query -> vector -> FAISS -> hits with their provenance."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from loupe.indexer.encoders import Encoder, encoder_from_spec
from loupe.indexer.errors import LoupeError
from loupe.search.ann import CATALOG_CAPTURE, CaptureFilter, VectorIndex, load_index
from loupe.search.explain.duplicates import check_threshold, drop_near_duplicates
from loupe.search.explain.tags import ids_with_tags
from loupe.search.query import (
    QueryLimits,
    Term,
    check_limits,
    modalities,
    parse_query,
    query_vector,
)
from loupe.search.store import Store
from loupe.search.text.search import TextFilter, check_text_terms, split_terms, text_filter
from loupe.search.thumbs import item_row

SORTS = ("relevance", "newest", "oldest")
# A search sorted by date keeps the hits scoring at least this share of the best hit's
# score (unless given min_score): the date order of the archive's relevant part, not of
# all of it. Scale-free across models and query kinds (a text query's best cosine is
# ~0.3 with CLIP, a picture's near 1).
RELATIVE_FLOOR = 0.8
DATE_SORT_POOL = 10_000  # best raw hits (photos, frames, windows) a date order draws from


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
    # what the camera knew (a video's hit: its file's); None where unknown
    taken_at: float | None = None  # UTC seconds, when the file says its zone
    taken_local: str | None = None  # the camera's wall clock, ISO 8601
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None  # metres
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    place: str | None = None  # nearest town: "Lisbon, Lisbon, PT"
    # found by text shown (ocr: terms): the lines that matched, {text, score (the OCR's
    # confidence), box (8 floats, full-size upright pixels), timestamp, item, query}
    text: list[dict] | None = None
    text_score: float | None = None  # how well the text matched, in (0, 1]

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


@dataclass
class EmbeddedQuery:
    """A query's terms as one unit vector (:meth:`Searcher.embed_query`), to search with
    (:meth:`Searcher.search_embedded`)."""

    vector: np.ndarray | None  # None: only ocr: terms (nothing to embed)
    column: str  # the vector column of the model that embedded it
    seconds: float  # embedding the terms, decoding their pictures and sounds included
    load_seconds: float  # loading the model (0 once loaded)
    texts: list[Term] = field(default_factory=list)  # its ocr: terms (text shown)


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
        self._loading = threading.Lock()  # a model loads once, whichever thread asks
        self.last_query_seconds = 0.0
        self.last_hidden = 0  # near-duplicate hits hidden by the last search (dedupe)

    def column_for(self, needs: set[str]) -> str:
        """The vector column that answers a query needing these modalities."""
        spec = self._requested.spec if self._requested else None
        return self.store.meta.query_column(spec, needs)[0]

    def encoder_of(self, column: str | None = None) -> Encoder:
        """The encoder of a column (loaded on first use)."""
        column = column or self.column
        with self._loading:
            if column not in self._encoders:
                spec = self.store.meta.encoders[column]
                self._encoders[column] = encoder_from_spec(spec, self._device)
            return self._encoders[column]

    def index_of(self, column: str | None = None) -> VectorIndex:
        """The FAISS index of a column, fresh with respect to the store (its rows, and
        captures written into them since)."""
        column = column or self.column
        idx = self._indexes.get(column)
        if idx is None or idx.info.version != self.store.version() or (
                idx.info.capture_rev != self.store.capture_rev()):
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
                      tags: Sequence[str] = (), capture: CaptureFilter | None = None,
                      sort: str = "relevance", min_score: float | None = None,
                      texts: TextFilter | None = None) -> list[Hit]:
        """Top-k hits for a unit query vector, with optional kind/folder/date filters
        (``since``/``until``: file modification time, seconds since the epoch) and
        ``tags``: only items whose stored zero-shot tags include every one of them.
        ``capture``: only items whose camera knew so (taken between two dates, near a
        place, camera, lens: :class:`~loupe.search.ann.CaptureFilter`).

        ``sort``: "relevance" (best first), or "newest" / "oldest" by date taken (see
        ``CaptureFilter``; with its ``or_modified``, the mtime where there is none),
        items without a date last, ties by score then id; a date order is drawn from
        the hits scoring at least ``min_score`` (default for a date order:
        ``RELATIVE_FLOOR`` times the best hit's score), at most ``DATE_SORT_POOL`` of
        them. ``min_score`` (a cosine) also cuts a relevance order.

        ``group``: a video or sound file appears once, at the rank of its best moment,
        with up to ``moments`` best moments; otherwise every frame / window is a hit.
        ``dedupe``: hide a hit whose vector (a grouped file's: its best moment's) has
        cosine >= ``dedupe`` with a better-ranked hit's, identical copies included; k
        hits are still returned when the index has them, and ``last_hidden`` says how
        many were hidden.

        ``texts``: only the items showing the texts of a query's ``ocr:`` terms
        (:func:`~loupe.search.text.search.text_filter`); each hit then carries the lines
        that matched.
        """
        self.last_hidden = 0
        index = self.index_of(column)
        mask = self._mask(index, kind, folder, since, until, dedupe, tags, capture, sort,
                          texts)
        if mask is not None and not mask.any():
            return []
        if sort != "relevance":
            hits, where = self._by_date(index, vector, mask, group, moments,
                                        sort == "newest", min_score,
                                        capture is not None and capture.or_modified)
            if dedupe is not None:
                hits, self.last_hidden = _dedupe(index, hits, where, dedupe, k)
            return _with_text(_described(index, hits[:k], where), texts)
        if not group and dedupe is None:
            hits, where = self._raw(index, vector, k, mask)
            return _with_text(_described(index, _above(hits, min_score), where), texts)
        n = len(index)
        fetch = k * 4 + 32
        while True:
            raw, where = self._raw(index, vector, min(fetch, n), mask)
            hits = _group(raw, moments) if group else raw
            hits, hidden = (_dedupe(index, hits, where, dedupe, k) if dedupe is not None
                            else (hits, 0))
            if len(hits) >= k or len(raw) < min(fetch, n) or fetch >= n:
                self.last_hidden = hidden
                return _with_text(_described(index, _above(hits[:k], min_score), where),
                                  texts)
            fetch *= 4

    def _mask(self, index: VectorIndex, kind: str | None, folder: str | None,
              since: float | None, until: float | None, dedupe: float | None,
              tags: Sequence[str], capture: CaptureFilter | None, sort: str,
              texts: TextFilter | None) -> np.ndarray | None:
        """The positions passing a search's filters (None: all), its settings checked."""
        if dedupe is not None:
            check_threshold(dedupe)
        if sort not in SORTS:
            raise LoupeError(f"sort by {' / '.join(SORTS)}, not {sort!r}")
        cat = index.catalog
        mask = cat.mask(kind=kind, folder=folder, since=since, until=until, capture=capture)
        if tags:
            tagged = np.isin(cat.ids, list(ids_with_tags(self.store, tags)))
            mask = tagged if mask is None else (mask & tagged)
        if texts is not None:
            shown = texts.mask(cat.ids, cat.position)
            mask = shown if mask is None else (mask & shown)
        return mask

    def search_text(self, texts: TextFilter, k: int = 10, kind: str | None = None,
                    folder: str | None = None, column: str | None = None,
                    group: bool = True, moments: int = 3, since: float | None = None,
                    until: float | None = None, dedupe: float | None = None,
                    tags: Sequence[str] = (), capture: CaptureFilter | None = None,
                    sort: str = "relevance", min_score: float | None = None) -> list[Hit]:
        """Top-k pictures showing the texts of ``ocr:`` terms alone (no model needed),
        ranked by how well the text matches (``Hit.score`` is the text's score); the
        filters, ``sort`` and ``min_score`` as in :meth:`search_vector`. A video is one
        hit whose moments are the times the text is on screen (frames sharing one
        reading are one moment: its first frame)."""
        self.last_hidden = 0
        if texts.ids() is None:
            raise LoupeError("ocr: terms only leave pictures out here: add the text to find "
                             "(ocr:\"words\") or other terms to rank by")
        index = self.index_of(column)
        cat = index.catalog
        mask = self._mask(index, kind, folder, since, until, dedupe, tags, capture, sort,
                          texts)
        pos = np.nonzero(mask)[0] if mask is not None else np.arange(len(cat))
        raw: list[Hit] = []
        where: dict[str, int] = {}
        for p in pos.tolist():
            item = str(cat.ids[p])
            ts, end = cat.timestamps[p], cat.ends[p]
            raw.append(Hit(item, str(cat.paths[p]), str(cat.kinds[p]), texts.score(item),
                           None if np.isnan(ts) else float(ts),
                           None if np.isnan(end) else float(end)))
            where[item] = int(p)
        raw.sort(key=lambda h: (-h.score, h.path, h.timestamp or 0.0))
        if min_score is not None or sort != "relevance":
            floor = min_score if min_score is not None else (
                relative_floor(raw[0].score) if raw else 0.0)
            raw = _above(raw, floor)
        hits = _group_readings(raw, texts, moments) if group else raw
        if sort != "relevance":
            hits = _date_order(index, hits, where, sort == "newest",
                               capture is not None and capture.or_modified)
        if dedupe is not None:
            hits, self.last_hidden = _dedupe(index, hits, where, dedupe, k)
        return _with_text(_described(index, hits[:k], where), texts)

    def _by_date(self, index: VectorIndex, vector: np.ndarray, mask: np.ndarray | None,
                 group: bool, moments: int, newest: bool, min_score: float | None,
                 or_modified: bool) -> tuple[list[Hit], dict[str, int]]:
        """Every hit above the relevance floor (of the best ``DATE_SORT_POOL``), by date
        (see :meth:`search_vector`), and the index position of each hit's id."""
        cap = min(len(index), DATE_SORT_POOL)
        fetch = min(cap, 256)
        while True:
            raw, where = self._raw(index, vector, fetch, mask)
            if not raw:
                return [], where
            floor = min_score if min_score is not None else relative_floor(raw[0].score)
            if len(raw) < fetch or raw[-1].score < floor or fetch >= cap:
                break
            fetch = min(cap, fetch * 4)
        raw = [h for h in raw if h.score >= floor]
        hits = _group(raw, moments) if group else raw
        return _date_order(index, hits, where, newest, or_modified), where

    def search(self, query: Sequence[str] | Sequence[Term], k: int = 10,
               kind: str | None = None, folder: str | None = None,
               group: bool = True, since: float | None = None,
               until: float | None = None, dedupe: float | None = None,
               tags: Sequence[str] = (), capture: CaptureFilter | None = None,
               sort: str = "relevance", min_score: float | None = None) -> list[Hit]:
        """Search with CLI-style tokens (``["dog", "+", "beach.jpg"]``) or parsed terms;
        ``dedupe``, ``tags``, ``capture``, ``sort`` and ``min_score`` as in
        :meth:`search_vector`."""
        t0 = time.perf_counter()
        terms = list(query)
        if terms and not isinstance(terms[0], Term):
            terms = parse_query(terms)  # type: ignore[arg-type]
        check_text_terms(terms)  # type: ignore[arg-type]
        embedded, shown = split_terms(terms)  # type: ignore[arg-type]
        texts = text_filter(self.store, shown) if shown else None
        filters = dict(k=k, kind=kind, folder=folder, group=group, since=since, until=until,
                       dedupe=dedupe, tags=tags, capture=capture, sort=sort,
                       min_score=min_score)
        if not embedded:
            hits = self.search_text(texts, **filters)  # type: ignore[arg-type]
        else:
            column = self.column_for(modalities(embedded))
            vec = query_vector(embedded, self.encoder_of(column))
            hits = self.search_vector(vec, column=column, texts=texts, **filters)
        self.last_query_seconds = time.perf_counter() - t0
        return hits

    def embed_query(self, terms: Sequence[Term], column: str | None = None,
                    limits: QueryLimits | None = None) -> EmbeddedQuery:
        """Parsed terms as one query vector, within ``limits``: with the first model that
        embeds every term (or ``column``'s, checked against the terms).

        Only the model is used (loaded on first use): no table and no FAISS index, so
        that a UI can decode and embed a viewer's upload without holding up the
        searches of others (see :meth:`search_embedded`).
        """
        if not terms:
            raise LoupeError("empty query: give words, a picture, a sound, or a mix")
        check_text_terms(terms)
        check_limits(terms, limits or QueryLimits())  # ocr: terms count too
        terms, shown = split_terms(terms)
        if not terms:  # only text shown: nothing to embed, no model to load
            return EmbeddedQuery(None, column or self.column, 0.0, 0.0, shown)
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
        t1 = time.perf_counter()
        vec = query_vector(terms, encoder, limits or QueryLimits())
        return EmbeddedQuery(vec, column, time.perf_counter() - t1, t1 - t0, shown)

    def search_embedded(self, query: EmbeddedQuery, k: int = 10, kind: str | None = None,
                        folder: str | None = None, group: bool = True,
                        since: float | None = None, until: float | None = None,
                        dedupe: float | None = None, tags: Sequence[str] = (),
                        capture: CaptureFilter | None = None, sort: str = "relevance",
                        min_score: float | None = None) -> SearchResult:
        """The hits of an embedded query (:meth:`embed_query`), filtered and sorted as in
        :meth:`search_vector`; its index is loaded (or refreshed) outside the timing."""
        if k < 1:
            raise LoupeError("ask for at least one result")
        t0 = time.perf_counter()
        self.index_of(query.column)
        t1 = time.perf_counter()
        texts = text_filter(self.store, query.texts) if query.texts else None
        filters = dict(k=k, kind=kind, folder=folder, column=query.column, group=group,
                       since=since, until=until, dedupe=dedupe, tags=tags, capture=capture,
                       sort=sort, min_score=min_score)
        if query.vector is None:
            hits = self.search_text(texts, **filters)  # type: ignore[arg-type]
        else:
            hits = self.search_vector(query.vector, texts=texts, **filters)
        return SearchResult(hits, query.column, query.seconds + time.perf_counter() - t1,
                            query.load_seconds + t1 - t0, self.last_hidden)

    def query(self, terms: Sequence[Term], k: int = 10, kind: str | None = None,
              folder: str | None = None, group: bool = True, column: str | None = None,
              since: float | None = None, until: float | None = None,
              dedupe: float | None = None, tags: Sequence[str] = (),
              limits: QueryLimits | None = None, capture: CaptureFilter | None = None,
              sort: str = "relevance", min_score: float | None = None) -> SearchResult:
        """Search parsed terms like ``loupe search`` does: with the first model that
        embeds every term (or ``column``'s, checked against the terms), the model and
        index loaded outside the timing. :meth:`embed_query` then
        :meth:`search_embedded`."""
        if not terms:
            raise LoupeError("empty query: give words, a picture, a sound, or a mix")
        if k < 1:
            raise LoupeError("ask for at least one result")
        return self.search_embedded(self.embed_query(terms, column, limits), k, kind,
                                    folder, group, since, until, dedupe, tags, capture,
                                    sort, min_score)

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

def relative_floor(best: float) -> float:
    """The default relevance floor of a date order: ``RELATIVE_FLOOR`` of the best
    score (as far below a negative best)."""
    return best - (1.0 - RELATIVE_FLOOR) * abs(best)


def _date_order(index: VectorIndex, hits: list[Hit], where: dict[str, int], newest: bool,
                or_modified: bool) -> list[Hit]:
    """``hits`` by date taken (newest or oldest first), undated last, ties by score
    then id."""
    keys = index.catalog.date_keys(np.array([where[h.id] for h in hits], np.int64),
                                   or_modified)
    sign = -1.0 if newest else 1.0

    def order(i: int) -> tuple:
        dated = not np.isnan(keys[i])
        return (not dated, sign * keys[i] if dated else 0.0, -hits[i].score, hits[i].id)

    return [hits[i] for i in sorted(range(len(hits)), key=order)]


def _with_text(hits: list[Hit], texts: TextFilter | None) -> list[Hit]:
    """``hits`` with the lines their ``ocr:`` terms matched (a grouped hit: its
    moments')."""
    if texts is None or not texts.required:
        return hits
    for h in hits:
        shown = [(m.id, m.timestamp) for m in h.moments] or [(h.id, h.timestamp)]
        h.text = texts.lines(shown)
        h.text_score = texts.score(h.id)
    return hits


def _group_readings(raw: list[Hit], texts: TextFilter, moments: int) -> list[Hit]:
    """:func:`_group`, with the frames that share one reading as one moment (its
    earliest matching frame)."""
    seen: set[tuple[str, str]] = set()
    first: list[Hit] = []
    for h in sorted(raw, key=lambda h: (h.path, h.timestamp or 0.0)):
        key = (h.path, texts.reading(h.id))
        if h.timestamp is None or key not in seen:
            seen.add(key)
            first.append(h)
    keep = {id(h) for h in first}
    return _group([h for h in raw if id(h) in keep], moments)


def _above(hits: list[Hit], floor: float | None) -> list[Hit]:
    return hits if floor is None else [h for h in hits if h.score >= floor]


def _described(index: VectorIndex, hits: list[Hit], where: dict[str, int]) -> list[Hit]:
    """``hits`` with what the camera knew, from the index's catalog (one take)."""
    if not hits:
        return hits
    rows = index.catalog.captures_at([where[h.id] for h in hits])
    for h, row in zip(hits, rows, strict=True):
        for name in CATALOG_CAPTURE:
            setattr(h, name, row[name])
    return hits


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
