"""A FAISS index of one vector column, with the catalog of its rows and its search strategy.

Position p of the FAISS index holds the vector of row p of its :class:`RowCatalog`. The
kind of index (see search/ann/plan.py) decides, once, how it is searched
(search/ann/strategies.py); a GPU copy, where faiss-gpu sees one, answers unfiltered
searches (search/ann/gpu.py). Keeping the index in step with the store is
search/ann/refresh.py; saving and loading it, search/ann/persist.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa

from loupe.search.ann.catalog import ROW_COLUMNS, RowCatalog, with_row_columns
from loupe.search.ann.gpu import GPU_MAX_K, gpu_copy, gpu_count, gpu_depth, search_gpu
from loupe.search.ann.plan import EXACT_KIND, IndexPlan, build, plan_index, tune_rerank
from loupe.search.ann.position_vectors import PositionVectors
from loupe.search.ann.strategies import Hits, SearchStrategy, choose_strategy, flat_storage
from loupe.search.store import Store


@dataclass
class IndexInfo:
    """Where an index was built from."""

    column: str
    version: int  # store (items table) version it reflects
    count: int  # live vectors
    kind: str  # FAISS factory string
    nprobe: int = 0  # lists probed (IVF), tuned to the recall target
    recall: float = 1.0  # measured recall@10 against exact search (1.0: exact)
    dead: int = 0  # slots of rows gone or replaced since the last full build
    reason: str = ""  # why this kind of index
    rerank: int = 0  # candidates per query re-scored with whole vectors (coded IVF lists)
    max_norm: float = 0.0  # largest vector norm (bounds the fp16 codes' error)
    # Store.capture_rev its catalog's capture columns were read at: captures written
    # into existing rows since (an older index's next run) make it read them again
    capture_rev: int = 0


Fetch = Callable[[list[str]], np.ndarray]  # item ids -> their whole stored vectors


class VectorIndex:
    """A FAISS index, the :class:`RowCatalog` of its positions, and its search strategy.

    ``fetch`` / ``local``: where the whole vectors of an index of codes (PQ, fp16) come
    from to re-score its candidates: by position from files beside it (``local``), else
    by item id from the store (``fetch``).
    """

    def __init__(self, index: faiss.Index, catalog: RowCatalog, info: IndexInfo,
                 fetch: Fetch | None = None, local: PositionVectors | None = None):
        self.index = index
        self.catalog = catalog
        self.info = info
        self.fetch = fetch
        self.local = local if local is not None and len(local) == index.ntotal else None
        self.strategy: SearchStrategy = choose_strategy(index, info.kind, info.rerank,
                                                        info.max_norm, self.vectors,
                                                        self.rescores)
        self._gpu: faiss.Index | None | bool = None  # copy on the GPUs (False: none)

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def codes(self) -> bool:
        """An exact index of fp16 codes, whose candidates are re-scored exactly."""
        return self.info.kind == EXACT_KIND

    @property
    def rescores(self) -> bool:
        """Candidates are re-scored with whole vectors (inverted lists of PQ or fp16
        codes, when the vectors are at hand)."""
        return bool(self.info.rerank) and (self.local is not None or self.fetch is not None)

    def gpu_index(self) -> faiss.Index | None:
        """The index copied to every GPU (faiss-gpu) for unfiltered searches, made on
        first use; None without GPUs or when FAISS cannot place this kind there. An
        exact index goes there as whole vectors (a flat index: no re-scoring)."""
        if not len(self) or not gpu_count():
            return None
        if self._gpu is None:
            whole = (lambda: self.vectors(np.arange(len(self)))) if self.codes else None
            self._gpu = gpu_copy(self.index, whole) or False
        return self._gpu or None

    def vectors(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """The stored vectors at ``positions``, as an (n, d) float32 array (a copy);
        whole vectors (beside the index, else from the store) for an index of codes."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        d = self.index.d
        if isinstance(self.index, faiss.IndexFlat):
            return np.array(flat_storage(self.index)[pos], dtype=np.float32)
        whole = self.info.rerank or self.codes
        if whole and self.local is not None:
            return self.local.take(pos)
        if whole and self.fetch is not None:
            ids = self.catalog.ids[pos].tolist()
            return np.asarray(self.fetch(ids), np.float32).reshape(-1, d)
        if not len(pos):
            return np.zeros((0, d), np.float32)
        return np.asarray(self.index.reconstruct_batch(pos), np.float32).reshape(-1, d)

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> Hits:
        """Top-k (scores, positions) per query, among the live positions ``mask`` keeps
        (default: every live one); positions are -1 past the last match. k is capped at
        the number of slots.

        Exact for the exact kinds. An IVF index probes its tuned lists, widened by the
        share of rows a filter keeps (so as many candidates pass it as without one) and
        again until k are found; a filter keeping at most ``FILTER_EXACT_LIMIT`` rows is
        answered by exact scoring of those rows. A PQ index's candidates are re-scored
        with whole vectors.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        n = len(self)
        if n == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = max(1, min(k, n))
        alive = self.catalog.alive
        if mask is None:
            mask = alive
        gpu = self.gpu_index() if mask is alive else None
        if gpu is not None:
            depth = gpu_depth(n, k, self.info.rerank, alive)
            if depth <= GPU_MAX_K:
                return search_gpu(gpu, q, k, depth, alive,
                                  self.vectors if self.rescores else None)
        return self.strategy.search(q, k, mask)


def vectors_of(table: pa.Table, column: str) -> np.ndarray:
    """The fixed-size list ``column`` of ``table`` as an (n, d) float32 array."""
    dim = int(table.schema.field(column).type.list_size)
    flat = table[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(table.num_rows, dim), dtype=np.float32)


def store_fetcher(store: Store, column: str) -> Fetch:
    """Whole vectors of ``column`` by item id, from the store."""
    return lambda ids: store.vectors_of(ids, column)


def direct_map(index: faiss.Index) -> None:
    """Let an IVF index give back a stored vector by position (search-time dedupe)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and not ivf.direct_map.type:
        ivf.make_direct_map()


def build_vector_index(column: str, version: int, table: pa.Table,
                       memory_budget: int | None = None, flat_limit: int | None = None,
                       fetch: Fetch | None = None, plan: IndexPlan | None = None) -> VectorIndex:
    """An index of the rows of ``table`` that have a ``column`` vector, built as ``plan``
    says (default: the one :func:`plan_index` gives for their number, within
    ``memory_budget`` and ``flat_limit``) and tuned. An empty table always gets the exact
    kind: an inverted file cannot be trained on nothing."""
    dim = int(table.schema.field(column).type.list_size) if column in table.schema.names else 0
    if table.num_rows and column in table.column_names:
        table = table.filter(table[column].is_valid())
        vecs = vectors_of(table, column)
    else:
        vecs = np.zeros((0, max(dim, 1)), np.float32)
    table = with_row_columns(table)
    if plan is None or not len(vecs):
        plan = plan_index(len(vecs), vecs.shape[1], memory_budget, flat_limit)
    index = build(plan, vecs)
    nprobe, recall, depth = tune_rerank(index, plan, vecs)
    direct_map(index)
    rows = table.select(ROW_COLUMNS)
    max_norm = float(np.linalg.norm(vecs, axis=1).max()) if len(vecs) else 0.0
    info = IndexInfo(column, version, len(vecs), plan.factory, nprobe, recall, 0, plan.reason,
                     depth, max_norm)
    whole = depth or plan.factory == EXACT_KIND
    local = PositionVectors(vecs.shape[1], pending=vecs) if whole else None
    return VectorIndex(index, RowCatalog(rows), info, fetch=fetch, local=local)
