"""How a search runs on each kind of index, chosen once when the index is built or loaded.

- :class:`FlatExact`: a flat index of whole vectors (the legacy ``Flat`` kind): FAISS's
  exact scan, or one BLAS product for a handful of queries.
- :class:`CodesExact`: the exact kind (``SQfp16``): fp16 codes scanned deep enough that
  re-scoring the candidates with whole vectors is provably the exact top k.
- :class:`IvfProbe`: an inverted file, probed as tuned (wider through a filter), its
  candidates re-scored with whole vectors when its lists hold codes (PQ, fp16).
- :class:`SmallSelectionExact`: in front of an inverted file, a filter keeping at most
  ``limit`` rows is answered by exact scoring of those rows.

Each answers ``search(queries, k, mask) -> (scores, positions)`` for float32 queries of
the index's dimension and 1 <= k <= len(index); positions are -1 past the last match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import faiss
import numpy as np

from loupe.search.ann.plan import EXACT_KIND, depth_for, rescore

FILTER_EXACT_LIMIT = 4096  # a filter keeping at most this many rows: scored exactly
FP16_UNIT = 2.0 ** -11  # relative rounding error of a float16

Hits = tuple[np.ndarray, np.ndarray]  # (scores, positions), each (queries, k)
VectorsAt = Callable[[np.ndarray], np.ndarray]  # positions -> their (n, d) float32 vectors


class SearchStrategy(Protocol):
    """Top-k search of one kind of index."""

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """Top-k (scores, positions) per query among the positions ``mask`` keeps."""
        ...


class BitmapSelector:
    """A FAISS selector of the positions where ``mask`` is true, valid inside ``with``
    (the bitmap it points into is kept alive until then)."""

    def __init__(self, mask: np.ndarray):
        self.bits = np.packbits(mask.astype(bool), bitorder="little")
        self.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self.bits))

    def __enter__(self) -> faiss.IDSelector:
        return self.sel

    def __exit__(self, *exc) -> None:
        del self.sel, self.bits


def search_through(index: faiss.Index, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
    """FAISS's own search of ``index``, restricted to ``mask`` when there is one."""
    if mask is None:
        return index.search(q, k)
    with BitmapSelector(mask) as sel:
        return index.search(q, k, params=faiss.SearchParameters(sel=sel))


def flat_storage(index: faiss.IndexFlat) -> np.ndarray:
    """The (n, d) float32 vectors a flat index holds (a view of its storage: no copy)."""
    n, d = index.ntotal, index.d
    return faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)


class FlatExact:
    """Exact search of a flat index of whole vectors."""

    def __init__(self, index: faiss.IndexFlat):
        self.index = index

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """Exact top-k; unfiltered searches of up to 4 queries by one matrix product."""
        if mask is None and len(q) <= 4:
            return self._few_queries(q, k)
        return search_through(self.index, q, k, mask)

    def _few_queries(self, q: np.ndarray, k: int) -> Hits:
        """One BLAS matrix product over the flat index's own storage (zero copy): FAISS's
        per-vector loop for nq < 20 is about 2x slower than this on CPU."""
        xb = flat_storage(self.index)
        n = len(xb)
        sims = q @ xb.T  # (nq, n)
        if k < n:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(n), (len(q), 1))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        pos = np.take_along_axis(part, order, axis=1).astype(np.int64)
        return np.take_along_axis(top, order, axis=1).astype(np.float32), pos


class CodesExact:
    """Exact top-k from an index of fp16 codes and the whole vectors beside it.

    A code's score is within ``delta`` = u |q| |x| of the exact one (u: fp16's rounding
    error; plus float32 summation), so the k-th best code score T bounds the exact k-th
    best from below by T - delta, and no vector scoring below T - 2 delta on its code
    can be in the exact top k. The scan deepens (x4) until the last candidate of every
    query is below that, then the candidates are re-scored with whole vectors.
    """

    def __init__(self, index: faiss.Index, max_norm: float, vectors: VectorsAt):
        self.index, self.max_norm, self.vectors = index, max_norm, vectors

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """The exact top-k among the positions ``mask`` keeps."""
        n, d = self.index.ntotal, self.index.d
        qn = np.linalg.norm(q, axis=1)
        delta = (FP16_UNIT + 2 * d * 2.0 ** -24) * qn * self.max_norm + 1e-6 * qn
        depth = min(n, max(4 * k, 64))
        while True:
            scores, pos = search_through(self.index, q, depth, mask)
            kth = scores[:, min(k, depth) - 1]
            done = (pos[:, -1] < 0) | (scores[:, -1] < kth - 2 * delta)
            if depth >= n or done.all():
                return rescore(q, pos, k, self.vectors)
            depth = min(n, depth * 4)


class IvfProbe:
    """An inverted file probed ``depth_for(k, rerank)`` deep; the candidates re-scored
    with whole vectors when ``rescores`` (lists of PQ or fp16 codes, vectors at hand)."""

    def __init__(self, index: faiss.Index, rerank: int, vectors: VectorsAt, rescores: bool):
        self.index, self.rerank, self.vectors, self.rescores = index, rerank, vectors, rescores

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """Approximate top-k (as tuned) among the positions ``mask`` keeps."""
        depth = min(self.index.ntotal, depth_for(k, self.rerank))
        scores, pos = self.probe(q, depth, mask)
        if self.rescores:
            return rescore(q, pos, k, self.vectors)
        return scores[:, :k], pos[:, :k]

    def probe(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """IVF search for k per query, through ``mask``: nprobe scaled by 1 / the share
        the mask keeps, then raised fourfold while a query has fewer than it could."""
        ivf = faiss.extract_index_ivf(self.index)
        if mask is None:
            return self.index.search(q, k)
        kept = int(mask.sum())
        want = min(k, kept)
        # as many kept candidates as an unfiltered probe sees (a few dead slots: the same)
        nprobe = min(ivf.nlist, max(ivf.nprobe, round(ivf.nprobe * len(mask) / max(kept, 1))))
        with BitmapSelector(mask) as sel:
            while True:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
                quantizer = faiss.downcast_index(ivf.quantizer)
                if isinstance(quantizer, faiss.IndexHNSW):
                    hnsw = faiss.SearchParametersHNSW(efSearch=max(32, 2 * nprobe))
                    params.quantizer_params = hnsw
                scores, pos = self.index.search(q, k, params=params)
                if nprobe >= ivf.nlist or ((pos >= 0).sum(axis=1) >= want).all():
                    return scores, pos
                nprobe = min(ivf.nlist, nprobe * 4)


class SmallSelectionExact:
    """A filter keeping at most ``limit`` rows: exact scoring of those rows' vectors;
    any other search goes to ``inner``."""

    def __init__(self, inner: SearchStrategy, vectors: VectorsAt,
                 limit: int = FILTER_EXACT_LIMIT):
        self.inner, self.vectors, self.limit = inner, vectors, limit

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None) -> Hits:
        """Exact top-k of a small selection, else the inner strategy's answer."""
        if mask is not None:
            selected = np.flatnonzero(mask)
            if len(selected) <= self.limit:
                return self.score(q, selected, k)
        return self.inner.search(q, k, mask)

    def score(self, q: np.ndarray, selected: np.ndarray, k: int) -> Hits:
        """Exact top-k among the ``selected`` positions."""
        vecs = self.vectors(selected)
        cand = np.broadcast_to(np.arange(len(selected)), (len(q), len(selected)))
        scores, local = rescore(q, cand, k, lambda p: vecs[p])
        if not len(selected):  # nothing passes: all -1 (local is)
            return scores, local
        return scores, np.where(local >= 0, selected[np.maximum(local, 0)], -1)


def choose_strategy(index: faiss.Index, kind: str, rerank: int, max_norm: float,
                    vectors: VectorsAt, rescores: bool) -> SearchStrategy:
    """The strategy for an index of FAISS factory string ``kind`` (see the module
    docstring). ``vectors``: whole vectors by position; ``rescores``: whether an
    inverted file's candidates are re-scored with them."""
    if kind == EXACT_KIND:
        return CodesExact(index, max_norm, vectors)
    if isinstance(index, faiss.IndexFlat):
        return FlatExact(index)
    return SmallSelectionExact(IvfProbe(index, rerank, vectors, rescores), vectors)
