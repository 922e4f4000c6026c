"""Which FAISS index for how many vectors, built and tuned to a recall target.

- Up to ``FLAT_LIMIT`` vectors (1M): exact inner-product search, no training or tuning.
  The index holds fp16 codes (``SQfp16``: 2 bytes per dimension) and the whole float32
  vectors lie in files beside it: a query scans the codes (half the memory traffic of
  float32, which bounds a brute-force scan) and re-scores its candidates with the whole
  vectors, taking as many as the fp16 rounding error could reorder, so the answer is
  the exact top k. 1M 512-d vectors: 58 ms per query against 106 for NumPy on 2 cores
  (bench/bench_search.py).
- Beyond: an inverted file, with FAISS's own guideline for the number of lists (4·√N
  rounded to a power of two below 1M vectors; 65,536 lists for 1M-10M, 262,144 for
  10M-100M, 1,048,576 beyond) and an HNSW coarse quantizer from 16,384 lists on, so
  finding the lists to probe does not cost a scan of the centroids.
- When the raw vectors (4 bytes × dim per vector) do not fit the memory budget (half of
  this machine's RAM unless told) but fp16 codes do, the lists hold fp16 codes and the
  candidates are re-scored with whole vectors, as below. When those do not fit either,
  the vectors are product-quantised (OPQ rotation + PQ with the largest code size that
  fits: ``m`` bytes per vector, plus 8 for the id). PQ scores alone are coarse
  (recall@10 stays near 0.6 on dense data however many lists are probed), so a PQ
  index is searched ``RERANK_DEPTH`` deep and the candidates are re-scored exactly with
  their whole vectors, read from float32 files kept beside the index in position order
  (search/ann/position_vectors.py: on disk, not in the memory budget), or from the store
  when those are missing.

IVF indexes are trained on a seeded sample (40 vectors per list, at least 10,000) and
tuned: ``nprobe`` (and the quantizer's ``efSearch``) is raised in powers of two until
recall@10 against exact search reaches the target (0.95) on held-out queries (midpoints
of random pairs of stored vectors: near the data, but not stored vectors themselves).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from loupe.indexer.errors import LoupeError

FLAT_LIMIT = 1_000_000
# Exact search scans fp16 codes (half the memory and memory traffic of float32) and
# re-scores the candidates with whole vectors, deep enough to be provably exact
# (search/ann/strategies.py, CodesExact).
EXACT_KIND = "SQfp16"
RECALL_TARGET = 0.95
TUNE_QUERIES = 200
TUNE_K = 10
HNSW_FROM = 16_384  # lists from which the coarse quantizer is an HNSW graph
ID_BYTES = 8
RERANK_DEPTH = 100  # PQ candidates per query re-scored with whole vectors (at least 4k)
RERANK_DEPTHS = (100, 300, 1000)  # tried in turn when tuning a PQ index


@dataclass(frozen=True)
class IndexPlan:
    """A FAISS index for ``n`` vectors of ``dim`` within a memory budget."""

    factory: str  # FAISS index_factory string (inner-product metric)
    nlist: int = 0  # inverted lists (0: exact search)
    pq_bytes: int = 0  # bytes per PQ code (0: vectors kept whole)
    train_size: int = 0
    reason: str = ""
    backend: str = "faiss"  # or "lance": LanceDB's index in the table (search/ann/lance_plan.py)

    @property
    def fp16(self) -> bool:
        """Vectors kept as fp16 codes (exact kind, or an inverted file's lists)."""
        return self.factory == EXACT_KIND or self.factory.endswith(",SQfp16")

    @property
    def rerank(self) -> int:
        """Candidates per query re-scored exactly (0: the index's scores are exact or,
        for the exact kind, re-scored as deep as fp16's error needs)."""
        return RERANK_DEPTH if self.pq_bytes or (self.fp16 and not self.exact) else 0

    @property
    def exact(self) -> bool:
        """Whether searches are exact."""
        return self.nlist == 0

    def bytes_per_vector(self, dim: int) -> int:
        """Memory per stored vector (codes and ids, not the quantizer)."""
        if self.factory == EXACT_KIND:
            return 2 * dim
        if self.exact:
            return 4 * dim
        return (self.pq_bytes or (2 if self.fp16 else 4) * dim) + ID_BYTES


def default_memory_budget() -> int:
    """Half of this machine's RAM (bytes)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def lists_for(n: int) -> int:
    """FAISS's guideline for the number of inverted lists for ``n`` vectors."""
    if n < 1_000_000:
        return int(min(65_536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))
    if n < 10_000_000:
        return 65_536
    if n < 100_000_000:
        return 262_144
    return 1_048_576


def plan_index(n: int, dim: int, memory_budget: int | None = None,
               flat_limit: int | None = None) -> IndexPlan:
    """The index for ``n`` vectors of ``dim`` (deterministic: the same inputs give the
    same plan). ``flat_limit``: exact search up to this many (default ``FLAT_LIMIT``)."""
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    flat_limit = FLAT_LIMIT if flat_limit is None else flat_limit
    if n <= flat_limit and n * dim * 2 <= budget:
        return IndexPlan(EXACT_KIND, reason=f"{n:,} vectors: exact search (fp16 codes "
                                            "scanned, candidates re-scored whole)")
    nlist = lists_for(n)
    coarse = f"IVF{nlist}_HNSW32" if nlist >= HNSW_FROM else f"IVF{nlist}"
    train = int(min(n, max(10_000, 40 * nlist)))
    if n * (4 * dim + ID_BYTES) <= budget:
        return IndexPlan(f"{coarse},Flat", nlist, 0, train,
                         f"{n:,} vectors: inverted file, {nlist:,} lists, vectors whole")
    if n * (2 * dim + ID_BYTES) <= budget:
        return IndexPlan(f"{coarse},SQfp16", nlist, 0, train,
                         f"{n:,} vectors in {budget / 2**30:.1f} GiB: inverted file, "
                         f"{nlist:,} lists, fp16 codes, candidates re-scored whole")
    for m in (dim // 4, 64, 48, 32, 16, 8):
        if m >= 4 and dim % m == 0 and n * (m + ID_BYTES) <= budget:
            return IndexPlan(f"OPQ{m}_{dim},{coarse},PQ{m}", nlist, m, max(train, 256 * 40),
                             f"{n:,} vectors in {budget / 2**30:.1f} GiB: inverted file, "
                             f"{nlist:,} lists, {m}-byte PQ codes")
    raise LoupeError(f"{n:,} vectors of {dim} dimensions do not fit {budget / 2**30:.2f} GiB "
                     f"even as 8-byte codes: give the index more memory, or shard it")


def build(plan: IndexPlan, vectors: np.ndarray, seed: int = 0) -> faiss.Index:
    """A FAISS index of ``vectors`` (unit float32 rows; position = id) as planned,
    trained on a seeded sample."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if not plan.exact:
        rng = np.random.default_rng(seed)
        take = min(len(vectors), plan.train_size)
        sample = vectors[np.sort(rng.choice(len(vectors), take, replace=False))]
        _seed_clustering(index, seed)
        index.train(sample)
    if len(vectors):
        index.add(vectors)
    return index


def _seed_clustering(index: faiss.Index, seed: int) -> None:
    """Seed the k-means of an IVF index (FAISS seeds it with a fixed 1234 otherwise;
    ours makes the seed a parameter)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.seed = seed


def set_search_params(index: faiss.Index, nprobe: int) -> None:
    """Probe ``nprobe`` lists (and let an HNSW quantizer look as widely)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return
    ivf.nprobe = int(nprobe)
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexHNSW):
        quantizer.hnsw.efSearch = max(32, 2 * int(nprobe))


def tuning_queries(vectors: np.ndarray, count: int = TUNE_QUERIES, seed: int = 0) -> np.ndarray:
    """Held-out queries near the data: midpoints of random pairs of stored vectors."""
    rng = np.random.default_rng(seed + 1)
    a = vectors[rng.integers(0, len(vectors), count)]
    b = vectors[rng.integers(0, len(vectors), count)]
    q = a + b
    return (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the exact top-k by inner product (brute force)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return flat.search(queries, k)[1]


def depth_for(k: int, rerank: int) -> int:
    """How many candidates to fetch for a top-k answer re-scored from ``rerank`` deep."""
    return max(rerank, 4 * k) if rerank else k


def rescore(queries: np.ndarray, positions: np.ndarray, k: int,
            vectors_at: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, positions) per query among its candidate ``positions`` (-1:
    none), scored with the whole vectors ``vectors_at(unique positions)`` gives (a NaN
    row, a vector no longer stored, is no candidate). Ties go to the lower position,
    as in an exact flat search."""
    nq = len(queries)
    scores = np.full((nq, k), -np.inf, np.float32)
    out = np.full((nq, k), -1, np.int64)
    valid = positions >= 0
    if not valid.any():
        return scores, out
    uniq, inverse = np.unique(positions[valid], return_inverse=True)
    vecs = np.asarray(vectors_at(uniq), np.float32)
    cand = np.full(positions.shape, -1, np.int64)
    cand[valid] = inverse
    for row in range(nq):
        c = cand[row][cand[row] >= 0]
        s = vecs[c] @ queries[row]
        c, s = c[~np.isnan(s)], s[~np.isnan(s)]
        order = np.lexsort((uniq[c], -s))[:k]  # equal scores: the lower position first
        scores[row, :len(order)] = s[order]
        out[row, :len(order)] = uniq[c[order]]
    return scores, out


def recall_at(index: faiss.Index, queries: np.ndarray, truth: np.ndarray,
              rerank: int = 0, vectors: np.ndarray | None = None) -> float:
    """Mean share of the exact top-k found by ``index``'s top-k (re-scored from
    ``rerank`` candidates with ``vectors`` when ``rerank``)."""
    k = truth.shape[1]
    if rerank and vectors is not None:
        cand = index.search(queries, min(depth_for(k, rerank), index.ntotal))[1]
        found = rescore(queries, cand, k, lambda p: vectors[p])[1]
    else:
        found = index.search(queries, k)[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def tune(index: faiss.Index, plan: IndexPlan, vectors: np.ndarray,
         target: float = RECALL_TARGET, seed: int = 0,
         rerank: int | None = None) -> tuple[int, float]:
    """The smallest power-of-two ``nprobe`` reaching ``target`` recall@10 on held-out
    queries (after exact re-scoring of ``rerank``, default the plan's, candidates), set
    on ``index``; returns (nprobe, measured recall). Stops early, below the target,
    when doubling nprobe no longer helps (PQ codes limit the recall, not the probe).
    Exact plans: (0, 1.0)."""
    if plan.exact or len(vectors) == 0:
        return 0, 1.0
    rerank = plan.rerank if rerank is None else rerank
    queries = tuning_queries(vectors, seed=seed)
    truth = exact_top(vectors, queries, min(TUNE_K, len(vectors)))
    nprobe, recall, before = 1, 0.0, -1.0
    while True:
        set_search_params(index, nprobe)
        recall = recall_at(index, queries, truth, rerank, vectors)
        saturated = nprobe >= 8 and recall - before < 0.002
        if recall >= target or nprobe >= plan.nlist or saturated:
            if saturated and recall < target:  # the previous probe did as well
                nprobe //= 2
                set_search_params(index, nprobe)
            return nprobe, max(recall, before)
        before = recall
        nprobe *= 2


def tune_rerank(index: faiss.Index, plan: IndexPlan, vectors: np.ndarray,
                target: float = RECALL_TARGET, seed: int = 0) -> tuple[int, float, int]:
    """For a PQ plan: the first re-scoring depth of ``RERANK_DEPTHS`` at which some
    nprobe reaches ``target`` (else the deepest), tuned as :func:`tune`; returns
    (nprobe, recall, depth). Measured at 10M vectors (bench/bench_billion.py): 100
    candidates saturate at recall 0.88, 1,000 reach 0.96 at nprobe 128 of 4,096."""
    if not plan.rerank:
        return (*tune(index, plan, vectors, target, seed), 0)
    for depth in RERANK_DEPTHS:
        nprobe, recall = tune(index, plan, vectors, target, seed, rerank=depth)
        if recall >= target:
            break
    return nprobe, recall, depth
