"""The UI at scale: the folder filter, the panels' lists and the Index page over a store of
``--n`` (1M) items.

A synthetic Loupe store is built once under ``--work`` through the real ``Store`` (its
LanceDB tables): ``--n`` photo items (8-d random vectors) and as many file records in
``--folders`` (10k) folders of a two-level tree, 1 % of them indexed in part, tags on
every item (two of 40 labels), and ``--skipped`` (100k) skip records: 60 % not media,
30 % unreadable, 10 % unsupported. Then, in this process:

- ``folder list``    ``IndexSummaries.folders``: the path column, dirnames, parents
                     (first build for the version, then the cached answer);
- ``folder search``  ``match_folders`` over that list (the sidebar's "folder contains");
- ``counts``         items per kind (``IndexSummaries.counts``), first and cached;
- ``tag labels``     the labels the stored tags use, first and cached;
- ``index_status``   the Index page's summary (``index_status(store, lists=False)``) and
                     the full CLI one (``lists=True``), each called directly;
- ``status``         ``IndexSummaries.status`` (what the Index page shows), first and
                     cached;
- ``skipped page``   one page (200 rows) of the skipped files, first (sorts the list)
                     and a later page;
- ``Index page``     ui/app.py's Index page driven by streamlit's AppTest: first render,
                     then re-renders (median of ``--renders``); the Search page likewise;
                     then the Index page after a commit (a skip record written), whose
                     first render computes the status and lists again.

Run (the first build takes a few minutes at 1M)::

    source .venv/bin/activate
    nice python bench/bench_ui_scale.py                    # 1M items, 10k folders
    python bench/bench_ui_scale.py --n 100000 --folders 1000 --skipped 10000

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np
from _common import DEFAULT_WORK, machine_info

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, "ui", "app.py")
BATCH = 50_000
LABELS = [f"label{i:02d}" for i in range(40)]


def folder_of(i: int, n: int, folders: int) -> str:
    """The folder of file ``i``: ``folders`` leaves under ~sqrt(folders) parents."""
    leaf = i * folders // n
    top = max(1, int(round(folders ** 0.5)))
    return f"/bench/archive/y{leaf // top:04d}/f{leaf % top:04d}"


def build_store(db: str, n: int, folders: int, skipped: int, seed: int = 0):
    """The bench store (built once; a marker file says it is complete)."""
    import shutil

    import pyarrow as pa

    from loupe.indexer.encoders.spec import EncoderSpec
    from loupe.search.explain.tags import TAGS, TAGS_SCHEMA
    from loupe.search.store import Store, item_id, items_schema

    marker = os.path.join(db, ".bench-complete")
    if os.path.exists(marker):
        return Store(db)
    shutil.rmtree(db, ignore_errors=True)
    t = time.perf_counter()
    store = Store(db, create=True)
    dim = 8
    column = store.register_encoder(EncoderSpec(
        backend="bench", model="synthetic-8", weights="none", weights_id="bench-v1", dim=dim))
    store.meta.update(tagging={"vocabulary": "bench-labels.txt", "column": column, "top": 2,
                               "min_share": 10.0})
    items_s = items_schema({column: dim})
    files, skips = store.files(), store.skipped()
    tags = store.table(TAGS, lambda: TAGS_SCHEMA)
    rng = np.random.default_rng(seed)
    now = time.time()
    for s in range(0, n, BATCH):
        idx = range(s, min(n, s + BATCH))
        m = len(idx)
        paths = [f"{folder_of(i, n, folders)}/IMG_{i:07d}.jpg" for i in idx]
        ids = [item_id(p) for p in paths]
        fps = [f"{i:032x}" for i in idx]
        vecs = rng.standard_normal((m, dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        cols = {"id": ids, "path": paths, "kind": ["photo"] * m, "size": [3_000_000] * m,
                "mtime_ns": [0] * m, "fingerprint": fps, "width": [4000] * m,
                "height": [3000] * m, "indexed_at": [now] * m}
        flat = pa.array(vecs.reshape(-1), pa.float32())
        store.items().add(pa.Table.from_arrays(
            [pa.array(cols[f.name], f.type) if f.name in cols else
             (pa.FixedSizeListArray.from_arrays(flat, dim) if f.name == column
              else pa.nulls(m, f.type)) for f in items_s], schema=items_s))
        files.add(pa.table({
            "path": paths, "size": [3_000_000] * m, "mtime_ns": [0] * m, "fingerprint": fps,
            "media": ["image"] * m, "rows": [1] * m, "duration": [None] * m,
            "problem": ["damaged tail" if i % 100 == 7 else None for i in idx],
            "indexed_at": [now] * m, "sound": [False] * m}, schema=files.schema))
        picks = rng.integers(0, len(LABELS), (m, 2))
        tags.add(pa.table({
            "id": ids, "key": ["bench"] * m,
            "labels": [[LABELS[a], LABELS[b]] for a, b in picks],
            "shares": [[60.0, 30.0]] * m, "tagged_at": [now] * m}, schema=TAGS_SCHEMA))
    for s in range(0, skipped, BATCH):
        idx = range(s, min(skipped, s + BATCH))
        codes = ["not-media" if i % 10 < 6 else "bad" if i % 10 < 9 else "unsupported"
                 for i in idx]
        skips.add(pa.table({
            "path": [f"{folder_of(i * n // skipped, n, folders)}/other_{i:07d}."
                     + ("txt" if c == "not-media" else "wav" if c == "unsupported" else "jpg")
                     for i, c in zip(idx, codes, strict=True)],
            "size": [1000] * len(idx), "mtime_ns": [0] * len(idx),
            "kind": ["audio" if c == "unsupported" else None for c in codes],
            "code": codes,
            "reason": ["not media" if c == "not-media" else "needs an audio model"
                       if c == "unsupported" else "cannot decode: truncated" for c in codes],
            "at": [now] * len(idx)}, schema=skips.schema))
    store.optimize()
    open(marker, "w").close()
    print(f"  built {n:,} items / files in {folders:,} folders, {skipped:,} skipped, at {db} "
          f"in {time.perf_counter() - t:.1f}s")
    return Store(db)


def timed(label: str, fn, repeat: int = 1):
    """Run ``fn`` ``repeat`` times; print the first and (repeat > 1) the median of the rest."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    rest = f" | again: {statistics.median(times[1:]) * 1000:8.1f} ms" if repeat > 1 else ""
    print(f"  {label:<36} {times[0] * 1000:9.1f} ms{rest}")
    return out


def render(at, label: str, renders: int, switch: str | None = None):
    """Time an AppTest run (first), then ``renders`` re-runs (median)."""
    t = time.perf_counter()
    (at.switch_page(switch) if switch else at).run()
    first = time.perf_counter() - t
    again = []
    for _ in range(renders):
        t = time.perf_counter()
        at.run()
        again.append(time.perf_counter() - t)
    bad = [e.value for e in at.exception] + [e.value for e in at.error]
    print(f"  {label:<36} {first * 1000:9.1f} ms | again: "
          f"{statistics.median(again) * 1000:8.1f} ms{'  ERRORS: ' + str(bad) if bad else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--folders", type=int, default=10_000)
    ap.add_argument("--skipped", type=int, default=100_000)
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--work", default=DEFAULT_WORK)
    args = ap.parse_args(argv)
    print(machine_info())
    db = os.path.join(args.work, f"ui-scale-{args.n}-{args.folders}-{args.skipped}")
    store = build_store(db, args.n, args.folders, args.skipped)

    from loupe.search.status import index_status
    from loupe.ui.core import match_folders
    from loupe.ui.summaries import IndexSummaries

    print(f"\n{args.n:,} items and file records, {args.folders:,} folders, "
          f"{args.skipped:,} skip records")
    sums = IndexSummaries(db)
    folders = timed("folder list (first, cached)", sums.folders, 3)
    print(f"    {len(folders):,} folders listed")
    last = folders[-1].rsplit("/", 2)[-2:]
    for q in ("y0042", "/".join(last), "no such folder"):
        shown, total = timed(f"folder search {q!r}", lambda q=q: match_folders(folders, q), 5)
        print(f"    {len(shown)} shown of {total:,} matches")
    timed("counts (first, cached)", sums.counts, 3)
    labels = timed("tag labels (first, cached)", sums.tag_labels, 3)
    print(f"    {len(labels)} labels")
    timed("index_status(lists=False)", lambda: index_status(store, lists=False), 3)
    timed("index_status(lists=True) (CLI)", lambda: index_status(store), 1)
    status = timed("status (first, cached)", sums.status, 3)
    print(f"    {status['skipped_count']:,} skipped, {status['partial_count']:,} partial, "
          f"{status['unsupported_count']:,} unsupported, {status['not_media']:,} not media")
    timed("skipped page 1 (first: sorts)", lambda: sums.page("skipped", 0), 1)
    timed("skipped page 100 (cached list)", lambda: sums.page("skipped", 99), 3)
    timed("skipped CSV (all rows)", lambda: sums.csv("skipped"), 1)

    from streamlit.testing.v1 import AppTest

    sys.argv = [APP, "--db", db]
    os.environ["LOUPE_UI_GATED"] = "1"  # as server.py serves the pages, behind its gate
    print("\n  AppTest (the app's own process-wide cache: first renders build the lists):")
    t = time.perf_counter()
    AppTest.from_string("import streamlit as st\nst.write(1)").run()
    print(f"  {'(AppTest start-up, once)':<36} {(time.perf_counter() - t) * 1000:9.1f} ms")
    at = AppTest.from_file(APP, default_timeout=600)
    render(at, "Search page (first, again)", args.renders)
    render(at, "Index page (first, again)", args.renders, "page_index.py")
    extra = "/bench/archive/bench-commit.jpg"  # a commit, undone after: the store stays
    store.upsert_skipped([{"path": extra, "code": "bad", "reason": "a bench commit"}])
    render(at, "Index page after a commit", args.renders)
    store.delete_paths([extra], items=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n  peak RSS {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
