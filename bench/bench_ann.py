"""ANN at scale: the planned index for N synthetic vectors, its build, memory, recall and
latency, and what that means for 1.6 billion frames.

Vectors are clustered unit vectors of ``--dim`` (512, CLIP ViT-B-32's), generated in
chunks. The index is the one ``loupe.search.ann.plan.plan_index`` picks for ``--n`` vectors in
``--budget-gib`` (give a small budget to get IVF-PQ), built and tuned exactly as the
library builds it (trained on a seeded sample, nprobe raised until recall@10 >= 0.95 on
held-out queries, or as high as it goes). ``--flat-limit`` lowers the exact-search limit
so a machine without 20 GB can still measure an IVF plan at 1M.

Reported: plan, train + add seconds, bytes per vector (index size / N), recall@10 against
exact search on 200 held-out queries, single-query latency p50/p99 at the tuned nprobe,
and the extrapolation to ``--target`` vectors (1.6B): memory, shards of ``--shard-gib``,
and build hours at the measured rate.

Run::

    python bench/bench_ann.py --n 1000000 --flat-limit 100000 --budget-gib 0.1
    python bench/bench_ann.py --n 10000000 --budget-gib 2      # a big machine

Prints numbers (and writes JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from _common import percentile, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.search.ann.plan import (  # noqa: E402
    build,
    exact_top,
    plan_index,
    recall_at,
    tune,
    tuning_queries,
)


def clustered(n: int, dim: int, seed: int, clusters: int = 1000, chunk: int = 200_000):
    """Clustered unit vectors, made chunk by chunk (same result for the same seed)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        v = centres[rng.integers(0, clusters, m)] + 0.7 * rng.normal(size=(m, dim)).astype(
            np.float32)
        out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--budget-gib", type=float, default=None,
                    help="memory budget for the index (default: half the RAM)")
    ap.add_argument("--flat-limit", type=int, default=None)
    ap.add_argument("--queries", type=int, default=300, help="latency queries")
    ap.add_argument("--target", type=float, default=1.6e9, help="vectors to extrapolate to")
    ap.add_argument("--shard-gib", type=float, default=64.0, help="memory per shard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    budget = None if args.budget_gib is None else int(args.budget_gib * 2**30)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    t0 = time.perf_counter()
    vecs = clustered(args.n, args.dim, args.seed)
    print(f"{args.n:,} x {args.dim} vectors made in {time.perf_counter() - t0:.1f} s")
    plan = plan_index(args.n, args.dim, budget, args.flat_limit)
    print(f"plan: {plan.factory} ({plan.reason}); training on {plan.train_size:,}")
    t0 = time.perf_counter()
    index = build(plan, vecs, seed=args.seed)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    nprobe, recall = tune(index, plan, vecs, seed=args.seed)
    tune_s = time.perf_counter() - t0
    size = faiss.serialize_index(index).nbytes
    queries = tuning_queries(vecs, count=200, seed=args.seed + 50)  # not the tuning set
    held_out = recall_at(index, queries, exact_top(vecs, queries, 10))
    lat = []
    qs = tuning_queries(vecs, count=args.queries, seed=args.seed + 99)
    for q in qs:
        t = time.perf_counter()
        index.search(q[None, :], 10)
        lat.append(time.perf_counter() - t)
    flat = faiss.IndexFlatIP(args.dim)  # exact search over the same vectors, for scale
    flat.add(vecs)
    exact_lat = []
    for q in qs[:50]:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        exact_lat.append(time.perf_counter() - t)
    del flat
    exact_p50 = percentile(exact_lat, 50) * 1e3
    per_vec = size / args.n
    rate = args.n / build_s
    total = per_vec * args.target
    shards = int(np.ceil(total / (args.shard_gib * 2**30)))
    p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
    print(f"build (train + add) {build_s:.1f} s ({rate:,.0f} vectors/s); tuning {tune_s:.1f} s")
    print(f"index {size / 2**20:.1f} MiB = {per_vec:.1f} bytes/vector; nprobe {nprobe}; "
          f"recall@10 {recall:.3f} (tuning queries), {held_out:.3f} (held-out)")
    print(f"one query: p50 {p50:.2f} ms, p99 {p99:.2f} ms (exact search: p50 {exact_p50:.2f} "
          f"ms, {exact_p50 / p50:.1f}x)")
    print(f"extrapolated to {args.target:,.0f} vectors: {total / 2**30:,.0f} GiB of index, "
          f"{shards} shard(s) of {args.shard_gib:g} GiB, {args.target / rate / 3600:,.1f} "
          f"build-hours at this machine's rate (adding is linear; training is once, on a "
          f"sample)")
    write_json(args.out, "ann", {
        "n": args.n, "dim": args.dim, "plan": plan.factory, "build_s": build_s,
        "tune_s": tune_s, "bytes_per_vector": per_vec, "nprobe": nprobe,
        "recall_tuning": recall, "recall_held_out": held_out, "p50_ms": p50, "p99_ms": p99,
        "exact_p50_ms": exact_p50,
        "target": args.target, "target_gib": total / 2**30, "shards": shards,
        "build_hours": args.target / rate / 3600})


if __name__ == "__main__":
    main()
