"""Bringing an index up to the store's current version without a full rebuild.

Rows that are new or were re-written (their ``indexed_at`` changed) are added, and the
slots of rows that are gone or were replaced are marked dead, so searches never return
them. A full rebuild is due instead when dead slots pass ``REBUILD_DEAD_SHARE`` of the
index, a change is large, or the planned index type changes with size.
"""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa

from loupe.search.ann.catalog import ROW_COLUMNS, RowCatalog
from loupe.search.ann.index import IndexInfo, VectorIndex, store_fetcher
from loupe.search.ann.plan import IndexPlan, plan_index
from loupe.search.store import Store

REBUILD_DEAD_SHARE = 0.25  # rebuild once this share of the slots is dead
REFRESH_LIMIT = 50_000  # more new or changed rows than this: rebuild instead


def refresh(vidx: VectorIndex, store: Store, plan: IndexPlan | None = None) -> VectorIndex | None:
    """The index brought up to the store's current version without a rebuild (new and
    re-written rows added, gone and replaced ones marked dead), or None when a full
    rebuild is due (too many dead slots, a large change, or another planned kind than
    ``plan``, default the one :func:`plan_index` gives for the live rows)."""
    column = vidx.info.column
    version, current = store.read_ids(column)
    if version == vidx.info.version:
        return vidx
    if vidx.codes and vidx.local is None:
        return None  # fp16 codes without their whole vectors cannot be re-scored
    cat = vidx.catalog
    cur_ids = current["id"].to_pylist()
    cur_at = current["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    alive = cat.live()
    old_at = cat.rows["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    slot = {i: p for p, i in enumerate(cat.ids.tolist()) if alive[p]}
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
    if plan is None:
        plan = plan_index(live, vidx.index.d)
    dead = len(alive) - int(alive.sum())
    if (len(fresh) > REFRESH_LIMIT or dead > REBUILD_DEAD_SHARE * max(len(alive), 1)
            or plan.factory != vidx.info.kind):
        return None
    index, rows, local = vidx.index, cat.rows, vidx.local
    max_norm = vidx.info.max_norm
    if fresh:
        got = store.get_items(fresh, ROW_COLUMNS + [column])
        new = [got[i] for i in fresh if i in got and got[i].get(column) is not None]
        if new:
            vecs = np.asarray([r[column] for r in new], np.float32)
            max_norm = max(max_norm, float(np.linalg.norm(vecs, axis=1).max()))
            index = writable(index)
            local = local.appended(vecs) if local is not None else None
            index.add(np.ascontiguousarray(vecs))
            add = pa.Table.from_pylist([{c: r.get(c) for c in ROW_COLUMNS} for r in new],
                                       schema=rows.schema)
            rows = pa.concat_tables([rows, add]).combine_chunks()
            alive = np.concatenate([alive, np.ones(len(new), bool)])
    old = vidx.info
    info = IndexInfo(column, version, int(alive.sum()), old.kind, old.nprobe, old.recall,
                     len(alive) - int(alive.sum()), old.reason, old.rerank, max_norm,
                     old.capture_rev)
    return VectorIndex(index, RowCatalog(rows, alive), info,
                       vidx.fetch or store_fetcher(store, column), local)


def writable(index: faiss.Index) -> faiss.Index:
    """``index`` with its inverted lists in memory (copied in place when they were
    memory-mapped, which is read-only), so new vectors can be added and the index
    written as one file."""
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
