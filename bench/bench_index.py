"""End-to-end indexing throughput through the real CLI (``python -m loupe.search.cli.main index``).

Measures, each run in its own subprocess exactly as a user runs ``loupe index``:

1. a first run over a folder of camera-sized JPEGs into a fresh database: photos/s end
   to end (process wall time, so interpreter start and model load included) and photos/s
   of the indexing run itself (the CLI's own ``seconds``: scan -> decode -> embed ->
   write -> FAISS build), wall time, CPU use, and the peak memory of the whole process
   tree (main process + spawned decode workers; see ``_common.TreeMonitor`` for how);
2. a second run over the same, unchanged folder (the re-scan): wall time and run time;
3. the JPEG draft-mode effect on a subset (``--draft-subset``, 300 files): the same files
   into fresh databases with ``--draft 0`` (full decode), ``--draft 2`` (the default) and
   ``--draft 1``, photos/s each. With the default model this is also repeated with the
   tiny model, where decoding dominates, so the decode saving is visible on its own.

The model is by default a full-size ``ViT-B-32`` with seeded random weights saved to a
local file (real weights cannot be downloaded; speed does not depend on the values) and
loaded as ``--model ViT-B-32 --pretrained FILE``. ``--tiny`` uses the tests' tiny
open_clip model instead, which isolates decode + pipeline throughput.

Photos come from ``bench/make_photos.py`` (made on first use if ``--photos`` is missing).
Files are read from the page cache (they were just written / read by the previous run).

Run::

    source .venv/bin/activate
    python bench/bench_index.py                       # 2000 photos, ViT-B-32, 300 for drafts
    python bench/bench_index.py --tiny                # decode-bound
    python bench/bench_index.py -n 500 --draft-subset 100 --workers 1
    python bench/bench_index.py -n 20000 --photos /data/photos20k --batch-size 64

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

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


def list_photos(folder: str) -> list[str]:
    """The benchmark photos in ``folder``, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(".jpg") and not n.startswith("."))


def ensure_photos(folder: str, n: int, seed: int) -> list[str]:
    """At least ``n`` photos in ``folder`` (made with make_photos if missing)."""
    have = list_photos(folder)
    if len(have) < n:
        from make_photos import make_photos

        print(f"making {n - len(have)} photos into {folder} (bench/make_photos.py)...",
              flush=True)
        s = make_photos(n, folder, seed=seed)
        print(f"  made {s['written']} in {s['seconds']:.0f}s", flush=True)
        have = list_photos(folder)
    return have


def index_run(label: str, paths: list[str], db: str, flags: list[str], env: dict,
              extra: list[str], fresh: bool = True, interval: float = 0.1) -> dict:
    """One CLI run; prints and returns its numbers."""
    if fresh and os.path.exists(db):
        shutil.rmtree(db)
    r = run_monitored(loupe_index_cmd(paths, db, flags, extra), env=env, interval=interval)
    if r.returncode != 0:
        raise SystemExit(f"{label}: loupe index failed (rc {r.returncode}):\n{r.stderr[-4000:]}")
    rep = r.json()
    n = rep["embedded"] or rep["files_seen"]
    out = {
        "label": label, "wall_s": r.wall_s, "run_s": rep["seconds"], "embedded": rep["embedded"],
        "unchanged": rep["unchanged"], "files_seen": rep["files_seen"],
        "skipped": rep["skipped"], "per_s_wall": n / r.wall_s if r.wall_s else 0.0,
        "per_s_run": n / rep["seconds"] if rep["seconds"] else 0.0,
        "peak_rss": r.peak_rss, "peak_pss": r.peak_pss, "procs": r.peak_procs,
        "cpu_s": r.cpu_s, "max_single_rss": r.max_single_rss, "method": r.method,
        "load_note": r.load_note,
    }
    return out


def print_run(o: dict, cores: int) -> None:
    """Print one run's numbers."""
    util = o["cpu_s"] / o["wall_s"] / cores * 100 if o["wall_s"] else 0.0
    pss = f", PSS {mib(o['peak_pss'])}" if o["peak_pss"] else ""
    print(f"  {o['label']}: {o['files_seen']} files, {o['embedded']} embedded, "
          f"{o['unchanged']} unchanged, {o['skipped']} skipped")
    print(f"    wall {o['wall_s']:.2f}s (end to end, incl. python start + model load); "
          f"run {o['run_s']:.2f}s (CLI's own timing); startup+load {o['wall_s'] - o['run_s']:.2f}s")
    if o["embedded"]:
        print(f"    photos/s: {o['per_s_wall']:.2f} end to end, {o['per_s_run']:.2f} in the run")
    print(f"    peak memory of the process tree ({o['procs']} processes): RSS {mib(o['peak_rss'])}"
          f"{pss}; largest single process {mib(o['max_single_rss'])}; CPU {o['cpu_s']:.1f}s "
          f"= {util:.0f}% of {cores} cores")
    print(f"    {o['load_note']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--count", type=int, default=2000, help="photos to index (2000)")
    ap.add_argument("--photos", default=None,
                    help="folder of JPEGs (default WORK/photos; made with make_photos if short)")
    ap.add_argument("--work", default=DEFAULT_WORK, help=f"scratch folder ({DEFAULT_WORK})")
    ap.add_argument("--seed", type=int, default=0, help="photo and weight seed (0)")
    ap.add_argument("--tiny", action="store_true",
                    help="tiny open_clip model instead of a full-size ViT-B-32 (decode-bound)")
    ap.add_argument("--workers", type=int, default=None,
                    help="--workers for loupe index (default: the CLI's, one per core)")
    ap.add_argument("--batch-size", type=int, default=None, help="--batch-size for loupe index")
    ap.add_argument("--draft-subset", type=int, default=300,
                    help="files for the draft-mode comparison (300; 0 skips it)")
    ap.add_argument("--drafts", default="0,2,1",
                    help="--draft factors to compare (0,2,1; 0 = full decode)")
    ap.add_argument("--no-draft-tiny", action="store_true",
                    help="do not repeat the draft comparison with the tiny model")
    ap.add_argument("--skip-main", action="store_true", help="only the draft comparison")
    ap.add_argument("--interval", type=float, default=0.1, help="memory sampling period (s)")
    args = ap.parse_args(argv)

    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    folder = os.path.abspath(args.photos or os.path.join(work, "photos"))
    photos = ensure_photos(folder, max(args.count, args.draft_subset), args.seed)
    cores = os.cpu_count() or 1
    env = bench_env(work)
    extra: list[str] = []
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    if args.batch_size is not None:
        extra += ["--batch-size", str(args.batch_size)]

    flags, label = model_args(work, args.tiny, args.seed)
    prehash_weights(work, flags)
    print(f"bench_index: {machine_info()}")
    print(f"  model: {label}; decode workers: "
          f"{args.workers if args.workers is not None else f'CLI default ({cores})'}; "
          f"photos from {folder}")
    sizes = [os.path.getsize(p) for p in photos[:args.count]]
    print(f"  {len(sizes)} photos, mean {sum(sizes) / max(1, len(sizes)) / 1e6:.2f} MB")

    if not args.skip_main:
        n = args.count
        roots = [folder] if n >= len(photos) else photos[:n]
        db = os.path.join(work, "db-index-" + ("tiny" if args.tiny else "vitb32"))
        print(f"\n[1] first run: {n} photos into a fresh database ({db})", flush=True)
        first = index_run("first run", roots, db, flags, env, extra, interval=args.interval)
        print_run(first, cores)
        print("\n[2] re-scan of the unchanged folder (second run, same database)", flush=True)
        second = index_run("re-scan", roots, db, flags, env, extra, fresh=False,
                           interval=args.interval)
        print_run(second, cores)
        print(f"    re-scan: {second['wall_s']:.2f}s wall, {second['run_s']:.2f}s in the run "
              f"({second['files_seen'] / second['run_s']:.0f} files/s in the run)")
        print(f"  memory measured by: {first['method']}")

    if args.draft_subset > 0:
        subset = photos[:args.draft_subset]
        factors = [f.strip() for f in args.drafts.split(",") if f.strip()]
        models = [(flags, label, args.tiny)]
        if not args.tiny and not args.no_draft_tiny:
            tflags, tlabel = model_args(work, True, args.seed)
            prehash_weights(work, tflags)
            models.append((tflags, tlabel, True))
        for mflags, mlabel, tiny in models:
            print(f"\n[3] draft mode, {len(subset)} photos, fresh database each, model: {mlabel}",
                  flush=True)
            rows = []
            for f in factors:
                db = os.path.join(work, f"db-draft-{'tiny' if tiny else 'vitb32'}-{f}")
                o = index_run(f"--draft {f}", subset, db, mflags, env, extra + ["--draft", f],
                              interval=args.interval)
                rows.append((f, o))
                shutil.rmtree(db, ignore_errors=True)
            base = next((o for f, o in rows if float(f) == 0), rows[0][1])
            print(f"  {'draft':>8} {'photos/s run':>13} {'photos/s e2e':>13} {'run s':>7} "
                  f"{'vs full':>8} {'peak RSS':>10}")
            for f, o in rows:
                ratio = o["per_s_run"] / base["per_s_run"] if base["per_s_run"] else 0.0
                print(f"  {f:>8} {o['per_s_run']:13.2f} {o['per_s_wall']:13.2f} "
                      f"{o['run_s']:7.2f} {ratio:7.2f}x {mib(o['peak_rss']):>10}  {o['load_note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
