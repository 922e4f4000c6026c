"""FAISS indexes derived from the store, persisted beside it, never out of step with it.

An index file is tagged with the store version it reflects. When the store has moved on
(an indexing run committed, another process wrote), the index is brought up to date
without a full rebuild: rows that are new or were re-written (their ``indexed_at``
changed) are added, and the slots of rows that are gone or were replaced are marked
dead, so searches never return them. A full rebuild happens when dead slots pass a
quarter of the index, a change is large, or the planned index type changes with size
(exact up to 1M vectors, tuned IVF families beyond: see search/ann_plan.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from loupe.search.ann.plan import (
    EXACT_KIND,
    build,
    depth_for,
    plan_index,
    rescore,
    set_search_params,
    tune_rerank,
)
from loupe.search.ann.position_vectors import PositionVectors
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


FILTER_EXACT_LIMIT = 4096  # a filter keeping at most this many rows: scored exactly
FP16_UNIT = 2.0 ** -11  # relative rounding error of a float16
GPU_MAX_K = 2048  # FAISS GPU indexes return at most this many neighbours per query


def gpu_count() -> int:
    """GPUs FAISS can search on: 0 with the default faiss-cpu install, or when
    ``LOUPE_FAISS_GPU=0``."""
    if os.environ.get("LOUPE_FAISS_GPU", "auto") == "0":
        return 0
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0

Fetch = Callable[[list[str]], np.ndarray]  # item ids -> their whole stored vectors


class VectorIndex:
    """A FAISS index plus, for each of its positions, the item's id, path, kind, timestamp."""

    def __init__(self, index: faiss.Index, rows: pa.Table, info: IndexInfo,
                 alive: np.ndarray | None = None, fetch: Fetch | None = None,
                 local: PositionVectors | None = None):
        self.index = index
        self.info = info
        # What the candidates of an index of codes (PQ, fp16) are re-scored with: whole
        # vectors by position from files beside it, else by item id from the store.
        self.fetch = fetch
        self.local = local if local is not None and len(local) == index.ntotal else None
        self.rows = rows
        # False: the slot's row is gone or was replaced (never returned); None: all live
        self.alive = None if alive is None or alive.all() else alive
        self.ids = np.asarray(rows["id"].to_pylist(), dtype=object)
        self.paths = np.asarray(rows["path"].to_pylist(), dtype=object)
        self.kinds = np.asarray(rows["kind"].to_pylist(), dtype=object)
        ts = rows["timestamp"].to_pylist()
        self.timestamps = np.asarray([np.nan if t is None else t for t in ts], dtype=np.float64)
        ends = rows["end"].to_pylist() if "end" in rows.column_names else [None] * len(ts)
        self.ends = np.asarray([np.nan if t is None else t for t in ends], dtype=np.float64)
        mt = rows["mtime_ns"].to_pylist() if "mtime_ns" in rows.column_names else []
        # seconds since the epoch of each item's file (NaN: unknown, e.g. an old saved index)
        self.mtimes = (np.asarray([np.nan if t is None else t / 1e9 for t in mt], np.float64)
                       if mt else np.full(len(ts), np.nan))
        self._masks: dict[tuple, np.ndarray | None] = {}
        self._gpu: faiss.Index | None | bool = None  # copy on the GPUs (False: none)

    @property
    def codes(self) -> bool:
        """An exact index of fp16 codes, whose candidates are re-scored exactly."""
        return self.info.kind == EXACT_KIND

    def gpu_index(self) -> faiss.Index | None:
        """The index copied to every GPU (faiss-gpu) for unfiltered searches, made on
        first use; None without GPUs or when FAISS cannot place this kind there. An
        exact index goes there as whole vectors (a flat index: no re-scoring)."""
        if not len(self) or not gpu_count():
            return None
        if self._gpu is None:
            try:
                src = self.index
                if self.codes:
                    src = faiss.IndexFlatIP(self.index.d)
                    src.add(self.vectors(np.arange(len(self))))
                self._gpu = faiss.index_cpu_to_all_gpus(src)
            except (RuntimeError, AttributeError):
                self._gpu = False  # e.g. an HNSW coarse quantizer: stays on the CPU
        return self._gpu or None

    def __len__(self) -> int:
        return self.index.ntotal

    def mask(self, kind: str | None = None, folder: str | None = None,
             since: float | None = None, until: float | None = None) -> np.ndarray | None:
        """Boolean mask of positions passing the filters (None when there are none).

        ``since`` / ``until``: the file's modification time (seconds since the epoch) is
        at or after ``since`` and before ``until``. Masks are cached: the index object
        belongs to one store version.
        """
        key = (kind, os.path.abspath(folder) if folder else None, since, until)
        if key not in self._masks:
            if len(self._masks) >= 64:
                self._masks.clear()
            m = self._compute_mask(*key)
            if self.alive is not None:
                m = self.alive if m is None else (m & self.alive)
            self._masks[key] = m
        return self._masks[key]

    def _compute_mask(self, kind: str | None, folder: str | None, since: float | None,
                      until: float | None) -> np.ndarray | None:
        m = None
        if kind:
            m = self.kinds == kind
        with np.errstate(invalid="ignore"):  # NaN (unknown date) passes no date filter
            for ok in ((self.mtimes >= since) if since is not None else None,
                       (self.mtimes < until) if until is not None else None):
                if ok is not None:
                    m = ok if m is None else (m & ok)
        if folder:
            prefix = folder.rstrip(os.sep) + os.sep
            paths = self.rows["path"]
            inside = pc.or_(pc.starts_with(paths, prefix), pc.equal(paths, folder))
            f = inside.to_numpy(zero_copy_only=False).astype(bool)
            m = f if m is None else (m & f)
        return m

    def vectors(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """The stored vectors at ``positions``, as an (n, d) float32 array (a copy);
        whole vectors from the store for a PQ index."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n, d = len(self), self.index.d
        if isinstance(self.index, faiss.IndexFlat):
            xb = faiss.rev_swig_ptr(self.index.get_xb(), n * d).reshape(n, d)
            return np.array(xb[pos], dtype=np.float32)
        whole = self.info.rerank or self.codes
        if whole and self.local is not None:
            return self.local.take(pos)
        if whole and self.fetch is not None:
            return np.asarray(self.fetch(self.ids[pos].tolist()), np.float32).reshape(-1, d)
        if not len(pos):
            return np.zeros((0, d), np.float32)
        return np.asarray(self.index.reconstruct_batch(pos), np.float32).reshape(-1, d)

    def search(self, queries: np.ndarray, k: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, positions) per query; positions are -1 past the last match.

        Exact for a ``Flat`` index. An IVF index probes its tuned lists, widened by the
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
        if mask is None:
            mask = self.alive
        exact = isinstance(self.index, faiss.IndexFlat)
        gpu = self.gpu_index() if (mask is None or mask is self.alive) else None
        if gpu is not None:
            dead = 0 if self.alive is None else len(self.alive) - int(self.alive.sum())
            depth = min(n, depth_for(k, self.info.rerank) + dead)
            if depth <= GPU_MAX_K:
                return self._search_gpu(gpu, q, k, depth)
        if self.codes:
            return self._search_codes(q, k, mask)
        if mask is None and len(q) <= 4 and exact:
            return self._few_queries_flat(q, k)
        if exact:
            if mask is None:
                return self.index.search(q, k)
            with _selector(mask) as sel:
                return self.index.search(q, k, params=faiss.SearchParameters(sel=sel))
        if mask is not None:
            selected = np.flatnonzero(mask)
            if len(selected) <= FILTER_EXACT_LIMIT:
                return self._score_exactly(q, selected, k)
        depth = min(n, depth_for(k, self.info.rerank))
        scores, pos = self._probe(q, depth, mask)
        if self.rescores:
            return rescore(q, pos, k, self.vectors)
        return scores[:, :k], pos[:, :k]

    @property
    def rescores(self) -> bool:
        """Candidates are re-scored with whole vectors (inverted lists of PQ or fp16
        codes, when the vectors are at hand)."""
        return bool(self.info.rerank) and (self.local is not None or self.fetch is not None)

    def _search_gpu(self, gpu: faiss.Index, q: np.ndarray, k: int,
                    depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Search the GPU copy ``depth`` deep (k, plus the re-scoring depth of a PQ
        index, plus the number of dead slots: so k live ones are among them, exactly as
        a filtered search would find them), drop dead slots, re-score PQ candidates."""
        scores, pos = gpu.search(q, depth)
        if self.alive is not None:
            dead = (pos >= 0) & ~self.alive[np.maximum(pos, 0)]
            scores = np.where(dead, -np.inf, scores).astype(np.float32)
            pos = np.where(dead, -1, pos)
            order = np.argsort(pos < 0, axis=1, kind="stable")  # live first, in rank order
            scores, pos = np.take_along_axis(scores, order, 1), np.take_along_axis(pos, order, 1)
        if self.rescores:
            return rescore(q, pos, k, self.vectors)
        return scores[:, :k], pos[:, :k]

    def _search_codes(self, q: np.ndarray, k: int,
                      mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k from fp16 codes. A code's score is within ``delta`` = u |q| |x| of
        the exact one (u: fp16's rounding error; plus float32 summation), so the k-th
        best code score T bounds the exact k-th best from below by T - delta, and no
        vector scoring below T - 2 delta on its code can be in the exact top k. The scan
        deepens (x4) until the last candidate of every query is below that, then the
        candidates are re-scored with whole vectors."""
        n, d = len(self), self.index.d
        qn = np.linalg.norm(q, axis=1)
        delta = (FP16_UNIT + 2 * d * 2.0 ** -24) * qn * self.info.max_norm + 1e-6 * qn
        depth = min(n, max(4 * k, 64))
        while True:
            if mask is None:
                scores, pos = self.index.search(q, depth)
            else:
                with _selector(mask) as sel:
                    scores, pos = self.index.search(q, depth,
                                                    params=faiss.SearchParameters(sel=sel))
            kth = scores[:, min(k, depth) - 1]
            done = (pos[:, -1] < 0) | (scores[:, -1] < kth - 2 * delta)
            if depth >= n or done.all():
                return rescore(q, pos, k, self.vectors)
            depth = min(n, depth * 4)

    def _probe(self, q: np.ndarray, k: int,
               mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """IVF search for k per query, through ``mask``: nprobe scaled by 1 / the share
        the mask keeps, then raised fourfold while a query has fewer than it could."""
        ivf = faiss.extract_index_ivf(self.index)
        if mask is None:
            return self.index.search(q, k)
        kept = int(mask.sum())
        want = min(k, kept)
        # as many kept candidates as an unfiltered probe sees (a few dead slots: the same)
        nprobe = min(ivf.nlist, max(ivf.nprobe, round(ivf.nprobe * len(mask) / max(kept, 1))))
        with _selector(mask) as sel:
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

    def _score_exactly(self, q: np.ndarray, selected: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among the ``selected`` positions (whole vectors)."""
        vecs = self.vectors(selected)
        cand = np.broadcast_to(np.arange(len(selected)), (len(q), len(selected)))
        scores, local = rescore(q, cand, k, lambda p: vecs[p])
        pos = np.where(local >= 0, selected[np.maximum(local, 0)], -1)
        return scores, pos

    def _few_queries_flat(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search for a handful of queries with one BLAS matrix product over the
        flat index's own storage (zero copy): FAISS's per-vector loop for nq < 20 is
        about 2x slower than this on CPU."""
        n, d = len(self), self.index.d
        xb = faiss.rev_swig_ptr(self.index.get_xb(), n * d).reshape(n, d)
        sims = q @ xb.T  # (nq, n)
        if k < n:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(n), (len(q), 1))
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        pos = np.take_along_axis(part, order, axis=1).astype(np.int64)
        return np.take_along_axis(top, order, axis=1).astype(np.float32), pos


class _selector:
    """A FAISS selector of the positions where ``mask`` is true, valid inside ``with``
    (the bitmap it points into is kept alive until then)."""

    def __init__(self, mask: np.ndarray):
        self.bits = np.packbits(mask.astype(bool), bitorder="little")
        self.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self.bits))

    def __enter__(self) -> faiss.IDSelector:
        return self.sel

    def __exit__(self, *exc) -> None:
        del self.sel, self.bits


def _paths(store: Store, column: str) -> tuple[str, str]:
    d = os.path.join(store.dir, "faiss")
    return d, os.path.join(d, f"{column}.json")


ROW_COLUMNS = ["id", "path", "kind", "timestamp", "end", "mtime_ns", "indexed_at"]
REBUILD_DEAD_SHARE = 0.25  # rebuild once this share of the slots is dead
REFRESH_LIMIT = 50_000  # more new or changed rows than this: rebuild instead


def build_index(store: Store, column: str, memory_budget: int | None = None,
                flat_limit: int | None = None) -> IndexInfo:
    """Build the column's index from the store's current version (the kind planned for
    its size, tuned) and save it."""
    version, table = store.read_vectors(column)
    vidx = _build(column, version, table, memory_budget, flat_limit, _fetcher(store, column))
    _save(store, vidx)
    return vidx.info


def _with_row_columns(table: pa.Table) -> pa.Table:
    for name, typ in (("path", pa.string()), ("kind", pa.string()),
                      ("timestamp", pa.float64()), ("end", pa.float64()),
                      ("mtime_ns", pa.int64()), ("indexed_at", pa.float64())):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
    return table


def _vectors_of(table: pa.Table, column: str) -> np.ndarray:
    dim = int(table.schema.field(column).type.list_size)
    flat = table[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(table.num_rows, dim), dtype=np.float32)


def _fetcher(store: Store, column: str) -> Fetch:
    """Whole vectors of ``column`` by item id, from the store."""
    return lambda ids: store.vectors_of(ids, column)


def _build(column: str, version: int, table: pa.Table, memory_budget: int | None = None,
           flat_limit: int | None = None, fetch: Fetch | None = None) -> VectorIndex:
    dim = int(table.schema.field(column).type.list_size) if column in table.schema.names else 0
    if table.num_rows and column in table.column_names:
        table = table.filter(table[column].is_valid())
        vecs = _vectors_of(table, column)
    else:
        vecs = np.zeros((0, max(dim, 1)), np.float32)
    table = _with_row_columns(table)
    plan = plan_index(len(vecs), vecs.shape[1], memory_budget, flat_limit)
    index = build(plan, vecs)
    nprobe, recall, depth = tune_rerank(index, plan, vecs)
    _direct_map(index)
    rows = table.select(ROW_COLUMNS)
    max_norm = float(np.linalg.norm(vecs, axis=1).max()) if len(vecs) else 0.0
    info = IndexInfo(column, version, len(vecs), plan.factory, nprobe, recall, 0, plan.reason,
                     depth, max_norm)
    whole = depth or plan.factory == EXACT_KIND
    local = PositionVectors(vecs.shape[1], pending=vecs) if whole else None
    return VectorIndex(index, rows, info, fetch=fetch, local=local)


def _direct_map(index: faiss.Index) -> None:
    """Let an IVF index give back a stored vector by position (search-time dedupe)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and not ivf.direct_map.type:
        ivf.make_direct_map()


def refresh(vidx: VectorIndex, store: Store) -> VectorIndex | None:
    """The index brought up to the store's current version without a rebuild (new and
    re-written rows added, gone and replaced ones marked dead), or None when a full
    rebuild is due (too many dead slots, a large change, or another planned kind)."""
    column = vidx.info.column
    version, current = store.read_ids(column)
    if version == vidx.info.version:
        return vidx
    if vidx.codes and vidx.local is None:
        return None  # fp16 codes without their whole vectors cannot be re-scored
    cur_ids = current["id"].to_pylist()
    cur_at = current["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    alive = np.ones(len(vidx), bool) if vidx.alive is None else vidx.alive.copy()
    old_at = vidx.rows["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    slot = {i: p for p, i in enumerate(vidx.ids.tolist()) if alive[p]}
    fresh: list[str] = []
    for item, at in zip(cur_ids, cur_at, strict=True):
        p = slot.pop(item, None)
        if p is None:
            fresh.append(item)
        elif not (at == old_at[p] or (np.isnan(at) and np.isnan(old_at[p]))):
            alive[p] = False  # re-written: its new vector is added below
            fresh.append(item)
    for p in slot.values():  # rows the store no longer has
        alive[p] = False
    live = int(alive.sum()) + len(fresh)
    dim = vidx.index.d
    plan = plan_index(live, dim)
    dead = len(alive) - int(alive.sum())
    if (len(fresh) > REFRESH_LIMIT or dead > REBUILD_DEAD_SHARE * max(len(alive), 1)
            or plan.factory != vidx.info.kind):
        return None
    rows = vidx.rows
    max_norm = vidx.info.max_norm
    if fresh:
        got = store.get_items(fresh, ROW_COLUMNS + [column])
        new = [got[i] for i in fresh if i in got and got[i].get(column) is not None]
        if new:
            vecs = np.asarray([r[column] for r in new], np.float32)
            max_norm = max(max_norm, float(np.linalg.norm(vecs, axis=1).max()))
            index = _writable(vidx.index)
            local = vidx.local.appended(vecs) if vidx.local is not None else None
            index.add(np.ascontiguousarray(vecs))
            vidx = VectorIndex(index, vidx.rows, vidx.info, vidx.alive, vidx.fetch, local)
            add = pa.Table.from_pylist([{c: r.get(c) for c in ROW_COLUMNS} for r in new],
                                       schema=rows.schema)
            rows = pa.concat_tables([rows, add]).combine_chunks()
            alive = np.concatenate([alive, np.ones(len(new), bool)])
    info = IndexInfo(column, version, int(alive.sum()), vidx.info.kind, vidx.info.nprobe,
                     vidx.info.recall, len(alive) - int(alive.sum()), vidx.info.reason,
                     vidx.info.rerank, max_norm)
    return VectorIndex(vidx.index, rows, info, alive, vidx.fetch or _fetcher(store, column),
                       vidx.local)


def _writable(index: faiss.Index) -> faiss.Index:
    """``index`` with its inverted lists in memory (copied in place when they were
    memory-mapped, which is read-only), so new vectors can be added."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or not isinstance(faiss.downcast_InvertedLists(ivf.invlists),
                                     faiss.OnDiskInvertedLists):
        return index
    src = faiss.downcast_InvertedLists(ivf.invlists)
    dst = faiss.ArrayInvertedLists(src.nlist, src.code_size)
    for lst in range(src.nlist):
        size = src.list_size(lst)
        if size:
            dst.add_entries(lst, size, src.get_ids(lst), src.get_codes(lst))
    ivf.replace_invlists(dst, True)
    dst.this.disown()  # the index owns the lists now
    return index


def _save(store: Store, vidx: VectorIndex) -> None:
    d, meta_path = _paths(store, vidx.info.column)
    os.makedirs(d, exist_ok=True)
    stem = f"{vidx.info.column}.v{vidx.info.version}"
    extra: dict = {}
    if vidx.local is not None:  # new rows' vectors first: the files the metadata names
        vidx.local = vidx.local.save(d, stem)
        extra["vector_files"] = vidx.local.segments
    faiss.write_index(vidx.index, os.path.join(d, stem + ".faiss.tmp"))
    feather.write_feather(vidx.rows, os.path.join(d, stem + ".rows.tmp"))
    alive = np.ones(len(vidx), bool) if vidx.alive is None else vidx.alive
    with open(os.path.join(d, stem + ".alive.tmp"), "wb") as f:
        np.save(f, alive)
    for ext in (".faiss", ".rows", ".alive"):
        os.replace(os.path.join(d, stem + ext + ".tmp"), os.path.join(d, stem + ext))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({**vidx.info.__dict__, "stem": stem, **extra}, f)
    os.replace(tmp, meta_path)  # the pointer flips last: readers see old or new, whole
    keep = {name for name, _ in extra.get("vector_files", [])}
    for name in os.listdir(d):  # drop files of older versions
        if (name.startswith(vidx.info.column + ".v") and not name.startswith(stem + ".")
                and name not in keep):
            try:
                os.remove(os.path.join(d, name))
            except OSError:
                pass


def _info(m: dict) -> IndexInfo:
    return IndexInfo(**{k: m[k] for k in IndexInfo.__dataclass_fields__ if k in m})


def saved_info(store: Store, column: str) -> IndexInfo | None:
    """What the saved index of ``column`` was built from, or None if there is none."""
    _, meta_path = _paths(store, column)
    try:
        with open(meta_path) as f:
            return _info(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _load_saved(store: Store, column: str) -> VectorIndex | None:
    d, meta_path = _paths(store, column)
    try:
        with open(meta_path) as f:
            m = json.load(f)
        path = os.path.join(d, m["stem"] + ".faiss")
        exact = m["kind"] in ("Flat", EXACT_KIND)
        # IVF lists are memory-mapped: a big index costs page cache, not heap
        index = faiss.read_index(path) if exact else faiss.read_index(path, faiss.IO_FLAG_MMAP)
        rows = feather.read_table(os.path.join(d, m["stem"] + ".rows"))
        rows = _with_row_columns(rows).select(ROW_COLUMNS)  # older saved indexes
        try:
            alive = np.load(os.path.join(d, m["stem"] + ".alive"))
        except OSError:
            alive = None
        if not exact:
            set_search_params(index, m.get("nprobe") or 1)
            _direct_map(index)
        if index.ntotal != rows.num_rows or (alive is not None and len(alive) != rows.num_rows):
            return None
        local = (PositionVectors.open(d, m["vector_files"], index.d)
                 if m.get("vector_files") else None)
        vidx = VectorIndex(index, rows, _info(m), alive, _fetcher(store, column), local)
        return None if vidx.codes and vidx.local is None else vidx  # codes alone: rebuilt
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None  # missing or damaged: rebuilt by the caller


def load_index(store: Store, column: str, previous: VectorIndex | None = None) -> VectorIndex:
    """The column's index at the store's current version: ``previous`` (or the saved
    one) refreshed when the store has moved on, else rebuilt from the store; saved when
    the directory is writable."""
    current = store.version()
    vidx = previous if previous is not None and previous.info.column == column else None
    if vidx is None:
        vidx = _load_saved(store, column)
    if vidx is not None and vidx.info.version == current:
        return vidx
    out = refresh(vidx, store) if vidx is not None else None
    if out is None:
        version, table = store.read_vectors(column)
        out = _build(column, version, table, fetch=_fetcher(store, column))
    try:
        _save(store, out)
    except OSError:
        pass  # a read-only store can still be searched
    return out
