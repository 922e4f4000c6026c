"""Indexes saved beside the store (``DB/faiss/``), loaded, refreshed or rebuilt on demand.

An index file is tagged with the store version it reflects. When the store has moved on
(an indexing run committed, another process wrote), the index is brought up to date
without a full rebuild (search/ann/refresh.py), or rebuilt when that is due: the kind is
the one planned for its size (exact up to 1M vectors, tuned IVF families beyond: see
search/ann/plan.py) unless a plan is given.

Per column, ``COLUMN.json`` names the current files ``COLUMN.vN.faiss`` (the FAISS
index), ``.rows`` (the row catalog, Feather), ``.alive`` (a NumPy bool array) and, for an
index of codes, the ``.vecM`` segments of its whole vectors. The JSON is replaced last,
so a reader sees the old files or the new ones, whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import uuid

import faiss
import numpy as np
import pyarrow.feather as feather

from loupe.search.ann.catalog import (
    ROW_COLUMNS,
    RowCatalog,
    catalog_with_captures,
    with_row_columns,
)
from loupe.search.ann.index import (
    IndexInfo,
    VectorIndex,
    build_vector_index,
    direct_map,
    store_fetcher,
)
from loupe.search.ann.lance_index import build_lance_index, load_lance_index, save_lance
from loupe.search.ann.lance_plan import LANCE, choose_backend, requested_backend
from loupe.search.ann.plan import EXACT_KIND, IndexPlan, set_search_params
from loupe.search.ann.position_vectors import PositionVectors
from loupe.search.ann.refresh import refresh, writable
from loupe.search.store import Store


def index_paths(store: Store, column: str) -> tuple[str, str]:
    """(directory of the saved indexes, path of ``column``'s metadata JSON)."""
    d = os.path.join(store.dir, "faiss")
    return d, os.path.join(d, f"{column}.json")


def build_index(store: Store, column: str, memory_budget: int | None = None,
                flat_limit: int | None = None, plan: IndexPlan | None = None) -> IndexInfo:
    """Build the column's index from the store's current version and save it: the kind
    ``plan`` says, default the one planned for its size (within ``memory_budget`` and
    ``flat_limit``), tuned. A Lance plan trains LanceDB's index in the table anew."""
    if plan is not None and plan.backend == LANCE:
        lidx = build_lance_index(store, column, plan, retrain=True)
        if lidx is not None:
            save_lance(store, lidx)
            return lidx.info
        plan = None
    rev = store.capture_rev()  # before the rows: a later count means a later read
    version, table = store.read_vectors(column)
    vidx = build_vector_index(column, version, table, memory_budget, flat_limit,
                              store_fetcher(store, column), plan)
    vidx.info.capture_rev = rev
    save_index(store, vidx)
    return vidx.info


def with_captures(vidx: VectorIndex, store: Store, rev: int) -> VectorIndex:
    """``vidx`` with its catalog's capture columns read again from the store (captures
    were written into existing rows, whose vectors did not change), as of ``rev``."""
    cat = catalog_with_captures(vidx.catalog, store)
    if cat is vidx.catalog:
        return vidx
    info = dataclasses.replace(vidx.info, capture_rev=rev)
    return VectorIndex(vidx.index, cat, info, vidx.fetch, vidx.local)


def save_index(store: Store, vidx: VectorIndex) -> None:
    """Write ``vidx`` beside the store as its column's current index and drop the files
    of older versions. ``vidx.local`` becomes the saved (memory-mapped) vectors."""
    d, meta_path = index_paths(store, vidx.info.column)
    os.makedirs(d, exist_ok=True)
    stem = f"{vidx.info.column}.v{vidx.info.version}"
    extra: dict = {}
    if vidx.local is not None:  # new rows' vectors first: the files the metadata names
        vidx.local = vidx.local.save(d, stem)
        extra["vector_files"] = vidx.local.segments
    # Memory-mapped lists are written as a reference to the file they map (an older
    # version's, removed below): copied into memory first, the file holds them whole.
    # Temp names of this process's own (several processes may save the same version at
    # once: a reader refreshing beside a writer), each renamed over its final name.
    tmp = f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    faiss.write_index(writable(vidx.index), os.path.join(d, stem + ".faiss" + tmp))
    feather.write_feather(vidx.catalog.rows, os.path.join(d, stem + ".rows" + tmp))
    alive = np.ones(len(vidx), bool) if vidx.catalog.alive is None else vidx.catalog.alive
    with open(os.path.join(d, stem + ".alive" + tmp), "wb") as f:
        np.save(f, alive)
    for ext in (".faiss", ".rows", ".alive"):
        os.replace(os.path.join(d, stem + ext + tmp), os.path.join(d, stem + ext))
    fd, meta_tmp = tempfile.mkstemp(dir=d, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({**vidx.info.__dict__, "stem": stem, **extra}, f)
    os.replace(meta_tmp, meta_path)  # the pointer flips last: readers see old or new, whole
    keep = {name for name, _ in extra.get("vector_files", [])}
    for name in os.listdir(d):  # drop files of older versions
        if (name.startswith(vidx.info.column + ".v") and not name.startswith(stem + ".")
                and name not in keep and not _in_flight(os.path.join(d, name))):
            try:
                os.remove(os.path.join(d, name))
            except OSError:
                pass


def _in_flight(path: str) -> bool:
    """A temp file another process may still be writing (one left by a dead process an
    hour ago is not)."""
    try:
        return path.endswith(".tmp") and time.time() - os.path.getmtime(path) < 3600
    except OSError:
        return False


def info_from(meta: dict) -> IndexInfo:
    """The :class:`IndexInfo` of a saved index's metadata (other keys ignored)."""
    return IndexInfo(**{k: meta[k] for k in IndexInfo.__dataclass_fields__ if k in meta})


def saved_info(store: Store, column: str) -> IndexInfo | None:
    """What the saved index of ``column`` was built from, or None if there is none."""
    _, meta_path = index_paths(store, column)
    try:
        with open(meta_path) as f:
            return info_from(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_saved(store: Store, column: str) -> VectorIndex | None:
    """The saved index of ``column`` as it was saved (whatever the store's version now),
    or None when it is missing, damaged, or an exact index without its vector files."""
    d, meta_path = index_paths(store, column)
    try:
        with open(meta_path) as f:
            m = json.load(f)
        path = os.path.join(d, m["stem"] + ".faiss")
        exact = m["kind"] in ("Flat", EXACT_KIND)
        # IVF lists are memory-mapped: a big index costs page cache, not heap
        index = faiss.read_index(path) if exact else faiss.read_index(path, faiss.IO_FLAG_MMAP)
        rows = feather.read_table(os.path.join(d, m["stem"] + ".rows"))
        rows = with_row_columns(rows).select(ROW_COLUMNS)  # older saved indexes
        try:
            alive = np.load(os.path.join(d, m["stem"] + ".alive"))
        except OSError:
            alive = None
        if not exact:
            set_search_params(index, m.get("nprobe") or 1)
            direct_map(index)
        if index.ntotal != rows.num_rows or (alive is not None and len(alive) != rows.num_rows):
            return None
        local = (PositionVectors.open(d, m["vector_files"], index.d)
                 if m.get("vector_files") else None)
        vidx = VectorIndex(index, RowCatalog(rows, alive), info_from(m),
                           store_fetcher(store, column), local)
        return None if vidx.codes and vidx.local is None else vidx  # codes alone: rebuilt
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None  # missing or damaged: rebuilt by the caller


def backend_for(store: Store, column: str, previous=None,
                plan: IndexPlan | None = None) -> tuple[str, str]:
    """("faiss" or "lance", why) for the column's index: the plan's, else ``$LOUPE_ANN``,
    else as :func:`~loupe.search.ann.lance_plan.choose_backend` says for where the tables
    are and how many vectors there are (the table's row count: no rows read). A shard
    replica (loupe.search.shards) builds FAISS over its own rows: LanceDB's index spans
    the whole table."""
    if plan is not None:
        return plan.backend, "planned"
    if store.meta.shard is not None:  # its own rows only: an index of its own, in memory
        return "faiss", f"shard {store.meta.shard[0]}/{store.meta.shard[1]} of the index"
    if requested_backend() == "auto":
        if previous is not None:
            n = previous.info.count
        else:
            t = store.items(create=False)
            n = t.count_rows() if t is not None else 0
        return choose_backend(store.tables_uri, n, store.meta.encoders[column].dim)
    return choose_backend(store.tables_uri, 0, 0)


def load_index(store: Store, column: str, previous: VectorIndex | None = None,
               plan: IndexPlan | None = None) -> VectorIndex:
    """The column's index at the store's current version: ``previous`` (or the saved
    one) refreshed when the store has moved on, else rebuilt from the store (as ``plan``
    says, default as planned for its size); saved when the directory is writable.

    The backend is the plan's, else the one :func:`backend_for` picks: FAISS (this
    module) or LanceDB's index in the table (search/ann/lance_index.py); a table
    without vectors gets FAISS's empty exact index either way."""
    backend, why = backend_for(store, column, previous, plan)
    if backend == LANCE:
        out = load_lance_index(store, column, previous, plan, why)
        if out is not None:
            return out  # type: ignore[return-value]
        plan, previous = None, None  # no vectors: the empty exact index
    elif not isinstance(previous, VectorIndex):
        previous = None
    rev = store.capture_rev()  # read before the rows (see with_captures)
    current = store.version()
    vidx = previous if previous is not None and previous.info.column == column else None
    if vidx is None:
        vidx = load_saved(store, column)
    if vidx is not None and (vidx.info.version, vidx.info.capture_rev) == (current, rev):
        return vidx
    out = refresh(vidx, store, plan) if vidx is not None else None
    if out is None:
        version, table = store.read_vectors(column)
        out = build_vector_index(column, version, table, fetch=store_fetcher(store, column),
                                 plan=plan)
        out.info.capture_rev = rev
    elif out.info.capture_rev != rev:
        out = with_captures(out, store, rev)
    try:
        save_index(store, out)
    except OSError:
        pass  # a read-only store can still be searched
    return out
