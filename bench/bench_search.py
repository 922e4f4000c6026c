"""Search latency: Loupe's FAISS index vs NumPy brute force, and end-to-end text search.

Part 1, at each of ``--sizes`` (10k, 100k, 1M) synthetic L2-normalised float32 vectors of
dimension ``--dim`` (512), one query at a time (single-query latency, what an interactive
search does), top ``-k`` (10), p50 / p99 / mean in ms over ``--queries`` queries:

- ``faiss``          ``loupe.search.ann.index.VectorIndex.search`` on the index a store of that size
                     gets (up to 1M: exact, fp16 codes scanned + whole-vector
                     re-scoring), no filter;
- ``faiss+mask``     the same with a folder filter mask selecting ~10 % of the rows (mask
                     made once; ``VectorIndex.search`` turns it into an ``IDSelectorBatch``
                     on every call, as the library does);
- ``mask build``     ``RowCatalog.mask(folder=...)`` alone, which ``Searcher`` runs on every
                     filtered query (over fewer queries, ``--mask-queries``);
- ``arrow mask``     (a proposed alternative) the same mask from ``pyarrow.compute``
                     ``starts_with`` on the path column;
- ``numpy``          plain brute force, ``vecs @ q`` + ``argpartition`` (what rclip does);
- ``numpy+mask``     the same, top k chosen among the rows passing the filter;
- ``bitmap+mask``    (a proposed alternative, not library code) FAISS with an
                     ``IDSelectorBitmap`` made from the same mask on every call.

Ratios are numpy / FAISS (above 1: FAISS is faster). Top-k agreement between FAISS and
NumPy is printed as a sanity check. The rows' paths are laid out as 10 folders of 10 %.

Part 2 (``--no-e2e`` skips it): ``loupe.search.engine.Searcher.search`` for text queries with a
full-size ViT-B-32 (seeded random weights from a local file) on a real Loupe store
(LanceDB + saved FAISS index) of ``--e2e-rows`` rows (5000; vectors are random, which
does not change the speed), or on an existing store (``--db``, e.g. the one
``bench_index.py`` built with the same weights). Model load and the first query (which
loads the index) are reported separately; then p50/p99 of the whole ``search`` call and
of its parts (text embedding, the store-version check, the vector search).

Thread pools are left as configured (OPENBLAS_CORETYPE etc. as in the environment); the
script prints what it sees.

Run::

    source .venv/bin/activate
    python bench/bench_search.py                         # 10k, 100k, 1M + end to end
    python bench/bench_search.py --sizes 10000,100000 --queries 500 --no-e2e
    python bench/bench_search.py --sizes 5000000 --queries 50 --e2e-rows 50000

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np
from _common import (
    DEFAULT_WORK,
    cpu_busy_s,
    load_note,
    machine_info,
    summary_ms,
    threadpool_info,
    vit_b32_weights,
)

FOLDERS = 10


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float32 rows of unit length, made in chunks (bounded temporary memory)."""
    out = np.empty((n, dim), np.float32)
    rng = np.random.default_rng(seed)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s:s + len(block)] = block
    return out


def bench_paths(n: int, root: str = "/bench/photos") -> list[str]:
    """Paths in scan order: FOLDERS folders of n / FOLDERS files each."""
    return [f"{root}/f{i * FOLDERS // n:02d}/IMG_{i:07d}.jpg" for i in range(n)]


def make_vector_index(vecs: np.ndarray):
    """The ``loupe.search.ann.index.VectorIndex`` a store with these vectors gets (the planned kind:
    exact fp16 codes + re-scoring up to 1M), over synthetic rows."""
    import pyarrow as pa

    from loupe.search.ann.index import build_vector_index

    n, dim = vecs.shape
    table = pa.table({
        "id": pa.array([f"{i:024x}" for i in range(n)], pa.string()),
        "path": pa.array(bench_paths(n), pa.string()),
        "kind": pa.array(["photo"] * n, pa.string()),
        "timestamp": pa.nulls(n, pa.float64()),
        "vec_bench": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), dim),
    })
    return build_vector_index("vec_bench", 1, table)


def numpy_topk(vecs: np.ndarray, q: np.ndarray, k: int,
               keep: np.ndarray | None = None) -> np.ndarray:
    """Brute-force top-k positions (best first), rclip-style.

    With ``keep`` (the positions passing the filter, precomputed like the mask), all
    scores are still computed and the top k is selected among the kept ones. (Setting
    masked-out scores to -inf instead is ~15x slower at 1M: argpartition degrades on
    900k equal values.)
    """
    s = vecs @ q
    if keep is not None:
        sub = s[keep]
        kk = min(k, len(sub))
        top = np.argpartition(sub, -kk)[-kk:]
        return keep[top[np.argsort(-sub[top])]]
    top = np.argpartition(s, -k)[-k:]
    return top[np.argsort(-s[top])]


def arrow_mask(vidx, folder: str) -> np.ndarray:
    """Proposed: the folder mask computed by Arrow on the rows' path column (vectorised)."""
    import pyarrow.compute as pc

    folder = os.path.abspath(folder)
    prefix = folder.rstrip(os.sep) + os.sep
    paths = vidx.catalog.rows["path"]
    m = pc.or_(pc.starts_with(paths, prefix), pc.equal(paths, folder))
    return m.to_numpy(zero_copy_only=False)


def bitmap_search(index, q: np.ndarray, k: int, mask: np.ndarray):
    """Proposed: FAISS search with an IDSelectorBitmap (O(n/8) to build, O(1) lookups)."""
    import faiss

    bits = np.packbits(mask, bitorder="little")
    sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    return index.search(q[None, :], k, params=faiss.SearchParameters(sel=sel))


def time_calls(fn, queries: np.ndarray, warmup: int) -> tuple[list[float], list]:
    """Per-call seconds of fn(q) over the queries (after ``warmup`` untimed calls)."""
    for q in queries[:warmup]:
        fn(q)
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        r = fn(q)
        times.append(time.perf_counter() - t)
        results.append(r)
    return times, results


def overlap(a: list, b: list, k: int) -> float:
    """Mean fraction of shared positions between two lists of top-k results."""
    return float(np.mean([len(set(map(int, x)) & set(map(int, y))) / k
                          for x, y in zip(a, b, strict=True)]))


def bench_size(n: int, args) -> list[tuple]:
    """Run every method at size n; returns rows for the summary."""
    print(f"\n== {n:,} vectors x {args.dim} (float32, {n * args.dim * 4 / 2**30:.2f} GiB) ==",
          flush=True)
    t = time.perf_counter()
    vecs = unit_vectors(n, args.dim, args.seed)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    vidx = make_vector_index(vecs)
    t_build = time.perf_counter() - t
    print(f"  made vectors in {t_gen:.1f}s; VectorIndex (FAISS add + row arrays) in {t_build:.1f}s")
    queries = unit_vectors(args.queries + args.warmup, args.dim, args.seed + 1)
    k = args.k
    folder = "/bench/photos/f03"
    mask = vidx.catalog.mask(folder=folder)
    keep = np.flatnonzero(mask)
    assert np.array_equal(arrow_mask(vidx, folder), mask)
    print(f"  folder filter {folder}: {int(mask.sum()):,} rows ({mask.mean() * 100:.1f} %)")

    busy0, own0, t0 = cpu_busy_s(), time.process_time(), time.perf_counter()
    res = {}
    res["faiss"] = time_calls(lambda q: vidx.search(q, k)[1][0], queries, args.warmup)
    res["faiss+mask"] = time_calls(lambda q: vidx.search(q, k, mask)[1][0], queries,
                                   args.warmup)
    mq = queries[:args.mask_queries + 1]
    res["mask build"] = time_calls(lambda q: vidx.catalog.mask(folder=folder), mq, 1)
    res["arrow mask"] = time_calls(lambda q: arrow_mask(vidx, folder), mq, 1)
    res["numpy"] = time_calls(lambda q: numpy_topk(vecs, q, k), queries, args.warmup)
    res["numpy+mask"] = time_calls(lambda q: numpy_topk(vecs, q, k, keep), queries,
                                   args.warmup)
    res["bitmap+mask"] = time_calls(lambda q: bitmap_search(vidx.index, q, k, mask)[1][0],
                                    queries, args.warmup)
    others = (cpu_busy_s() - busy0) - (time.process_time() - own0)
    stats = {name: summary_ms(t) for name, (t, _) in res.items()}
    print(f"  {'method':<12} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'n':>5}")
    for name, s in stats.items():
        print(f"  {name:<12} {s['p50']:9.3f} {s['p99']:9.3f} {s['mean']:9.3f} {s['n']:5d}")
    agree = overlap(res["faiss"][1], res["numpy"][1], k)
    agree_m = overlap(res["faiss+mask"][1], res["numpy+mask"][1], k)
    agree_b = overlap(res["bitmap+mask"][1], res["numpy+mask"][1], k)
    inside = float(np.mean([mask[np.asarray(r)[np.asarray(r) >= 0]].all()
                            for r in res["faiss+mask"][1]]))
    print(f"  top-{k} agreement FAISS vs NumPy: {agree:.3f} unfiltered, {agree_m:.3f} filtered "
          f"(bitmap {agree_b:.3f}); filtered hits inside the folder: {inside:.3f}")
    r = stats["numpy"]["p50"] / stats["faiss"]["p50"]
    rm = stats["numpy+mask"]["p50"] / stats["faiss+mask"]["p50"]
    print(f"  ratio numpy/faiss p50: {r:.2f}x unfiltered, {rm:.2f}x filtered; p99: "
          f"{stats['numpy']['p99'] / stats['faiss']['p99']:.2f}x, "
          f"{stats['numpy+mask']['p99'] / stats['faiss+mask']['p99']:.2f}x")
    print(f"  a filtered Searcher query costs mask build + faiss+mask = "
          f"{stats['mask build']['p50'] + stats['faiss+mask']['p50']:.2f} ms p50")
    print(f"  {load_note(max(0.0, others), time.perf_counter() - t0)}")
    return [(n, name, s) for name, s in stats.items()]


TEXTS = ["a photo of a cat", "an astronaut in a white suit", "a cup of coffee on a table",
         "a red motorcycle", "the surface of the moon", "a horse in a field", "coins",
         "a rocket on the launch pad", "galaxies in deep space", "a brick wall",
         "a foggy forest at dawn", "children playing on the beach", "a city at night",
         "snow on the mountains", "a dog running in the park", "a plate of pasta"]


def e2e(args) -> None:
    """Searcher.search latency with a full-size ViT-B-32 (random weights) on a real store."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["XDG_CACHE_HOME"] = os.path.join(args.work, "cache")
    import torch

    from loupe.indexer.encoders import load_encoder
    from loupe.search.ann import build_index
    from loupe.search.engine import Searcher
    from loupe.search.store import Store

    print(f"\n== end to end: Searcher.search, text queries, ViT-B-32 random weights, "
          f"torch {torch.__version__} threads={torch.get_num_threads()} ==", flush=True)
    weights = vit_b32_weights(args.work, args.seed)
    t = time.perf_counter()
    enc = load_encoder("ViT-B-32", weights, "cpu")
    load_s = time.perf_counter() - t
    print(f"  model load (load_encoder, weights hash cached): {load_s:.2f}s")

    if args.db:
        db = args.db
        folder = None
    else:
        db = os.path.join(args.work, f"db-search-{args.e2e_rows}")
        marker = os.path.join(db, ".bench-complete")
        if not os.path.exists(marker):
            import shutil

            shutil.rmtree(db, ignore_errors=True)
            t = time.perf_counter()
            store = Store(db, create=True)
            column = store.register_encoder(enc.spec)
            vecs = unit_vectors(args.e2e_rows, enc.dim, args.seed + 2)
            paths = bench_paths(args.e2e_rows, "/bench/e2e")
            from loupe.search.store import item_id

            for s in range(0, args.e2e_rows, 1000):
                rows = [{"id": item_id(p), "path": p, "kind": "photo", "size": 3_000_000,
                         "mtime_ns": 0, "fingerprint": f"{i:032x}", "width": 4000,
                         "height": 3000, "timestamp": None, "indexed_at": time.time(),
                         column: vecs[i]} for i, p in enumerate(paths[s:s + 1000], s)]
                store.upsert_items(rows)
            store.optimize()
            build_index(store, column)
            open(marker, "w").close()
            print(f"  built a store of {args.e2e_rows:,} rows at {db} in "
                  f"{time.perf_counter() - t:.1f}s")
        folder = "/bench/e2e/f03"
    store = Store(db)
    searcher = Searcher(store, enc)
    t = time.perf_counter()
    searcher.search([TEXTS[0]], k=args.k)
    first_s = time.perf_counter() - t
    n_rows = len(searcher.index)
    print(f"  store {db}: {n_rows:,} rows; first query (loads the FAISS index): "
          f"{first_s * 1000:.0f} ms")

    texts = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(args.e2e_queries)]
    busy0, own0, t_all = cpu_busy_s(), time.process_time(), time.perf_counter()
    tot, emb, ver, vec_s = [], [], [], []
    for warm in texts[:3]:
        searcher.search([warm], k=args.k)
    for text in texts:
        t = time.perf_counter()
        searcher.search([text], k=args.k)
        tot.append(time.perf_counter() - t)
    for text in texts:  # the parts, timed separately
        t0 = time.perf_counter()
        v = enc.embed_texts([text])[0]
        t1 = time.perf_counter()
        searcher.index  # noqa: B018 - the store-version check each search does
        t2 = time.perf_counter()
        searcher.search_vector(v, k=args.k)
        t3 = time.perf_counter()
        emb.append(t1 - t0)
        ver.append(t2 - t1)
        vec_s.append(t3 - t2)
    filt = []
    if folder:
        for text in texts:
            t = time.perf_counter()
            searcher.search([text], k=args.k, folder=folder)
            filt.append(time.perf_counter() - t)
    print(f"  {'part':<40} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    parts = [("Searcher.search (whole call)", tot),
             ("  embed_texts (tokenise + encode_text)", emb),
             ("  .index (store.version() check)", ver),
             ("  search_vector (mask + FAISS + hits)", vec_s)]
    if filt:
        parts.append((f"Searcher.search, folder={folder}", filt))
    for name, times in parts:
        s = summary_ms(times)
        print(f"  {name:<40} {s['p50']:9.2f} {s['p99']:9.2f} {s['mean']:9.2f}")
    others = (cpu_busy_s() - busy0) - (time.process_time() - own0)
    print(f"  {load_note(max(0.0, others), time.perf_counter() - t_all)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="numbers of vectors (10000,100000,1000000)")
    ap.add_argument("--dim", type=int, default=512, help="vector dimension (512)")
    ap.add_argument("-k", type=int, default=10, help="results per query (10)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per method (200)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed queries first (5)")
    ap.add_argument("--mask-queries", type=int, default=20,
                    help="timed RowCatalog.mask(folder=...) calls (20)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0)")
    ap.add_argument("--work", default=DEFAULT_WORK, help=f"scratch folder ({DEFAULT_WORK})")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end Searcher part")
    ap.add_argument("--e2e-rows", type=int, default=5000, help="rows of the e2e store (5000)")
    ap.add_argument("--e2e-queries", type=int, default=50, help="timed e2e text queries (50)")
    ap.add_argument("--db", default=None,
                    help="existing Loupe store for the e2e part (built with the same ViT-B-32 "
                         "random weights, e.g. WORK/db-index-vitb32 from bench_index.py)")
    ap.add_argument("--only-e2e", action="store_true", help="skip part 1")
    args = ap.parse_args(argv)
    args.work = os.path.abspath(args.work)

    import faiss

    print(f"bench_search: {machine_info()}")
    print(f"  numpy {np.__version__}, faiss {faiss.__version__} "
          f"(omp_get_max_threads={faiss.omp_get_max_threads()})")
    for line in threadpool_info():
        print(f"  {line}")
    rows = []
    if not args.only_e2e:
        for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
            rows += bench_size(n, args)
            gc.collect()  # free the previous size's vectors before the next
        print("\n== summary (ms; ratio = numpy / FAISS, >1 means FAISS is faster) ==")
        print(f"  {'N':>9} {'faiss p50':>10} {'p99':>8} {'numpy p50':>10} {'p99':>8} "
              f"{'ratio':>6} | {'f+mask p50':>10} {'p99':>8} {'np+mask p50':>11} {'p99':>8} "
              f"{'ratio':>6} | {'mask build':>10} {'arrow mask':>10} {'bitmap p50':>10}")
        by = {(n, name): s for n, name, s in rows}
        for n in sorted({n for n, _, _ in rows}):
            f, npy = by[(n, "faiss")], by[(n, "numpy")]
            fm, nm = by[(n, "faiss+mask")], by[(n, "numpy+mask")]
            print(f"  {n:>9,} {f['p50']:10.3f} {f['p99']:8.3f} {npy['p50']:10.3f} "
                  f"{npy['p99']:8.3f} {npy['p50'] / f['p50']:5.2f}x | {fm['p50']:10.3f} "
                  f"{fm['p99']:8.3f} {nm['p50']:11.3f} {nm['p99']:8.3f} "
                  f"{nm['p50'] / fm['p50']:5.2f}x | {by[(n, 'mask build')]['p50']:10.3f} "
                  f"{by[(n, 'arrow mask')]['p50']:10.3f} {by[(n, 'bitmap+mask')]['p50']:10.3f}")
    if not args.no_e2e:
        e2e(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
