"""The billion-frame plan, measured at a size this machine can hold: an IVF-PQ index over N
synthetic 512-d vectors (10M by default) streamed from disk, searched the way Loupe
searches a PQ index (probe, take the top ``--rerank`` candidates, re-score them with the
whole vectors read from the store), and extrapolated to 1.6 billion frames.

The whole vectors live on disk in one float32 file (``WORK/vectors-N-D.f32``, made once,
N x D x 4 bytes: 20 GB for 10M x 512), read back through ``np.memmap`` as the store of
record would serve them: the index never holds them, which is the point at 1.6B.

Steps and what each reports:

1. vectors: made chunk by chunk (clustered unit vectors, seeded), written once;
2. train: the coarse quantizer and the PQ codebooks on a seeded sample (``--nlist``
   lists; the planner's full-size choice for 10M is 262,144 lists, which is a GPU job;
   on 2 cores ``--nlist 4096`` trains in minutes and gives the same per-vector memory);
3. add: all N vectors in chunks: seconds and vectors/s;
4. exact top-10 of 200 held-out queries by brute force over the file (the truth);
5. search at nprobe 1, 2, 4, ... : recall@10 of the PQ scores alone and after re-scoring,
   single-query latency p50/p99 (re-scoring's reads included), until recall >= 0.95;
6. bytes per vector (the index file / N) and the 1.6B extrapolation: index memory,
   shards of ``--shard-gib``, build hours at the measured add rate, and what GPUs change.

Run::

    python bench/bench_billion.py                          # 10M x 512, nlist 4096
    python bench/bench_billion.py --n 2000000 --nlist 2048  # a quicker look
    python bench/bench_billion.py --factory "OPQ64_512,IVF4096,PQ64"

Prints numbers (and writes JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from _common import DEFAULT_WORK, machine_info, percentile, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.search.ann.plan import rescore, set_search_params  # noqa: E402

CHUNK = 250_000


def vectors_file(work: str, n: int, dim: int, seed: int, latent: int = 0,
                 clusters: int = 10_000) -> np.memmap:
    """The N x dim float32 vectors on disk (made once, chunk by chunk, seeded).

    ``latent`` 0: cluster centres plus isotropic noise in all ``dim`` dimensions (a worst
    case: a query's neighbours are nearly tied). ``latent`` d: points of a mixture in a
    d-dimensional space mapped into ``dim`` by a fixed random map, plus a little
    isotropic noise: low intrinsic dimension, as image embeddings have."""
    path = os.path.join(work, f"vectors-{n}-{dim}-l{latent}-s{seed}.f32")
    if os.path.exists(path) and os.path.getsize(path) == n * dim * 4:
        return np.memmap(path, np.float32, "r", shape=(n, dim))
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    space = latent or dim
    centres = rng.normal(size=(clusters, space)).astype(np.float32)
    lift = (np.linalg.qr(rng.normal(size=(dim, latent)))[0].T.astype(np.float32)
            if latent else None)
    out = np.memmap(path + ".tmp", np.float32, "w+", shape=(n, dim))
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        v = centres[rng.integers(0, clusters, m)] + 0.7 * rng.normal(size=(m, space)).astype(
            np.float32)
        if lift is not None:
            v = v @ lift
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            v += 0.02 * rng.normal(size=(m, dim)).astype(np.float32)
        out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    out.flush()
    del out
    os.replace(path + ".tmp", path)
    print(f"  made {n:,} vectors in {time.perf_counter() - t0:.0f}s ({path})", flush=True)
    return np.memmap(path, np.float32, "r", shape=(n, dim))


def held_out_queries(vecs: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Midpoints of random pairs of stored vectors: near the data, not in it."""
    rng = np.random.default_rng(seed + 1)
    a = np.asarray(vecs[np.sort(rng.integers(0, len(vecs), count))])
    b = np.asarray(vecs[np.sort(rng.integers(0, len(vecs), count))])
    rng.shuffle(b)
    q = a + b
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vecs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k positions by brute force over the file, chunk by chunk."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_p = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(vecs), CHUNK):
        chunk = np.asarray(vecs[s:s + CHUNK])
        sims = queries @ chunk.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        cs = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        cp = np.concatenate([best_p, part + s], axis=1)
        order = np.argsort(-cs, axis=1)[:, :k]
        best_s, best_p = np.take_along_axis(cs, order, 1), np.take_along_axis(cp, order, 1)
    return best_p


def build_index(vecs: np.ndarray, factory: str, train: int | None,
                seed: int) -> tuple[faiss.Index, faiss.IndexIVF, int, float, float]:
    """Train on a seeded sample, add every vector in chunks; (index, its IVF part,
    training sample size, train seconds, add seconds)."""
    n, dim = vecs.shape
    print("[2] train", flush=True)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    take = min(n, train or max(10_000, 40 * ivf.nlist))
    rng = np.random.default_rng(seed)
    sample = np.asarray(vecs[np.sort(rng.choice(n, take, replace=False))])
    ivf.cp.seed = seed
    t0 = time.perf_counter()
    index.train(sample)
    train_s = time.perf_counter() - t0
    del sample
    print(f"  trained on {take:,} in {train_s:.0f}s", flush=True)

    print("[3] add", flush=True)
    t0 = time.perf_counter()
    for s in range(0, n, CHUNK):
        index.add(np.ascontiguousarray(vecs[s:s + CHUNK]))
    add_s = time.perf_counter() - t0
    print(f"  added {n:,} in {add_s:.0f}s ({n / add_s:,.0f} vectors/s)", flush=True)
    return index, ivf, take, train_s, add_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nlist", type=int, default=4096, help="inverted lists (4096)")
    ap.add_argument("--pq", type=int, default=64, help="PQ bytes per vector (64)")
    ap.add_argument("--factory", default=None, help="FAISS factory string (overrides both)")
    ap.add_argument("--train", type=int, default=None, help="training sample (40 x nlist)")
    ap.add_argument("--rerank", type=int, default=100, help="candidates re-scored (100)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--target", type=float, default=1.6e9, help="vectors to extrapolate to")
    ap.add_argument("--shard-gib", type=float, default=64.0, help="memory per shard")
    ap.add_argument("--work", default=os.path.join(DEFAULT_WORK, "billion"))
    ap.add_argument("--latent", type=int, default=64,
                    help="intrinsic dimension of the data (64); 0: isotropic noise")
    ap.add_argument("--reuse", action="store_true",
                    help="search the index a previous run saved for the same settings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n, dim, k = args.n, args.dim, 10
    factory = args.factory or f"IVF{args.nlist},PQ{args.pq}"
    print(f"bench_billion: {machine_info()}; {n:,} x {dim}, {factory}, faiss {faiss.__version__}"
          f", {faiss.omp_get_max_threads()} threads, data: "
          + (f"intrinsic dimension {args.latent}" if args.latent else "isotropic noise"))

    print("[1] vectors on disk", flush=True)
    vecs = vectors_file(args.work, n, dim, args.seed, args.latent)

    path = os.path.join(args.work, f"index-{n}-l{args.latent}-{factory.replace(',', '_')}.faiss")
    if args.reuse and os.path.exists(path):
        print(f"[2-3] index reused from {path} (--reuse)", flush=True)
        index = faiss.read_index(path)
        ivf = faiss.extract_index_ivf(index)
        take, train_s, add_s = 0, float("nan"), float("nan")
    else:
        index, ivf, take, train_s, add_s = build_index(vecs, factory, args.train, args.seed)
        faiss.write_index(index, path)
    index_bytes = os.path.getsize(path)
    per_vector = index_bytes / n

    print("[4] exact top-10 of held-out queries (brute force over the file)", flush=True)
    q = held_out_queries(vecs, args.queries, args.seed)
    t0 = time.perf_counter()
    truth = exact_top(vecs, q, k)
    exact_s = time.perf_counter() - t0
    print(f"  {len(q)} queries in {exact_s:.1f}s ({exact_s / len(q) * 1000:.0f} ms per query "
          "for a scan of every vector)", flush=True)

    print("[5] recall and latency by nprobe (re-scored from the vectors on disk)", flush=True)

    def fetch(pos: np.ndarray) -> np.ndarray:
        return np.asarray(vecs[np.sort(pos)])[np.argsort(np.argsort(pos))]

    rows = []
    nprobe = 1
    depth = max(args.rerank, 4 * k)
    while nprobe <= ivf.nlist:
        set_search_params(index, nprobe)
        cand = index.search(q, depth)[1]
        codes = np.mean([len(set(c[:k]) & set(t)) / k for c, t in zip(cand, truth, strict=True)])
        found = rescore(q, cand, k, fetch)[1]
        recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)])
        lat = []
        for i in range(min(100, len(q))):
            t0 = time.perf_counter()
            c = index.search(q[i:i + 1], depth)[1]
            rescore(q[i:i + 1], c, k, fetch)
            lat.append(time.perf_counter() - t0)
        rows.append({"nprobe": nprobe, "recall_codes": float(codes), "recall": float(recall),
                     "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000})
        r = rows[-1]
        print(f"  nprobe {nprobe:5d}: recall@10 {r['recall_codes']:.3f} from PQ codes, "
              f"{r['recall']:.3f} re-scored; {r['p50_ms']:.2f} ms p50, {r['p99_ms']:.2f} ms "
              "p99 per query", flush=True)
        if recall >= 0.95:
            break
        nprobe *= 2

    best = rows[-1]
    target = args.target
    total = per_vector * target
    shards = int(np.ceil(total / (args.shard_gib * 2**30)))
    cores = os.cpu_count() or 1
    add_core_h = target / (n / add_s) * cores / 3600 if add_s == add_s else float("nan")
    print(f"\n[6] extrapolation to {target:,.0f} vectors")
    print(f"  index: {index_bytes / 2**20:,.0f} MiB for {n:,} = {per_vector:.1f} bytes per "
          f"vector -> {total / 2**30:,.0f} GiB at {target:,.0f}: {shards} shards of "
          f"{args.shard_gib:.0f} GiB")
    print(f"  whole vectors (the store, on disk / object storage): "
          f"{target * dim * 4 / 2**40:,.1f} TiB float32")
    print(f"  adding at this machine's rate: {add_core_h:,.0f} core-hours "
          f"({add_core_h / cores:,.0f} h on {cores} cores)")
    print(f"  search at nprobe {best['nprobe']}: recall@10 {best['recall']:.3f}, "
          f"{best['p50_ms']:.1f} ms p50 per query per shard (shards are searched in parallel; "
          f"the {args.rerank} re-scored vectors are {args.rerank * dim * 4 / 1024:.0f} KiB "
          "of reads per query)")
    write_json(args.out, f"bench_billion-l{args.latent}.json", {
        "latent": args.latent, "n": n, "dim": dim, "factory": factory, "train_size": take,
        "train_s": train_s,
        "add_s": add_s, "index_bytes": index_bytes, "bytes_per_vector": per_vector,
        "exact_scan_ms_per_query": exact_s / len(q) * 1000, "by_nprobe": rows,
        "target": target, "target_gib": total / 2**30, "shards": shards,
        "add_core_hours": add_core_h})


if __name__ == "__main__":
    main()
