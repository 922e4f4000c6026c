"""Which index backend, and LanceDB's own vector index planned and tuned like FAISS's.

**Which backend.** FAISS (search/ann/plan.py) is the default on one machine: its index
lives in this process's memory (memory-mapped files beside the store). LanceDB's index
lives in the items table itself, read where the table is, so it is picked when

- the tables live on object storage (``store.tables_uri`` is ``s3://...``, not a folder):
  every replica reads the same index from there, none builds its own; or
- the vectors (4 bytes x dim each) exceed the memory budget (half of this machine's RAM
  unless told): LanceDB reads partitions of the index and the whole vectors it re-scores
  from disk, a process holds neither.

``LOUPE_ANN=lance|faiss|auto`` (``loupe search/serve --ann``) overrides the choice.

**The Lance index.** ``IVF_PQ`` (or ``IVF_HNSW_SQ``) over the column, dot product (Loupe's
vectors are unit vectors, its scores inner products): one partition per 4,096 rows
(LanceDB's guideline: 244 for 1M, 2,441 for 10M), ``dim / 8`` sub-vectors of 8
bits (64 bytes per 512-d vector; dim / 4 below 256 dimensions). Its candidates are
re-scored with the whole vectors (``refine_factor``: k x refine candidates by PQ
distance, re-ranked exactly), so scores are exact inner products. Below
``LANCE_INDEX_MIN`` rows there is no index at all: LanceDB scans the column (exact).

**Tuning** as the FAISS plan's: held-out queries (midpoints of random pairs of stored
vectors), their exact top 10 found by one streamed pass over the column; ``nprobes``
doubled until recall@10 >= 0.97 (the 0.95 target plus ``TUNE_MARGIN``, so that other
held-out queries reach 0.95), starting at the shallowest ``refine_factor`` of ``REFINES``
and re-scoring deeper where probing more no longer helps (see :func:`tune_lance`), as
``tune_rerank`` does for FAISS PQ.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

import numpy as np

from loupe.indexer.errors import LoupeError
from loupe.search.ann.plan import (
    RECALL_TARGET,
    TUNE_K,
    TUNE_QUERIES,
    IndexPlan,
    default_memory_budget,
)

BACKENDS = ("auto", "faiss", "lance")
ANN_ENV = "LOUPE_ANN"  # lance | faiss | auto (default)
LANCE = "lance"
LANCE_PQ = "lance:IVF_PQ"
LANCE_HNSW_SQ = "lance:IVF_HNSW_SQ"
LANCE_FLAT = "lance:flat"  # no index: LanceDB scans the column (exact)
LANCE_KINDS = (LANCE_PQ, LANCE_HNSW_SQ, LANCE_FLAT)
LANCE_INDEX_MIN = 50_000  # rows from which the table gets a vector index
REFINES = (10, 30, 100)  # refine_factor tried in turn (x k candidates: 100 for k=10, as FAISS PQ)
HNSW_EF = 96  # IVF_HNSW_SQ's search breadth within a partition
PARTITION_ROWS = 4096  # rows per IVF partition (LanceDB's target partition size)
# Tuned this far above the target, on twice FAISS's tuning queries: recall@10 of one
# set of 200 held-out queries against another's differs by up to 0.02 (measured on the
# tests' 40,000 vectors), and LanceDB's k-means is not seeded.
TUNE_MARGIN = 0.02
LANCE_TUNE_QUERIES = 2 * TUNE_QUERIES


def remote_uri(uri: str | None) -> bool:
    """Whether ``uri`` names object storage (s3://, gs://, az://...), not a folder."""
    scheme = urlparse(uri or "").scheme
    return len(scheme) > 1 and scheme != "file"  # "C:\..." has a one-letter scheme


def requested_backend(override: str | None = None) -> str:
    """``override``, else ``$LOUPE_ANN``, else "auto" (checked)."""
    value = (override or os.environ.get(ANN_ENV) or "auto").strip().lower()
    if value not in BACKENDS:
        raise LoupeError(f"{ANN_ENV} / --ann is one of {', '.join(BACKENDS)}, not {value!r}")
    return value


def choose_backend(tables_uri: str | None, n: int, dim: int,
                   memory_budget: int | None = None,
                   override: str | None = None) -> tuple[str, str]:
    """("faiss" or "lance", why) for ``n`` vectors of ``dim`` in tables at ``tables_uri``."""
    asked = requested_backend(override)
    if asked != "auto":
        return asked, f"asked for ({ANN_ENV} / --ann {asked})"
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    if remote_uri(tables_uri):
        return LANCE, f"tables on object storage ({tables_uri}): LanceDB's index, read there"
    if n * dim * 4 > budget:
        return LANCE, (f"{n:,} vectors ({n * dim * 4 / 2**30:.1f} GiB) exceed the "
                       f"{budget / 2**30:.1f} GiB memory budget: LanceDB's index, read from disk")
    return "faiss", "one machine, vectors within memory: FAISS"


def partitions_for(n: int) -> int:
    """IVF partitions for ``n`` rows: one per ``PARTITION_ROWS`` (LanceDB's own guideline,
    and the size its incremental updates split and join partitions towards: a smaller
    partition would be joined into a neighbour by the next ``optimize``), 1 to 65,536."""
    return int(min(65_536, max(1, round(n / PARTITION_ROWS))))


def sub_vectors_for(dim: int) -> int:
    """PQ sub-vectors (bytes per code): dim / 8 from 256 dimensions (64 bytes for 512),
    dim / 4 below (codes of fewer dimensions are too coarse), else a divisor."""
    for m in ((dim // 8) if dim >= 256 else 0, dim // 4, dim // 2, 1):
        if m >= 1 and dim % m == 0:
            return m
    return 1


def plan_lance(n: int, dim: int, kind: str = LANCE_PQ, reason: str = "",
               index_min: int = LANCE_INDEX_MIN) -> IndexPlan:
    """The Lance index for ``n`` vectors of ``dim`` (deterministic)."""
    if n < index_min or kind == LANCE_FLAT:
        return IndexPlan(LANCE_FLAT, backend=LANCE, reason=reason or (
            f"{n:,} vectors: LanceDB scans the column (exact, no index)"))
    nlist = partitions_for(n)
    m = sub_vectors_for(dim) if kind == LANCE_PQ else 0
    what = f"{m}-byte PQ codes" if m else "HNSW graphs of 8-bit codes"
    return IndexPlan(kind, nlist, m, backend=LANCE, reason=(reason + ": " if reason else "")
                     + f"LanceDB {kind.split(':')[1]} in the table, {nlist:,} partitions, "
                     f"{what}, re-scored with whole vectors")


# -- tuning ------------------------------------------------------------------------------
Searcher = Callable[[np.ndarray, int, int, int], np.ndarray]  # (q, k, nprobes, refine) -> rowids


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    k = truth.shape[1]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k
                          for f, t in zip(found, truth, strict=True)]))


def tune_lance(search: Searcher, queries: np.ndarray, truth: np.ndarray, nlist: int,
               target: float = RECALL_TARGET + TUNE_MARGIN) -> tuple[int, float, int]:
    """(nprobes, recall, refine_factor): nprobes doubled from 1 at the shallowest refine
    factor of ``REFINES``; where doubling no longer helps (the codes limit the recall,
    not the probe), the next deeper refine factor at the same nprobes; once ``target``
    is reached, nprobes halved while it still holds. Below the target everywhere: the
    best seen."""
    k, at = truth.shape[1], 0
    nprobes, before = 1, -1.0
    best = (1, 0.0, REFINES[-1])
    while True:
        recall = recall_of(search(queries, k, nprobes, REFINES[at]), truth)
        if recall > best[1]:
            best = (nprobes, recall, REFINES[at])
        if recall >= target:
            break
        if nprobes >= nlist or (nprobes >= 8 and recall - before < 0.002):
            if at == len(REFINES) - 1:
                return best
            at, before = at + 1, -1.0  # deeper re-scoring, same probe
            continue
        before, nprobes = recall, nprobes * 2
    while nprobes > 1:
        fewer = recall_of(search(queries, k, nprobes // 2, REFINES[at]), truth)
        if fewer < target:
            break
        nprobes, recall = nprobes // 2, fewer
    return nprobes, recall, REFINES[at]


def held_out(sample: np.ndarray, count: int = LANCE_TUNE_QUERIES, seed: int = 0) -> np.ndarray:
    """Held-out queries: midpoints of random pairs of ``sample`` rows, normalised."""
    rng = np.random.default_rng(seed + 1)
    q = sample[rng.integers(0, len(sample), count)] + sample[rng.integers(0, len(sample), count)]
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class StreamedTruth:
    """The exact top-k (by inner product) of some queries over vectors given in chunks:
    one pass over a column that need not fit in memory."""

    def __init__(self, queries: np.ndarray, k: int = TUNE_K):
        self.q, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, np.float32)
        self.ids = np.zeros((len(queries), 0), np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Fold in a chunk of vectors and their ids (row ids)."""
        if not len(vectors):
            return
        s = self.q @ np.asarray(vectors, np.float32).T
        s = np.concatenate([self.scores, s], axis=1)
        ids = np.concatenate([self.ids, np.broadcast_to(ids.astype(np.int64), (len(self.q),
                                                                              len(ids)))], axis=1)
        k = min(self.k, s.shape[1])
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        self.scores = np.take_along_axis(s, part, axis=1)
        self.ids = np.take_along_axis(ids, part, axis=1)

    def top(self) -> np.ndarray:
        """(queries, k) ids of the exact top-k, best first."""
        order = np.argsort(-self.scores, axis=1, kind="stable")
        return np.take_along_axis(self.ids, order, axis=1)
