"""Reading vectors by id from the store: the re-scoring step of a PQ index.

A PQ index's candidates (100 to 1,000 per query, ``search/ann/plan.py``) are re-scored
with their whole vectors, read from LanceDB by id (``Store.vectors_of``). Without an
index on ``id`` that read scans the whole id column on every query. This builds an items
table of N rows (512-d vectors, made once), then times ``vectors_of`` for 100 and 1,000
random ids:

1. with no index on ``id``;
2. after ``Store.index_ids()`` (a BTREE scalar index, which index runs build once the
   table passes ``ID_INDEX_MIN_ROWS``), and its build time;
3. with 5 % more rows appended after the index was built (not yet in the index);
4. from the vector files a PQ index keeps beside it (``search/ann/position_vectors.py``):
   float32 rows in index position order, memory-mapped (warm page cache: the file was
   just written; on a cold cache each row is one random 2 KiB read from local disk);

and prints p50/p99 per read and the speed-up.

Run::

    source .venv/bin/activate
    python bench/bench_rescore_read.py                 # 1M rows (about 2 GiB on disk)
    python bench/bench_rescore_read.py --rows 200000

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np
import pyarrow as pa
from _common import DEFAULT_WORK, machine_info, summary_ms

from loupe.indexer.encoders.spec import EncoderSpec
from loupe.search.ann.position_vectors import PositionVectors
from loupe.search.store import Store, item_id, items_schema

DIM = 512
CHUNK = 100_000


def _rows(start: int, n: int, column: str, schema: pa.Schema) -> pa.Table:
    rng = np.random.default_rng(start)
    paths = [f"/archive/{i // 1000:05d}/{i:09d}.jpg" for i in range(start, start + n)]
    vec = rng.standard_normal((n, DIM), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols.update(id=pa.array([item_id(p) for p in paths]), path=pa.array(paths),
                kind=pa.array(["photo"] * n),
                **{column: pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), DIM)})
    return pa.table([cols[f.name] for f in schema], schema=schema)


def build(db: str, rows: int) -> tuple[Store, str]:
    """The store with ``rows`` items (made once and kept)."""
    spec = EncoderSpec(backend="bench", model="random", weights="none", weights_id="none",
                       dim=DIM)
    if os.path.exists(os.path.join(db, "meta.json")):
        store = Store(db)
        if store.items().count_rows() == rows:
            return store, spec.column
        shutil.rmtree(db)
    store = Store(db, create=True)
    column = store.register_encoder(spec)
    t = store.items()
    schema = items_schema({column: DIM})
    t0 = time.perf_counter()
    for start in range(0, rows, CHUNK):
        t.add(_rows(start, min(CHUNK, rows - start), column, schema))
    store.optimize()
    print(f"built {rows:,} rows in {time.perf_counter() - t0:.0f} s")
    return store, column


def time_reads(store: Store, column: str, ids: list[str], n: int, reps: int,
               rng: np.random.Generator) -> dict:
    secs = []
    for _ in range(reps):
        pick = [ids[i] for i in rng.choice(len(ids), n, replace=False)]
        t0 = time.perf_counter()
        v = store.vectors_of(pick, column)
        secs.append(time.perf_counter() - t0)
        assert not np.isnan(v).any()
    return summary_ms(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    print(machine_info())
    db = os.path.join(args.work, f"db-rescore-{args.rows}")
    store, column = build(db, args.rows)
    t = store.items()
    for idx in t.list_indices():  # start from no index on id
        t.drop_index(idx.name)
    store = Store(db)
    ids = store.item_rows(["id"])["id"].to_pylist()
    rng = np.random.default_rng(0)
    res: dict[str, dict[int, dict]] = {}
    res["no index"] = {n: time_reads(store, column, ids, n, args.reps, rng) for n in (100, 1000)}
    t0 = time.perf_counter()
    built = store.index_ids(min_rows=0)
    print(f"BTREE index on id: built in {time.perf_counter() - t0:.1f} s ({built})")
    store = Store(db)
    res["BTREE on id"] = {n: time_reads(store, column, ids, n, args.reps, rng)
                          for n in (100, 1000)}
    extra = args.rows // 20
    schema = items_schema({column: DIM})
    store.items().add(_rows(args.rows, extra, column, schema))
    store = Store(db)
    res[f"+{extra:,} rows not in it"] = {
        n: time_reads(store, column, ids, n, args.reps, rng) for n in (100, 1000)}
    store.items().delete(f"path >= '/archive/{args.rows // 1000:05d}/{args.rows:09d}.jpg'")
    store = Store(db)
    _, table = store.read_vectors(column)
    vecs = table[column].combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    files = os.path.join(db, "bench-vectors")
    os.makedirs(files, exist_ok=True)
    local = PositionVectors(DIM, pending=vecs).save(files, "bench")
    del vecs, table
    secs = {n: [] for n in (100, 1000)}
    for n in secs:
        for _ in range(args.reps):
            pos = rng.choice(len(local), n, replace=False)
            t0 = time.perf_counter()
            local.take(pos)
            secs[n].append(time.perf_counter() - t0)
    res["vector files by position"] = {n: summary_ms(s) for n, s in secs.items()}
    shutil.rmtree(files)
    base = res["no index"]
    print(f"\nStore.vectors_of on {args.rows:,} rows of {DIM}-d vectors, ms per read "
          f"(p50 / p99 over {args.reps}):")
    for name, r in res.items():
        print(f"  {name:>24}: " + "; ".join(
            f"{n:,} ids {r[n]['p50']:.2f} / {r[n]['p99']:.2f} "
            f"({base[n]['p50'] / r[n]['p50']:.1f}x)" for n in (100, 1000)))


if __name__ == "__main__":
    main()
