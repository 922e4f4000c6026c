"""FAISS indexes derived from the store, persisted beside it, never out of step with it.

An index file is tagged with the store version it was built from; loading compares
that tag with the store's current version and rebuilds when they differ, so a run
killed after its last commit (or a concurrent writer) can never make search return
rows the store no longer has. Exact inner-product search (``IndexFlatIP``) for now.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from search.store import Store


@dataclass
class IndexInfo:
    """Where an index was built from."""

    column: str
    version: int  # store (items table) version it reflects
    count: int
    kind: str  # FAISS factory string


class VectorIndex:
    """A FAISS index plus, for each of its positions, the item's id, path, kind, timestamp."""

    def __init__(self, index: faiss.Index, rows: pa.Table, info: IndexInfo):
        self.index = index
        self.info = info
        self.rows = rows
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
            self._masks[key] = self._compute_mask(*key)
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
        """The stored vectors at ``positions``, as an (n, d) float32 array (a copy)."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n, d = len(self), self.index.d
        if isinstance(self.index, faiss.IndexFlat):
            xb = faiss.rev_swig_ptr(self.index.get_xb(), n * d).reshape(n, d)
            return np.array(xb[pos], dtype=np.float32)
        out = np.empty((len(pos), d), np.float32)
        for row, p in enumerate(pos.tolist()):
            out[row] = self.index.reconstruct(p)
        return out

    def search(self, queries: np.ndarray, k: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, positions) per query; positions are -1 past the last match."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        n = len(self)
        if n == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = max(1, min(k, n))
        if mask is None and len(q) <= 4 and isinstance(self.index, faiss.IndexFlat):
            return self._few_queries_flat(q, k)
        params = None
        if mask is not None:
            bits = np.packbits(mask.astype(bool), bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            params = faiss.SearchParameters(sel=sel)
            scores, pos = self.index.search(q, k, params=params)
            del bits  # kept alive until the search is done
            return scores, pos
        return self.index.search(q, k)

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


def _paths(store: Store, column: str) -> tuple[str, str]:
    d = os.path.join(store.dir, "faiss")
    return d, os.path.join(d, f"{column}.json")


def build_index(store: Store, column: str) -> IndexInfo:
    """Build the column's index from the store's current version and save it."""
    version, table = store.read_vectors(column)
    vidx = _build(column, version, table)
    _save(store, vidx)
    return vidx.info


def _build(column: str, version: int, table: pa.Table) -> VectorIndex:
    dim = int(table.schema.field(column).type.list_size) if column in table.schema.names else 0
    if table.num_rows and column in table.column_names:
        keep = table[column].is_valid()
        table = table.filter(keep)
        flat = table[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vecs = np.ascontiguousarray(flat.reshape(table.num_rows, dim), dtype=np.float32)
    else:
        for name, typ in (("path", pa.string()), ("kind", pa.string()),
                          ("timestamp", pa.float64()), ("end", pa.float64()),
                          ("mtime_ns", pa.int64())):
            if name not in table.column_names:
                table = table.append_column(name, pa.array([], typ))
        vecs = np.zeros((0, max(dim, 1)), np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    if len(vecs):
        index.add(vecs)
    rows = table.select(["id", "path", "kind", "timestamp", "end", "mtime_ns"])
    return VectorIndex(index, rows, IndexInfo(column, version, len(vecs), "Flat,IP"))


def _save(store: Store, vidx: VectorIndex) -> None:
    d, meta_path = _paths(store, vidx.info.column)
    os.makedirs(d, exist_ok=True)
    stem = f"{vidx.info.column}.v{vidx.info.version}"
    faiss.write_index(vidx.index, os.path.join(d, stem + ".faiss.tmp"))
    feather.write_feather(vidx.rows,
                          os.path.join(d, stem + ".rows.tmp"))
    os.replace(os.path.join(d, stem + ".faiss.tmp"), os.path.join(d, stem + ".faiss"))
    os.replace(os.path.join(d, stem + ".rows.tmp"), os.path.join(d, stem + ".rows"))
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({**vidx.info.__dict__, "stem": stem}, f)
    os.replace(tmp, meta_path)  # the pointer flips last: readers see old or new, whole
    for name in os.listdir(d):  # drop files of older versions
        if name.startswith(vidx.info.column + ".v") and not name.startswith(stem + "."):
            try:
                os.remove(os.path.join(d, name))
            except OSError:
                pass


def saved_info(store: Store, column: str) -> IndexInfo | None:
    """What the saved index of ``column`` was built from, or None if there is none."""
    _, meta_path = _paths(store, column)
    try:
        with open(meta_path) as f:
            m = json.load(f)
        return IndexInfo(m["column"], m["version"], m["count"], m["kind"])
    except (OSError, ValueError, KeyError):
        return None


def load_index(store: Store, column: str) -> VectorIndex:
    """The column's index at the store's current version: loaded if saved and fresh,
    else rebuilt from the store (and saved when the directory is writable)."""
    current = store.version()
    d, meta_path = _paths(store, column)
    try:
        with open(meta_path) as f:
            m = json.load(f)
        if m["version"] == current:
            index = faiss.read_index(os.path.join(d, m["stem"] + ".faiss"))
            rows = feather.read_table(os.path.join(d, m["stem"] + ".rows"))
            return VectorIndex(index, rows, IndexInfo(m["column"], m["version"], m["count"],
                                                      m["kind"]))
    except (OSError, ValueError, KeyError, RuntimeError):
        pass  # missing, stale or damaged: rebuild below
    version, table = store.read_vectors(column)
    vidx = _build(column, version, table)
    try:
        _save(store, vidx)
    except OSError:
        pass  # a read-only store can still be searched
    return vidx
