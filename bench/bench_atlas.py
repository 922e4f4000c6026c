"""The atlas (search/explain/atlas.py) at scale: UMAP and PCA maps of ``--n`` (100k) items.

A Loupe store of ``--n`` synthetic unit vectors of dimension ``--dim`` (512), drawn
around ``--clusters`` (50) random centres (photos; paths in 100 folders), is built once
under ``--work`` and reused. Then, on that store:

- ``pca``          ``compute_atlas(method="pca")``: reading the vectors + PCA + labels;
- ``umap warm-up`` UMAP of 300 and then 5000 points in this process: numba compiles
                   umap's and pynndescent's code on the first calls of a process (what
                   the first map a `loupe ui` process draws pays once);
- ``umap``         ``compute_atlas(method="umap")`` after the warm-up;
- ``save``         writing the atlas to ``DB/atlas/`` (Arrow file, atomic);
- ``load``         ``load_atlas`` from the cache (what every later page view costs,
                   median of ``--loads``);
- ``figure``       the Atlas page's plotly figure (ui/atlas_view.figure, 100 search hits
                   marked): build time, ``plotly.io.to_json`` time and size (what
                   Streamlit sends to the browser).

Run::

    source .venv/bin/activate
    python bench/bench_atlas.py                    # 100k x 512
    python bench/bench_atlas.py --n 20000 --no-umap

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from _common import DEFAULT_WORK, machine_info, threadpool_info

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int,
                           chunk: int = 20_000) -> np.ndarray:
    """(n, dim) float32 unit rows around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        block = centres[rng.integers(0, clusters, m)]
        block = block + rng.standard_normal((m, dim), dtype=np.float32) * (0.7 / np.sqrt(dim))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s:s + m] = block
    return out


def build_store(db: str, n: int, dim: int, clusters: int, seed: int):
    """The bench store (built once; a marker file says it is complete)."""
    import shutil

    import pyarrow as pa

    from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
    from loupe.search.store import Store, item_id, items_schema

    marker = os.path.join(db, ".bench-complete")
    if os.path.exists(marker):
        return Store(db)
    shutil.rmtree(db, ignore_errors=True)
    t = time.perf_counter()
    store = Store(db, create=True)
    column = store.register_encoder(EncoderSpec(
        backend="bench", model=f"synthetic-{dim}", weights="none", weights_id="bench-v1",
        dim=dim, preprocess=ImagePreprocess(size=(224, 224))))
    vecs = clustered_unit_vectors(n, dim, clusters, seed)
    schema = items_schema({column: dim})
    now = time.time()
    for s in range(0, n, 20_000):
        idx = range(s, min(n, s + 20_000))
        paths = [f"/bench/atlas/f{i * 100 // n:02d}/IMG_{i:07d}.jpg" for i in idx]
        cols = {"id": [item_id(p) for p in paths], "path": paths,
                "kind": ["photo"] * len(paths), "size": [3_000_000] * len(paths),
                "mtime_ns": [0] * len(paths), "fingerprint": [f"{i:032x}" for i in idx],
                "width": [4000] * len(paths), "height": [3000] * len(paths),
                "timestamp": [None] * len(paths), "indexed_at": [now] * len(paths)}
        flat = pa.array(vecs[s:s + len(paths)].reshape(-1), pa.float32())
        arrays = [pa.array(cols[f.name], f.type) if f.name in cols else
                  (pa.FixedSizeListArray.from_arrays(flat, dim) if f.name == column
                   else pa.nulls(len(paths), f.type)) for f in schema]
        store.items().add(pa.Table.from_arrays(arrays, schema=schema))
    store.optimize()
    open(marker, "w").close()
    print(f"  built a store of {n:,} x {dim} at {db} in {time.perf_counter() - t:.1f}s")
    return Store(db)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--no-umap", action="store_true")
    ap.add_argument("--work", default=DEFAULT_WORK)
    args = ap.parse_args(argv)

    import plotly
    import plotly.io as pio

    from loupe.search.explain import atlas as A

    print(f"bench_atlas: {machine_info()}")
    print(f"  numpy {np.__version__}, plotly {plotly.__version__}, umap "
          f"{_version('umap-learn')}, numba {_version('numba')}")
    for line in threadpool_info():
        print(f"  {line}")
    # BLAS threads spin while waiting: on a busy machine the PCA can run several times
    # slower with 2 threads than with OPENBLAS_NUM_THREADS=1.
    print("  load average before: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    db = os.path.join(args.work, f"db-atlas-{args.n}-{args.dim}")
    print(f"\n== {args.n:,} items x {args.dim} ({args.clusters} clusters) ==")
    store = build_store(db, args.n, args.dim, args.clusters, args.seed)

    t = time.perf_counter()
    pca = A.compute_atlas(store, method="pca", max_points=args.n)
    print(f"  pca           {time.perf_counter() - t:8.2f} s  (compute_atlas: read + PCA + "
          f"labels; {len(pca):,} points)")
    t = time.perf_counter()
    version, table = store.read_vectors(store.meta.query_column()[0])
    print(f"  read vectors  {time.perf_counter() - t:8.2f} s  (store.read_vectors alone, "
          f"{table.num_rows:,} rows)")
    atlas = pca
    if not args.no_umap and A.umap_available():
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        A.umap_2d(rng.standard_normal((300, 16)))
        t1 = time.perf_counter()
        A.umap_2d(rng.standard_normal((5000, 16)))
        t2 = time.perf_counter()
        print(f"  umap warm-up  {t1 - t:8.2f} s  (300 points, exact k-NN) + "
              f"{t2 - t1:.2f} s (5000 points, pynndescent): numba compiling")
        t = time.perf_counter()
        atlas = A.compute_atlas(store, method="umap", max_points=args.n,
                                on_progress=lambda m: print(f"    {time.perf_counter() - t:7.1f}"
                                                            f" s  {m}", flush=True))
        print(f"  umap          {time.perf_counter() - t:8.2f} s  (compute_atlas, "
              f"single-threaded: seeded)")
    t = time.perf_counter()
    path = A.save_atlas(store, atlas, args.n)
    print(f"  save          {time.perf_counter() - t:8.2f} s  ({os.path.getsize(path) / 2**20:.1f}"
          f" MiB, {os.path.basename(path)})")
    loads = []
    for _ in range(args.loads):
        t = time.perf_counter()
        got = A.load_atlas(store, method=atlas.requested, max_points=args.n)
        loads.append(time.perf_counter() - t)
        assert got.cached
    print(f"  load          {statistics.median(loads):8.3f} s  (load_atlas from the cache, "
          f"median of {len(loads)})")

    from loupe.ui.views.atlas import figure

    hits = np.arange(0, len(atlas), max(1, len(atlas) // 100))[:100]
    t = time.perf_counter()
    fig = figure(atlas, hits)
    t_fig = time.perf_counter() - t
    t = time.perf_counter()
    js = pio.to_json(fig, validate=False)
    t_json = time.perf_counter() - t
    print(f"  figure        {t_fig:8.3f} s  build; to_json {t_json:.3f} s; "
          f"{len(js) / 2**20:.2f} MiB JSON ({len(atlas):,} points, {len(hits)} hits)")
    no_hover = len(js) - sum(len(s) + 3 for s in atlas.labels.tolist())
    print(f"                           (of which hover labels ~{(len(js) - no_hover) / 2**20:.2f}"
          " MiB; coordinates and customdata go as base64 typed arrays)")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
