"""Re-scan at scale: how long ``loupe index`` takes over a large folder that has not changed.

Makes ``--files`` (100,000) small image files with distinct content (16x16 PNGs whose
pixels encode the file number plus seeded noise, so no two files share a fingerprint
and none is reused), ``--per-folder`` (1000) to a folder, written in parallel. Indexes
them once with the tiny open_clip model through the real CLI (fresh database; this
first run takes a while and its time is reported too), then runs the same command again
``--rescans`` times over the unchanged folder and reports each re-scan's wall time
(interpreter start + model load included), its own run time (the CLI's ``seconds``) and
files/s, with the peak memory of the process tree.

Then (``--no-breakdown`` to skip) it times the phases of an unchanged run in-process,
the way ``loupe.indexer.pipeline.run.index_paths`` does them, to show where the seconds go: the
directory walk, reading the file states from the store, the diff, ``store.optimize()``
and the FAISS rebuild.

Run::

    source .venv/bin/activate
    python bench/bench_rescan.py                   # 100,000 files (first run: minutes)
    python bench/bench_rescan.py --files 10000     # quicker
    python bench/bench_rescan.py --files 1000000 --per-folder 2000 --work /data/lb

The file set is kept in WORK/rescan-N (marked complete by a hidden file) and reused on the
next run; the database is rebuilt unless ``--keep-db`` finds one complete.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np
from _common import (
    DEFAULT_WORK,
    bench_env,
    loupe_index_cmd,
    machine_info,
    mib,
    model_args,
    prehash_weights,
    run_monitored,
)
from PIL import Image


def _write_folder(task: tuple[str, int, int, int]) -> int:
    """Write files [start, stop) into one folder; returns how many were written."""
    folder, start, stop, seed = task
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng([seed, start])
    noise = rng.integers(0, 256, size=(stop - start, 16, 16, 3), dtype=np.uint8)
    for j, i in enumerate(range(start, stop)):
        px = noise[j]
        px[0, 0] = (i & 0xFF, (i >> 8) & 0xFF, (i >> 16) & 0xFF)  # unique per file
        px[0, 1] = ((i >> 24) & 0xFF, 0, 0)
        Image.fromarray(px, "RGB").save(os.path.join(folder, f"img_{i:07d}.png"),
                                        compress_level=1)
    return stop - start


def make_files(root: str, n: int, per_folder: int, seed: int) -> float:
    """Make ``n`` distinct 16x16 PNGs under ``root`` (skipped when already complete)."""
    marker = os.path.join(root, f".complete-{n}-{per_folder}-{seed}")
    if os.path.exists(marker):
        return 0.0
    if os.path.exists(root):
        shutil.rmtree(root)
    tasks = [(os.path.join(root, f"d{start // per_folder:05d}"), start,
              min(n, start + per_folder), seed) for start in range(0, n, per_folder)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        done = sum(pool.imap_unordered(_write_folder, tasks))
    assert done == n
    open(marker, "w").close()
    return time.perf_counter() - t0


def breakdown(root: str, db: str) -> None:
    """Time the phases of an unchanged run in-process (as index_paths does them)."""
    from loupe.indexer.scan import scan
    from loupe.search.ann import build_index
    from loupe.search.store import Store

    def timed(label: str, fn):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        print(f"    {label:<44} {dt:8.3f}s")
        return out, dt

    print("  phases of an unchanged run, in-process:")
    store, _ = timed("open store (Store(db))", lambda: Store(db))
    column = next(iter(store.meta.encoders))
    timed("store.items() (open table)", store.items)
    entries, _ = timed("scan() walk + stat", lambda: list(scan([os.path.abspath(root)])))
    states, _ = timed("store.item_states()", store.item_states)
    timed("store.skipped_states()", store.skipped_states)

    def diff():
        return sum(1 for e in entries if (s := states.get(e.path)) is not None
                   and s.size == e.size and s.mtime_ns == e.mtime_ns)

    same, _ = timed("diff (size + mtime)", diff)
    seen = {e.path for e in entries}
    timed("gone-file check (set of paths)", lambda: [p for p in states if p not in seen])
    timed("known fingerprints frozenset",
          lambda: frozenset(s.fingerprint for s in states.values() if s.fingerprint))
    v0 = store.version()
    timed("store.optimize() (if the run calls it)", store.optimize)
    v1 = store.version()
    timed("build_index() (if the run calls it)", lambda: build_index(store, column))
    print(f"    ({len(entries)} files walked, {same} unchanged; items version {v0} -> {v1} "
          f"across optimize())")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=100_000, help="files to make (100000)")
    ap.add_argument("--per-folder", type=int, default=1000, help="files per folder (1000)")
    ap.add_argument("--work", default=DEFAULT_WORK, help=f"scratch folder ({DEFAULT_WORK})")
    ap.add_argument("--seed", type=int, default=0, help="content seed (0)")
    ap.add_argument("--rescans", type=int, default=2, help="unchanged re-scans to time (2)")
    ap.add_argument("--workers", type=int, default=None,
                    help="--workers for loupe index (default: the CLI's, one per core)")
    ap.add_argument("--keep-db", action="store_true",
                    help="reuse a complete database from an earlier run (skip the first run)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the in-process phases")
    ap.add_argument("--interval", type=float, default=0.2, help="memory sampling period (s)")
    args = ap.parse_args(argv)

    work = os.path.abspath(args.work)
    root = os.path.join(work, f"rescan-{args.files}")
    db = os.path.join(work, f"db-rescan-{args.files}")
    cores = os.cpu_count() or 1
    env = bench_env(work)
    flags, label = model_args(work, tiny=True, seed=args.seed)
    prehash_weights(work, flags)
    extra = ["--workers", str(args.workers)] if args.workers is not None else []
    print(f"bench_rescan: {machine_info()}")
    print(f"  model: {label}; {args.files:,} distinct 16x16 PNGs, {args.per_folder} per folder")

    t = make_files(root, args.files, args.per_folder, args.seed)
    print(f"  made the files in {t:.1f}s ({args.files / t:,.0f} files/s)" if t
          else f"  files already in {root}")

    done_marker = os.path.join(db, ".bench-complete")
    if not (args.keep_db and os.path.exists(done_marker)):
        if os.path.exists(db):
            shutil.rmtree(db)
        print(f"\n[1] first run (indexes everything) into {db}", flush=True)
        r = run_monitored(loupe_index_cmd([root], db, flags, extra), env=env,
                          interval=args.interval)
        if r.returncode != 0:
            raise SystemExit(f"first run failed (rc {r.returncode}):\n{r.stderr[-4000:]}")
        rep = r.json()
        print(f"  wall {r.wall_s:.1f}s, run {rep['seconds']:.1f}s: {rep['embedded']:,} embedded, "
              f"{rep['skipped']} skipped; {rep['embedded'] / rep['seconds']:,.0f} files/s in the "
              f"run; peak tree RSS {mib(r.peak_rss)}"
              + (f", PSS {mib(r.peak_pss)}" if r.peak_pss else "")
              + f"; CPU {r.cpu_s:.0f}s = {r.cpu_s / r.wall_s / cores * 100:.0f}% of {cores} cores")
        print(f"  {r.load_note}")
        open(done_marker, "w").close()
    else:
        print(f"\n[1] first run skipped: reusing {db}")

    print(f"\n[2] unchanged re-scans ({args.rescans}), same command, same database", flush=True)
    for i in range(args.rescans):
        r = run_monitored(loupe_index_cmd([root], db, flags, extra), env=env,
                          interval=args.interval)
        if r.returncode != 0:
            raise SystemExit(f"re-scan failed (rc {r.returncode}):\n{r.stderr[-4000:]}")
        rep = r.json()
        print(f"  re-scan {i + 1}: wall {r.wall_s:.2f}s (end to end), run {rep['seconds']:.2f}s; "
              f"{rep['files_seen']:,} seen, {rep['unchanged']:,} unchanged, "
              f"{rep['embedded']} embedded; {rep['files_seen'] / rep['seconds']:,.0f} files/s in "
              f"the run, {rep['files_seen'] / r.wall_s:,.0f} files/s end to end; peak tree RSS "
              f"{mib(r.peak_rss)}; {r.load_note}", flush=True)
    print(f"  memory measured by: {r.method}")

    if not args.no_breakdown:
        print()
        breakdown(root, db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
