"""Searching an index: query -> vector -> FAISS -> hits with their provenance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from indexer.encoders import Encoder, encoder_from_spec
from search.ann import VectorIndex, load_index
from search.query import Term, parse_query, query_vector
from search.store import Store


@dataclass
class Hit:
    """One search result."""

    id: str
    path: str
    kind: str
    score: float
    timestamp: float | None = None

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


class Searcher:
    """Searches one store with the encoder that built it.

    The FAISS index is reloaded whenever the store has moved on (another process
    indexed meanwhile), so results never include rows the store no longer has.
    """

    def __init__(self, store: Store, encoder: Encoder | None = None, device: str = "auto"):
        self.store = store
        self.column, self.spec = store.encoder_for_query(encoder.spec if encoder else None)
        self._encoder = encoder
        self._device = device
        self._index: VectorIndex | None = None
        self.last_query_seconds = 0.0

    @property
    def encoder(self) -> Encoder:
        """The query encoder (loaded on first use)."""
        if self._encoder is None:
            self._encoder = encoder_from_spec(self.spec, self._device)
        return self._encoder

    @property
    def index(self) -> VectorIndex:
        """The FAISS index, fresh with respect to the store."""
        if self._index is None or self._index.info.version != self.store.version():
            self._index = load_index(self.store, self.column)
        return self._index

    def search_vector(self, vector: np.ndarray, k: int = 10, kind: str | None = None,
                      folder: str | None = None) -> list[Hit]:
        """Top-k hits for a unit query vector, with optional kind/folder filters."""
        index = self.index
        mask = index.mask(kind=kind, folder=folder)
        if mask is not None and not mask.any():
            return []
        scores, pos = index.search(vector[None, :], k, mask)
        hits = []
        for s, p in zip(scores[0], pos[0], strict=True):
            if p < 0:
                continue
            ts = index.timestamps[p]
            hits.append(Hit(str(index.ids[p]), str(index.paths[p]), str(index.kinds[p]),
                            float(s), None if np.isnan(ts) else float(ts)))
        return hits

    def search(self, query: Sequence[str] | Sequence[Term], k: int = 10,
               kind: str | None = None, folder: str | None = None) -> list[Hit]:
        """Search with CLI-style tokens (``["dog", "+", "beach.jpg"]``) or parsed terms."""
        t0 = time.perf_counter()
        terms = list(query)
        if terms and not isinstance(terms[0], Term):
            terms = parse_query(terms)  # type: ignore[arg-type]
        vec = query_vector(terms, self.encoder)  # type: ignore[arg-type]
        hits = self.search_vector(vec, k=k, kind=kind, folder=folder)
        self.last_query_seconds = time.perf_counter() - t0
        return hits

