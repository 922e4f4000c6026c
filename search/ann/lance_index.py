"""LanceDB's own vector index as an index backend: the index lives in the items table.

A :class:`LanceVectorIndex` answers what a FAISS :class:`~loupe.search.ann.index.VectorIndex`
answers (``search(queries, k, mask)``, ``catalog``, ``vectors``, ``info``, ``len``), with the
same :class:`RowCatalog` of positions, from the table itself: the table version it was
built from is pinned (a reader sees one consistent snapshot while writers commit), a hit's
Lance row id is mapped to its catalog position, and the whole vectors it re-scores come
from the table (``refine_factor``). Nothing of the index lives in this process but the
catalog: the table can be on object storage, every replica reads the same index there.

**Filters.** The engine hands a boolean mask over catalog positions. A mask the catalog
made from kind / folder / dates carries its SQL (:meth:`RowCatalog.where_of`), given to
LanceDB's prefilter as is. Any other mask (capture filters, tags, text shown, masks the
caller combined) keeping up to ``limit`` rows is scored exactly (those rows' whole vectors,
read by row id); up to ``ROWID_IN_LIMIT`` rows, it is a ``_rowid IN (...)`` prefilter;
beyond, the search runs unfiltered, deeper and wider by the share the mask keeps, and
the mask is applied to its hits (deepened until k pass, else scored exactly). Filtered
searches probe the tuned partitions divided by the share the filter keeps (FAISS's
widening: as many passing rows scored as without a filter), and more if needed until k
rows passing it are found (no ``maximum_nprobes``). The mask is applied to every answer
as well, so a masked position is never returned whatever the SQL says.

**Kept in step.** Rows added since the index was trained are searched flat by LanceDB
(unindexed fragments), so they are found at once; once they pass ``OPTIMIZE_SHARE`` of the
indexed rows (and ``OPTIMIZE_MIN`` rows) the index is brought up to date in place
(``optimize_indices``: new rows assigned to the trained partitions, no retraining;
``Store.optimize`` after an indexing run does the same; either may split oversized
partitions and join undersized ones, and the search is then tuned again). The index is
retrained only when the plan says: another kind, or partitions planned for the size
grown to twice the index's (LanceDB's splitting has not kept up with the growth). The
catalog is refreshed like the FAISS one (search/ann/refresh.py): new and re-written rows
appended, gone ones marked dead.

Saved beside the store as the FAISS indexes are (``DB/faiss/COLUMN.json`` with
``"backend": "lance"``, ``.rows``, ``.alive``, ``.rowids``): the catalog and the tuning,
not the index. The tuning is also written into the table's config (``loupe.ann.COLUMN``:
kind, partitions, nprobes, refine factor, recall) by whoever tunes first, so a replica
with an empty folder of its own uses the index and its tuning as they are: it reads the
catalog's columns, and trains, tunes and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from loupe.search.ann.catalog import (
    ROW_COLUMNS,
    RowCatalog,
    catalog_with_captures,
    with_row_columns,
)
from loupe.search.ann.index import IndexInfo
from loupe.search.ann.lance_plan import (
    HNSW_EF,
    LANCE,
    LANCE_FLAT,
    LANCE_HNSW_SQ,
    LANCE_TUNE_QUERIES,
    StreamedTruth,
    held_out,
    plan_lance,
    tune_lance,
)
from loupe.search.ann.plan import TUNE_K, IndexPlan
from loupe.search.ann.strategies import FILTER_EXACT_LIMIT, Hits
from loupe.search.store import Store

# Index statistics without the centroids (LanceDB's coming default; also silences its
# warning): the backend reads them on every refresh.
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

ROWID_IN_LIMIT = 20_000  # rows a mask without SQL may keep to be sent as `_rowid IN`
OPTIMIZE_SHARE = 0.05  # unindexed rows past this share of the indexed: optimize_indices
OPTIMIZE_MIN = 1_000
REFRESH_LIMIT = 50_000  # more new or changed rows: the catalog is read again whole
REBUILD_DEAD_SHARE = 0.25  # dead catalog slots past this share: the catalog read again
STREAM_ROWS = 65_536  # rows per batch when streaming the column (tuning's exact search)
TRAIN_ITERATIONS = 20  # k-means iterations (LanceDB's default 50 buys little)


@dataclasses.dataclass
class Pinned:
    """The items table at one version, as a Lance dataset."""

    ds: object  # lance.LanceDataset
    column: str
    dim: int

    @classmethod
    def latest(cls, store: Store, column: str) -> Pinned | None:
        t = store.items(create=False)
        if t is None:
            return None
        t.checkout_latest()
        return cls(t.to_lance(), column, store.meta.encoders[column].dim)

    @property
    def version(self) -> int:
        return int(self.ds.version)

    def at(self, version: int) -> Pinned:
        return Pinned(self.ds.checkout_version(version), self.column, self.dim)

    def index(self) -> dict | None:
        """The vector index on the column (its statistics), or None."""
        for idx in self.ds.describe_indices():
            if list(idx.field_names) == [self.column] and "Vector" in idx.type_url:
                try:
                    return self.ds.stats.index_stats(idx.name)
                except (ValueError, KeyError, RuntimeError, OSError):
                    return None
        return None

    def names(self, wanted: list[str]) -> list[str]:
        have = set(self.ds.schema.names)
        return [c for c in wanted if c in have]

    def scan(self, columns: list[str], **kw) -> pa.Table:
        """``columns`` and ``_rowid`` of the rows with a vector (of the columns it has)."""
        return self.ds.to_table(columns=self.names(columns), with_row_id=True,
                                filter=f"{self.column} IS NOT NULL", **kw)

    def take(self, rowids: np.ndarray, columns: list[str]) -> pa.Table:
        return self.ds._take_rows([int(r) for r in rowids], columns=self.names(columns))

    def vectors_at(self, rowids: np.ndarray) -> np.ndarray:
        """The whole vectors of ``rowids`` (in that order) as (n, dim) float32."""
        if not len(rowids):
            return np.zeros((0, self.dim), np.float32)
        uniq, inverse = np.unique(np.asarray(rowids, np.int64), return_inverse=True)
        col = self.take(uniq, [self.column])[self.column].combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat, np.float32).reshape(len(uniq), self.dim)[inverse]

    def nearest(self, q: np.ndarray, k: int, plan: IndexInfo, nprobes: int | None = None,
                refine: int | None = None, where: str | None = None, widen: bool = False,
                share: float = 1.0, partitions: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row ids), each (len(q), k), -inf / -1 past the last: LanceDB's top-k
        by inner product (its index probed ``nprobes`` partitions, more when ``widen``,
        ``refine`` x k candidates re-scored whole; exact without an index). A filter
        keeping ``share`` of the rows probes ``nprobes / share`` of the ``partitions``
        (as FAISS's probe is widened): as many rows passing it are scored as without."""
        nearest: dict = {"column": self.column, "q": np.ascontiguousarray(q, np.float32),
                         "k": int(k), "metric": "dot"}
        if plan.kind == LANCE_FLAT:
            nearest["use_index"] = False
        else:
            nprobes = int(nprobes or plan.nprobe or 1)
            if share < 1.0 and partitions:
                nprobes = min(partitions, max(nprobes, math.ceil(nprobes / max(share, 1e-9))))
            refine = int(refine or plan.rerank or 1)
            nearest.update(minimum_nprobes=nprobes, refine_factor=refine)
            if not widen:  # else unbounded: more partitions until k rows pass the filter
                nearest["maximum_nprobes"] = nprobes
            if plan.kind == LANCE_HNSW_SQ:
                nearest["ef"] = max(HNSW_EF, int(k) * refine)  # at least the candidates
        got = self.ds.to_table(nearest=nearest, columns=["_distance"], with_row_id=True,
                               filter=where, prefilter=bool(where),
                               disable_scoring_autoprojection=True)
        scores = np.full((len(q), k), -np.inf, np.float32)
        rowids = np.full((len(q), k), -1, np.int64)
        if not got.num_rows:
            return scores, rowids
        qi = (got["query_index"].to_numpy() if "query_index" in got.column_names
              else np.zeros(got.num_rows, np.int64))
        dist = got["_distance"].to_numpy(zero_copy_only=False).astype(np.float32)
        rid = got["_rowid"].to_numpy().astype(np.int64)
        for j in range(len(q)):
            at = np.flatnonzero(qi == j)[:k]
            scores[j, :len(at)] = 1.0 - dist[at]  # LanceDB's dot distance is 1 - q.x
            rowids[j, :len(at)] = rid[at]
        return scores, rowids


class LanceVectorIndex:
    """LanceDB's vector index in the items table, behind the index seam (see module)."""

    backend = LANCE

    def __init__(self, pinned: Pinned, catalog: RowCatalog, info: IndexInfo,
                 rowids: np.ndarray, trained: int = 0):
        self.pinned = pinned
        self.catalog = catalog
        self.info = info
        self.rowids = np.asarray(rowids, np.int64)  # per position; -1: dead
        self.trained = trained  # partitions of the index it was tuned for (0: none)
        self.limit = FILTER_EXACT_LIMIT  # a selection this small is scored exactly
        self.strategy = self  # what the contract tests tune (``limit``)
        live = np.flatnonzero(self.rowids >= 0)
        order = np.argsort(self.rowids[live], kind="stable")
        self._sorted = self.rowids[live][order]
        self._positions = live[order]

    def __len__(self) -> int:
        return len(self.catalog)

    @property
    def dim(self) -> int:
        return self.pinned.dim

    def gpu_index(self) -> None:
        """No GPU copy: LanceDB searches where the table is."""
        return None

    def positions_of(self, rowids: np.ndarray) -> np.ndarray:
        """Catalog positions of row ids of the pinned version (-1: none)."""
        r = np.asarray(rowids, np.int64)
        at = np.searchsorted(self._sorted, r)
        at = np.minimum(at, max(len(self._sorted) - 1, 0))
        ok = (r >= 0) & (len(self._sorted) > 0)
        if len(self._sorted):
            ok &= self._sorted[at] == r
        return np.where(ok, self._positions[at] if len(self._positions) else -1, -1)

    def vectors(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """The stored vectors at ``positions`` (float32, read from the table; NaN for a
        dead position)."""
        pos = np.asarray(positions, np.int64).reshape(-1)
        out = np.full((len(pos), self.dim), np.nan, np.float32)
        rid = self.rowids[pos] if len(pos) else np.zeros(0, np.int64)
        ok = rid >= 0
        if ok.any():
            out[ok] = self.pinned.vectors_at(rid[ok])
        return out

    def search(self, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> Hits:
        """Top-k (scores, positions) per query among the live positions ``mask`` keeps;
        positions -1 past the last match; k capped at the number of slots."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n = len(self)
        if n == 0 or not len(self._sorted):
            k = max(0, min(k, n))
            return (np.full((len(q), k), -np.inf, np.float32),
                    np.full((len(q), k), -1, np.int64))
        k = max(1, min(k, n))
        if mask is None or mask is self.catalog.alive:
            return self._hits(*self.pinned.nearest(q, k, self.info), k, None)
        keep = np.flatnonzero(mask)
        if not len(keep):
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if len(keep) <= self.limit:
            return self._exact(q, k, keep)
        where = self.catalog.where_of(mask)
        if where is None and len(keep) <= ROWID_IN_LIMIT:
            rid = self.rowids[keep]
            where = "_rowid IN (" + ",".join(str(int(r)) for r in rid[rid >= 0]) + ")"
        if where is not None:
            share = len(keep) / max(len(self._sorted), 1)
            return self._hits(*self.pinned.nearest(q, k, self.info, where=where, widen=True,
                                                   share=share, partitions=self.trained),
                              k, mask)
        return self._post_filtered(q, k, mask, keep)

    def _hits(self, scores: np.ndarray, rowids: np.ndarray, k: int,
              mask: np.ndarray | None) -> Hits:
        """Row ids mapped to positions (none dead, none outside ``mask``), best first,
        equal scores in position order, padded with -1."""
        pos = self.positions_of(rowids.reshape(-1)).reshape(rowids.shape)
        if mask is not None:
            pos = np.where((pos >= 0) & mask[np.maximum(pos, 0)], pos, -1)
        out_s = np.full((len(pos), k), -np.inf, np.float32)
        out_p = np.full((len(pos), k), -1, np.int64)
        for j in range(len(pos)):
            ok = pos[j] >= 0
            p, s = pos[j][ok], scores[j][ok]
            order = np.lexsort((p, -s))[:k]
            out_s[j, :len(order)], out_p[j, :len(order)] = s[order], p[order]
        return out_s, out_p

    def _exact(self, q: np.ndarray, k: int, keep: np.ndarray) -> Hits:
        """The exact top-k among the live positions ``keep``, scored with their whole
        vectors (read from the table by row id)."""
        keep = keep[self.rowids[keep] >= 0]
        vecs = self.pinned.vectors_at(self.rowids[keep])
        s = q @ vecs.T if len(keep) else np.zeros((len(q), 0), np.float32)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_p = np.full((len(q), k), -1, np.int64)
        for j in range(len(q)):
            order = np.lexsort((keep, -s[j]))[:k]
            out_s[j, :len(order)], out_p[j, :len(order)] = s[j][order], keep[order]
        return out_s, out_p

    def _post_filtered(self, q: np.ndarray, k: int, mask: np.ndarray,
                       keep: np.ndarray) -> Hits:
        """A wide mask without SQL: unfiltered searches deepened and widened by the share
        it keeps, its hits masked, until every query has k (else exact)."""
        n_live = len(self._sorted)
        share = max(len(keep) / max(n_live, 1), 1e-9)
        depth = min(n_live, math.ceil(2 * k / share))
        while True:
            nprobes = min(max(self.trained, 1), math.ceil((self.info.nprobe or 1) / share))
            s, p = self._hits(*self.pinned.nearest(q, depth, self.info, nprobes=nprobes),
                              depth, mask)
            if (p[:, k - 1] >= 0).all() or depth >= n_live:
                if (p[:, k - 1] >= 0).all() or len(keep) <= depth:
                    return s[:, :k], p[:, :k]
                return self._exact(q, k, keep)
            depth = min(n_live, depth * 4)


# -- building, refreshing, saving ---------------------------------------------------------
def _lance_options(plan: IndexPlan, dim: int) -> dict:
    opts: dict = {"metric": "dot", "num_partitions": plan.nlist, "replace": True,
                  "max_iters": TRAIN_ITERATIONS}
    if plan.factory == LANCE_HNSW_SQ:
        opts["index_type"] = "IVF_HNSW_SQ"
    else:
        opts.update(index_type="IVF_PQ", num_sub_vectors=plan.pq_bytes or max(1, dim // 8))
    return opts


def _index_kind(stats: dict | None) -> tuple[str, int]:
    """(our kind, partitions) of a Lance index's statistics (("", 0): none)."""
    if not stats:
        return "", 0
    typ = str(stats.get("index_type", "")).upper()
    parts = stats.get("indices") or [{}]
    nparts = int(parts[0].get("num_partitions") or 0)
    return "lance:" + typ, nparts


def unindexed(pinned: Pinned) -> tuple[int, int]:
    """(indexed, unindexed) rows of the column's vector index (0, 0 without one)."""
    stats = pinned.index()
    if not stats:
        return 0, 0
    return int(stats.get("num_indexed_rows", 0)), int(stats.get("num_unindexed_rows", 0))


def _settle(pinned: Pinned, before: int) -> Pinned:
    """After our own index commit on top of ``before``: the new version when nothing else
    was committed in between (its rows are ``before``'s), else ``before`` itself."""
    after = Pinned(pinned.ds.checkout_version(pinned.ds.latest_version), pinned.column,
                   pinned.dim)
    return after if after.version == before + 1 else pinned.at(before)


def tune_index(pinned: Pinned, info: IndexInfo, nlist: int,
               seed: int = 0) -> tuple[int, float, int]:
    """(nprobes, recall@10, refine_factor) tuned on held-out queries against the exact
    top 10, found by one streamed pass over the column."""
    n = pinned.ds.count_rows()
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, min(n, 2 * LANCE_TUNE_QUERIES), replace=False))
    sample = pinned.ds.take(take, columns=[pinned.column])[pinned.column].combine_chunks()
    sample = np.asarray(sample.flatten().to_numpy(zero_copy_only=False),
                        np.float32).reshape(-1, pinned.dim)
    sample = sample[np.isfinite(sample).all(axis=1)]
    queries = held_out(sample, seed=seed)
    truth = StreamedTruth(queries, min(TUNE_K, n))
    scanner = pinned.ds.scanner(columns=[pinned.column], with_row_id=True,
                                filter=f"{pinned.column} IS NOT NULL", batch_size=STREAM_ROWS)
    for batch in scanner.to_batches():
        vec = batch.column(pinned.column)
        flat = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32)
        truth.add(flat.reshape(-1, pinned.dim), batch.column("_rowid").to_numpy())

    def search(q, k, nprobes, refine):
        return pinned.nearest(q, k, info, nprobes=nprobes, refine=refine)[1]

    return tune_lance(search, queries, truth.top(), nlist)


def tuning_key(column: str) -> str:
    return f"loupe.ann.{column}"


def recorded_tuning(pinned: Pinned, kind: str, partitions: int) -> tuple[int, float, int] | None:
    """(nprobes, recall, refine) recorded in the table's config for this kind of index
    with this many partitions (by whoever tuned it first), or None."""
    try:
        got = json.loads(dict(pinned.ds.config()).get(tuning_key(pinned.column)) or "{}")
        if got.get("kind") == kind and int(got.get("partitions", -1)) == partitions:
            return int(got["nprobe"]), float(got["recall"]), int(got["refine"])
    except (ValueError, KeyError, TypeError, AttributeError, OSError, RuntimeError):
        pass
    return None


def record_tuning(pinned: Pinned, info: IndexInfo, partitions: int) -> Pinned:
    """The tuning written into the table's config (one commit), so that every other
    process (a replica with an empty folder) uses it instead of tuning again: a tuning
    pass reads the whole column, from object storage too. Returns the version to pin."""
    value = json.dumps({"kind": info.kind, "partitions": partitions, "nprobe": info.nprobe,
                        "refine": info.rerank, "recall": info.recall})
    try:
        before = pinned.version
        pinned.ds.update_config({tuning_key(pinned.column): value})
        return _settle(pinned, before)
    except (OSError, RuntimeError, ValueError, AttributeError):
        return pinned  # a read-only store: the next process tunes again


def tuned(pinned: Pinned, info: IndexInfo, partitions: int) -> Pinned:
    """``info`` given the recorded tuning of this index, else tuned now and recorded."""
    got = recorded_tuning(pinned, info.kind, partitions)
    if got is not None:
        info.nprobe, info.recall, info.rerank = got
        return pinned
    info.nprobe, info.recall, info.rerank = tune_index(pinned, info, partitions)
    return record_tuning(pinned, info, partitions)


def build_lance_index(store: Store, column: str, plan: IndexPlan | None = None,
                      retrain: bool | None = None, why: str = "") -> LanceVectorIndex | None:
    """The column's Lance index at the table's latest version, its catalog read whole:
    the vector index the table has is used when it is the planned kind (``retrain``:
    True to train anew, False never), else trained now in the table; tuned. None when
    the table has no rows with a vector."""
    rev = store.capture_rev()
    pinned = Pinned.latest(store, column)
    if pinned is None:
        return None
    rows = pinned.scan(ROW_COLUMNS)
    if not rows.num_rows:
        return None
    rowids = rows["_rowid"].to_numpy().astype(np.int64)
    rows = with_row_columns(rows.drop_columns(["_rowid"])).select(ROW_COLUMNS)
    n = rows.num_rows
    kind, nparts = _index_kind(pinned.index())
    if plan is None and kind:  # the index the table has (another process trained it)
        plan = plan_lance(n, pinned.dim, kind, reason=why, index_min=0)
    plan = plan or plan_lance(n, pinned.dim, reason=why)
    trained = 0
    if plan.factory != LANCE_FLAT:
        stale = kind != plan.factory or nparts * 2 <= plan.nlist
        if retrain or (retrain is None and stale) or not kind:
            before = pinned.version
            pinned.ds.create_index(column, **_lance_options(plan, pinned.dim))
            pinned = _settle(pinned, before)
        trained = _index_kind(pinned.index())[1]
    info = IndexInfo(column, pinned.version, n, plan.factory, 0, 1.0, 0, plan.reason, 0, 0.0,
                     rev)
    if plan.factory != LANCE_FLAT and trained:
        pinned = tuned(pinned, info, trained)
        info.version = pinned.version
    return LanceVectorIndex(pinned, RowCatalog(rows), info, rowids, trained)


def refresh_lance(vidx: LanceVectorIndex, store: Store,
                  plan: IndexPlan | None = None) -> LanceVectorIndex | None:
    """``vidx`` at the table's latest version without reading the catalog whole (new and
    re-written rows appended, gone ones marked dead; row ids read again, compaction
    moves them), its index brought up to date in place when enough rows are unindexed;
    None when the catalog or the index is to be built again (see module)."""
    pinned = Pinned.latest(store, vidx.info.column)
    if pinned is None:
        return None
    if pinned.version == vidx.info.version:
        return vidx
    column = vidx.info.column
    if plan is not None and plan.factory != vidx.info.kind:
        return None
    stats = pinned.index()
    kind, nparts = _index_kind(stats)
    if vidx.info.kind != LANCE_FLAT and kind != vidx.info.kind:
        return None  # dropped, or retrained as another kind by someone else
    current = pinned.scan(["id", "indexed_at"])
    cat = vidx.catalog
    cur_ids = current["id"].to_pylist()
    cur_at = current["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    cur_rid = current["_rowid"].to_numpy().astype(np.int64)
    alive = cat.live()
    old_at = cat.rows["indexed_at"].to_numpy(zero_copy_only=False).astype(np.float64)
    slot = {i: p for p, i in enumerate(cat.ids.tolist()) if alive[p]}
    rowids = np.full(len(cat), -1, np.int64)
    fresh: list[int] = []  # rows of ``current``
    for r, (item, at) in enumerate(zip(cur_ids, cur_at, strict=True)):
        p = slot.pop(item, None)
        if p is None:
            fresh.append(r)
        elif not (at == old_at[p] or (np.isnan(at) and np.isnan(old_at[p]))):
            alive[p] = False  # re-written: its new row is appended below
            fresh.append(r)
        else:
            rowids[p] = cur_rid[r]
    for p in slot.values():  # rows the table no longer has
        alive[p] = False
    dead = len(alive) - int(alive.sum())
    live = int(alive.sum()) + len(fresh)
    if plan is None and vidx.info.kind != LANCE_FLAT:
        want = plan_lance(live, pinned.dim, vidx.info.kind)
        if want.factory == vidx.info.kind and vidx.trained * 2 <= want.nlist:
            return None  # the plan says: retrain for the size it has grown to
    if len(fresh) > REFRESH_LIMIT or dead > REBUILD_DEAD_SHARE * max(len(alive), 1):
        return None
    rows = cat.rows
    if fresh:
        new = pinned.take(cur_rid[fresh], ROW_COLUMNS)
        new = with_row_columns(new).select(ROW_COLUMNS).cast(rows.schema)
        rows = pa.concat_tables([rows, new]).combine_chunks()
        alive = np.concatenate([alive, np.ones(len(fresh), bool)])
        rowids = np.concatenate([rowids, cur_rid[fresh]])
    indexed, waiting = unindexed(pinned) if stats else (0, 0)
    if waiting >= OPTIMIZE_MIN and waiting > OPTIMIZE_SHARE * max(indexed, 1):
        try:  # LanceDB's incremental update: new rows into the trained partitions
            before = pinned.version
            pinned.ds.optimize.optimize_indices()
            pinned = _settle(pinned, before)
        except (OSError, RuntimeError, ValueError):
            pass  # a read-only store, or another writer's commit won: searched flat
    old = vidx.info
    info = IndexInfo(column, pinned.version, int(alive.sum()), old.kind, old.nprobe,
                     old.recall, len(alive) - int(alive.sum()), old.reason, old.rerank,
                     old.max_norm, old.capture_rev)
    trained = vidx.trained
    if info.kind != LANCE_FLAT:
        now = _index_kind(pinned.index())[1]
        if now != trained:  # LanceDB's optimize split or joined partitions: tuned again
            pinned = tuned(pinned, info, now)
            info.version, trained = pinned.version, now
    return LanceVectorIndex(pinned, RowCatalog(rows, alive), info, rowids, trained)


def _paths(store: Store, column: str) -> tuple[str, str]:
    d = os.path.join(store.dir, "faiss")  # beside the FAISS indexes: one current index
    return d, os.path.join(d, f"{column}.json")


def save_lance(store: Store, vidx: LanceVectorIndex) -> None:
    """Write ``vidx``'s catalog and tuning beside the store as its column's current index
    (the JSON pointer replaced last) and drop older versions' files."""
    d, meta_path = _paths(store, vidx.info.column)
    os.makedirs(d, exist_ok=True)
    stem = f"{vidx.info.column}.v{vidx.info.version}"
    tmp = f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    feather.write_feather(vidx.catalog.rows, os.path.join(d, stem + ".rows" + tmp))
    for ext, arr in ((".alive", vidx.catalog.live()), (".rowids", vidx.rowids)):
        with open(os.path.join(d, stem + ext + tmp), "wb") as f:
            np.save(f, arr)
    for ext in (".rows", ".alive", ".rowids"):
        os.replace(os.path.join(d, stem + ext + tmp), os.path.join(d, stem + ext))
    fd, meta_tmp = tempfile.mkstemp(dir=d, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({**vidx.info.__dict__, "stem": stem, "backend": LANCE,
                   "trained": vidx.trained}, f)
    os.replace(meta_tmp, meta_path)
    for name in os.listdir(d):
        if (name.startswith(vidx.info.column + ".v") and not name.startswith(stem + ".")
                and not name.endswith(".tmp")):
            try:
                os.remove(os.path.join(d, name))
            except OSError:
                pass


def saved_backend(store: Store, column: str) -> str | None:
    """The backend of the column's saved index ("faiss", "lance"), None if none."""
    try:
        with open(_paths(store, column)[1]) as f:
            return json.load(f).get("backend", "faiss")
    except (OSError, ValueError, AttributeError):
        return None


def load_saved_lance(store: Store, column: str) -> LanceVectorIndex | None:
    """The saved Lance index of ``column`` at the version it was saved at, or None when
    missing, damaged, of the other backend, or its table version is gone."""
    d, meta_path = _paths(store, column)
    try:
        with open(meta_path) as f:
            m = json.load(f)
        if m.get("backend") != LANCE:
            return None
        rows = with_row_columns(feather.read_table(os.path.join(d, m["stem"] + ".rows")))
        alive = np.load(os.path.join(d, m["stem"] + ".alive"))
        rowids = np.load(os.path.join(d, m["stem"] + ".rowids"))
        pinned = Pinned.latest(store, column)
        if pinned is None or len(alive) != rows.num_rows or len(rowids) != rows.num_rows:
            return None
        info = IndexInfo(**{k: m[k] for k in IndexInfo.__dataclass_fields__ if k in m})
        pinned = pinned.at(info.version)
        return LanceVectorIndex(pinned, RowCatalog(rows.select(ROW_COLUMNS), alive), info,
                                rowids, int(m.get("trained", 0)))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None


def load_lance_index(store: Store, column: str, previous=None,
                     plan: IndexPlan | None = None, why: str = "") -> LanceVectorIndex | None:
    """The column's Lance index at the table's latest version: ``previous`` (or the
    saved one) refreshed, else built (see :func:`build_lance_index`); saved when the
    folder is writable. None when the table has no rows with a vector (the caller gives
    the empty exact index)."""
    rev = store.capture_rev()
    vidx = previous if isinstance(previous, LanceVectorIndex) and (
        previous.info.column == column) else None
    if vidx is None:
        vidx = load_saved_lance(store, column)
    if vidx is not None and plan is not None and vidx.info.kind != plan.factory:
        vidx = None
    current = store.version()
    if vidx is not None and (vidx.info.version, vidx.info.capture_rev) == (current, rev):
        return vidx
    out = refresh_lance(vidx, store, plan) if vidx is not None else None
    if out is None:
        out = build_lance_index(store, column, plan, why=why)
        if out is None:
            return None
    elif out.info.capture_rev != rev:
        cat = catalog_with_captures(out.catalog, store)
        out = LanceVectorIndex(out.pinned, cat, dataclasses.replace(out.info, capture_rev=rev),
                               out.rowids, out.trained)
    try:
        save_lance(store, out)
    except OSError:
        pass  # a read-only folder can still be searched
    return out
