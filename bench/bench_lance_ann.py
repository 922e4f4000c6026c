"""FAISS (the current plan) against LanceDB's own vector index, side by side, on N
synthetic 512-d vectors: build time, bytes per vector, recall@10, single-query p50/p99,
and filtered queries at 10% and 1% selectivity.

Vectors: bench_billion.py's, made once into ``WORK/vectors-N-D-l64-s0.f32`` (a mixture in
a 64-d space lifted into 512-d plus a little noise: intrinsic dimension 64, as image
embeddings have) and read back through ``np.memmap``. Each row gets a ``bucket`` (0..99,
seeded): the filters are ``bucket < 10`` and ``bucket = 0``.

- **FAISS**: the index ``plan_index`` gives for N (up to 1M: exact search of fp16 codes
  re-scored with the whole vectors; beyond, an inverted file, ``--faiss-nlist`` lists
  instead of the planned 65,536 so it trains on 2 cores), built as the library builds it
  and searched with the library's strategy; filters are masks over positions.
- **LanceDB**: the vectors written into a Lance table in chunks (``--fp16`` to store
  them as float16), the index trained in the table as the backend trains it
  (search/ann/lance_index.py: IVF_PQ, ``dim/8`` sub-vectors, ``--nlist`` partitions,
  default the plan's), tuned to recall@10 >= 0.95 by ``nprobes`` and ``refine_factor``,
  and searched as the backend searches (filters as SQL through LanceDB's prefilter).

Recall is against the exact top 10 (brute force over the file) on 200 held-out
queries; latency is one query at a time after 20 warm-up queries (warm page cache:
this machine's disk, not object storage). The Lance table and the vector file are
deleted at the end unless ``--keep``.

Run::

    python bench/bench_lance_ann.py --n 1000000
    python bench/bench_lance_ann.py --n 10000000 --nlist 1024 --faiss-nlist 1024 --fp16
    python bench/bench_lance_ann.py --n 100000          # a quick look

Prints a table (and writes JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from _common import DEFAULT_WORK, machine_info, percentile, write_json
from bench_billion import vectors_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.search.ann.index import IndexInfo  # noqa: E402
from loupe.search.ann.lance_index import Pinned, _lance_options, tune_index  # noqa: E402
from loupe.search.ann.lance_plan import StreamedTruth, held_out, plan_lance  # noqa: E402
from loupe.search.ann.plan import (  # noqa: E402
    IndexPlan,
    build,
    plan_index,
)
from loupe.search.ann.strategies import choose_strategy  # noqa: E402

CHUNK = 250_000
K = 10
FILTERS = {"10%": ("bucket < 10", lambda b: b < 10), "1%": ("bucket = 0", lambda b: b == 0)}


def buckets(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 7).integers(0, 100, n).astype(np.int32)


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def truths(vecs: np.ndarray, q: np.ndarray, bucket: np.ndarray) -> dict[str, np.ndarray]:
    """Exact top 10 (row numbers) unfiltered and per filter: one pass over the file."""
    acc = {"all": StreamedTruth(q, K), **{name: StreamedTruth(q, K) for name in FILTERS}}
    for s in range(0, len(vecs), CHUNK):
        chunk = np.asarray(vecs[s:s + CHUNK], np.float32)
        rows = np.arange(s, s + len(chunk))
        acc["all"].add(chunk, rows)
        for name, (_, keep) in FILTERS.items():
            m = keep(bucket[s:s + len(chunk)])
            acc[name].add(chunk[m], rows[m])
    return {name: t.top() for name, t in acc.items()}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / truth.shape[1]
                          for f, t in zip(found, truth, strict=True)]))


def timed(search, q: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Found rows per query, one query at a time, and each one's seconds."""
    for row in q[:20]:
        search(row[None])
    found, lat = [], []
    for row in q:
        t0 = time.perf_counter()
        found.append(search(row[None])[0])
        lat.append(time.perf_counter() - t0)
    return np.asarray(found), lat


def report(found_lat: dict, truth: dict) -> dict:
    out = {}
    for name, (found, lat) in found_lat.items():
        out[name] = {"recall": recall(found, truth[name]),
                     "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000}
    return out


def bench_faiss(vecs: np.ndarray, q: np.ndarray, bucket: np.ndarray, truth: dict,
                nlist: int | None) -> dict:
    n, dim = vecs.shape
    plan = plan_index(n, dim)
    if not plan.exact and nlist:
        coarse = f"IVF{nlist}"
        plan = IndexPlan(coarse + "," + plan.factory.split(",")[-1], nlist, plan.pq_bytes,
                         max(10_000, 40 * nlist), plan.reason + f" ({nlist:,} lists here)")
    print(f"[faiss] {plan.factory}: {plan.reason}", flush=True)
    t0 = time.perf_counter()
    if plan.exact:  # the codes are made from vectors in memory (2 GB at 1M)
        index = build(plan, np.asarray(vecs, np.float32))
        nprobe, tuned, depth = 0, 1.0, 0
    else:  # trained on a sample, filled chunk by chunk, tuned on queries of its own
        import faiss

        index = faiss.index_factory(dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(1)
        take = np.sort(rng.choice(n, min(n, plan.train_size), replace=False))
        index.train(np.asarray(vecs[take], np.float32))
        for s in range(0, n, CHUNK):
            index.add(np.ascontiguousarray(vecs[s:s + CHUNK], np.float32))
        nprobe, tuned, depth = tune_streamed(index, plan, vecs)
    build_s = time.perf_counter() - t0
    max_norm = float(np.linalg.norm(np.asarray(vecs[:100_000]), axis=1).max())
    strat = choose_strategy(index, plan.factory, depth or plan.rerank, max_norm,
                            lambda p: np.asarray(vecs[np.sort(p)][np.argsort(np.argsort(p))]),
                            True)
    masks = {name: keep(bucket) for name, (_, keep) in FILTERS.items()}
    runs = {"all": timed(lambda x: strat.search(x, K, None)[1], q)}
    for name, m in masks.items():
        runs[name] = timed(lambda x, m=m: strat.search(x, K, m)[1], q)
    index_bytes = plan.bytes_per_vector(dim)
    out = {"kind": plan.factory, "build_s": build_s, "nprobe": nprobe, "tuned_recall": tuned,
           "rerank": depth, "index_bytes_per_vector": index_bytes,
           "total_bytes_per_vector": index_bytes + 4 * dim,  # + the whole vectors beside
           "memory_gib": n * index_bytes / 2**30, **report(runs, truth)}

    return out


def tune_streamed(index, plan: IndexPlan, vecs: np.ndarray) -> tuple[int, float, int]:
    """nprobe (powers of two) and re-scoring depth to recall@10 >= 0.95 on held-out
    queries of its own, their truth by one pass over the file (the library's tune_rerank
    holds every vector in memory for it)."""
    from loupe.search.ann.plan import RERANK_DEPTHS, rescore, set_search_params

    rng = np.random.default_rng(5)
    q = held_out(np.asarray(vecs[np.sort(rng.choice(len(vecs), 400, replace=False))]), 200, 5)
    truth = StreamedTruth(q, K)
    for s in range(0, len(vecs), CHUNK):
        truth.add(np.asarray(vecs[s:s + CHUNK], np.float32), np.arange(s, min(s + CHUNK,
                                                                             len(vecs))))
    top = truth.top()
    best = (1, 0.0, RERANK_DEPTHS[-1])
    for depth in RERANK_DEPTHS:
        nprobe = 1
        while nprobe <= plan.nlist:
            set_search_params(index, nprobe)
            cand = index.search(q, depth)[1]
            found = rescore(q, cand, K, lambda p: np.asarray(vecs[p], np.float32))[1]
            r = recall(found, top)
            if r > best[1]:
                best = (nprobe, r, depth)
            if r >= 0.95:
                return nprobe, r, depth
            nprobe *= 2
    set_search_params(index, best[0])
    return best


def write_table(db_dir: str, vecs: np.ndarray, bucket: np.ndarray, fp16: bool) -> tuple:
    import lancedb

    n, dim = vecs.shape
    value = pa.float16() if fp16 else pa.float32()
    schema = pa.schema([("id", pa.int64()), ("bucket", pa.int32()),
                        ("vec", pa.list_(value, dim))])
    shutil.rmtree(db_dir, ignore_errors=True)
    db = lancedb.connect(db_dir)
    t0 = time.perf_counter()

    def batches():
        for s in range(0, n, CHUNK):
            chunk = np.asarray(vecs[s:s + CHUNK], np.float16 if fp16 else np.float32)
            yield pa.record_batch([
                pa.array(np.arange(s, s + len(chunk)), pa.int64()),
                pa.array(bucket[s:s + len(chunk)]),
                pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1), value), dim)],
                schema=schema)

    t = db.create_table("items", pa.RecordBatchReader.from_batches(schema, batches()))
    write_s = time.perf_counter() - t0
    print(f"  wrote {n:,} rows in {write_s:.0f}s ({du(db_dir) / 2**30:.1f} GiB)", flush=True)
    return t, write_s


def bench_lance(work: str, vecs: np.ndarray, q: np.ndarray, bucket: np.ndarray,
                truth: dict, nlist: int | None, kind: str, fp16: bool) -> dict:
    n, dim = vecs.shape
    db_dir = os.path.join(work, f"lance-{n}")
    table, write_s = write_table(db_dir, vecs, bucket, fp16)
    plan = plan_lance(n, dim, kind, index_min=1)
    if nlist:
        plan = IndexPlan(plan.factory, nlist, plan.pq_bytes, backend=plan.backend,
                         reason=f"{plan.reason} ({nlist:,} partitions here, not the "
                                f"{plan.nlist:,} planned)")
    print(f"[lance] {plan.reason}", flush=True)
    pinned = Pinned(table.to_lance(), "vec", dim)
    t0 = time.perf_counter()
    pinned.ds.create_index("vec", **_lance_options(plan, dim))
    train_s = time.perf_counter() - t0
    pinned = Pinned(pinned.ds.checkout_version(pinned.ds.latest_version), "vec", dim)
    stats = pinned.index()
    parts = int(stats["indices"][0]["num_partitions"])
    print(f"  index trained and filled in {train_s:.0f}s ({parts} partitions)", flush=True)
    info = IndexInfo("vec", pinned.version, n, plan.factory)
    t0 = time.perf_counter()
    info.nprobe, info.recall, info.rerank = tune_index(pinned, info, parts)
    tune_s = time.perf_counter() - t0
    print(f"  tuned in {tune_s:.0f}s: nprobes {info.nprobe}, refine {info.rerank}, "
          f"recall {info.recall:.3f}", flush=True)
    # row id -> row number (the table is written in order: they are the same until
    # compaction; mapped anyway, as the backend maps them to catalog positions)
    ids = pinned.ds.to_table(columns=["id"], with_row_id=True)
    rid, row = ids["_rowid"].to_numpy().astype(np.int64), ids["id"].to_numpy()
    order = np.argsort(rid)
    rid, row = rid[order], row[order]

    def rows_of(found):
        at = np.clip(np.searchsorted(rid, found), 0, len(rid) - 1)
        return np.where((found >= 0) & (rid[at] == found), row[at], -1)

    runs = {"all": timed(lambda x: rows_of(pinned.nearest(x, K, info)[1]), q)}
    for name, (sql, keep) in FILTERS.items():
        share = float(keep(bucket).mean())
        runs[name] = timed(lambda x, sql=sql, share=share: rows_of(pinned.nearest(
            x, K, info, where=sql, widen=True, share=share, partitions=parts)[1]), q)
    index_dir = os.path.join(db_dir, "items.lance", "_indices")
    index_bytes = du(index_dir)
    out = {"kind": plan.factory, "partitions": parts, "write_s": write_s, "build_s": train_s,
           "tune_s": tune_s, "nprobe": info.nprobe, "refine": info.rerank,
           "tuned_recall": info.recall, "index_bytes_per_vector": index_bytes / n,
           "total_bytes_per_vector": du(db_dir) / n, "memory_gib": 0.0,
           "vectors": "float16" if fp16 else "float32", **report(runs, truth)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nlist", type=int, default=0, help="Lance partitions (default: planned)")
    ap.add_argument("--faiss-nlist", type=int, default=0,
                    help="FAISS lists beyond 1M (default: planned, 65,536: a GPU job)")
    ap.add_argument("--index", default="lance:IVF_PQ", choices=["lance:IVF_PQ",
                                                               "lance:IVF_HNSW_SQ"])
    ap.add_argument("--fp16", action="store_true", help="float16 vectors in the Lance table")
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--skip-lance", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the table and the vectors")
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n, dim = args.n, args.dim
    print(f"bench_lance_ann: {machine_info()}; {n:,} x {dim}, latent {args.latent}", flush=True)
    vecs = vectors_file(args.work, n, dim, args.seed, args.latent)
    bucket = buckets(n, args.seed)
    rng = np.random.default_rng(args.seed + 3)
    sample = np.asarray(vecs[np.sort(rng.choice(n, 2 * args.queries, replace=False))])
    q = held_out(sample, args.queries, seed=args.seed + 11)
    t0 = time.perf_counter()
    truth = truths(vecs, q, bucket)
    print(f"  exact top-10 of {len(q)} queries in {time.perf_counter() - t0:.0f}s", flush=True)
    results = {}
    try:
        if not args.skip_faiss:
            results["faiss"] = bench_faiss(vecs, q, bucket, truth, args.faiss_nlist)
            print(results["faiss"], flush=True)
        if not args.skip_lance:
            results["lance"] = bench_lance(args.work, vecs, q, bucket, truth, args.nlist,
                                           args.index, args.fp16)
            print(results["lance"], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(os.path.join(args.work, f"lance-{n}"), ignore_errors=True)
            del vecs
            for name in os.listdir(args.work):
                if name.startswith(f"vectors-{n}-{dim}-"):
                    os.remove(os.path.join(args.work, name))
    rows = [("build s", "build_s", "{:.0f}"), ("index bytes/vector", "index_bytes_per_vector",
                                               "{:.0f}"),
            ("total bytes/vector", "total_bytes_per_vector", "{:.0f}"),
            ("index memory GiB", "memory_gib", "{:.2f}")]
    print(f"\n| {n:,} x {dim} | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    print("| kind | " + " | ".join(str(r["kind"]) for r in results.values()) + " |")
    for label, key, fmt in rows:
        print(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results.values()) + " |")
    for name in ("all", *FILTERS):
        for what in ("recall", "p50_ms", "p99_ms"):
            fmt = "{:.3f}" if what == "recall" else "{:.1f}"
            label = f"{what} ({'unfiltered' if name == 'all' else name + ' kept'})"
            print(f"| {label} | " + " | ".join(fmt.format(r[name][what])
                                               for r in results.values()) + " |")
    write_json(args.out, f"bench_lance_ann-{n}.json", {"n": n, "dim": dim, **results})


if __name__ == "__main__":
    main()
