"""What "what the camera knew" costs an index: a photo run with and without reading it,
upgrading a 100k-item index made before, and capture filters at 1M rows.

1. **Photo run.** ``loupe index`` with the tests' tiny open_clip model on
   ``bench_capture.py``'s camera JPEGs (3-12 MP, a camera's EXIF with GPS), into a new
   index each time, alternating runs with the extraction and without it (the decode
   workers' ``capture_of_image`` replaced by one that reads nothing: no columns filled,
   no place named); prints each run's seconds (the run's own report) and the medians.
2. **Upgrade.** A 100k-item index as Loupe wrote it before captures were read (100k
   small EXIF JPEGs on disk; the capture columns and the files' ``captured`` dropped):
   the next ``index_paths`` run with a counting toy encoder (it embeds nothing), its
   parts (reading 100k files' metadata, writing 100k rows), and, on a 100k-row table
   with 512-d vectors, the write alone through Lance's column patch and through
   LanceDB's merge_insert.
3. **Filters at 1M rows.** A ``RowCatalog`` of 1M synthetic rows (60 % with a point,
   80 % with a capture time, a few dozen cameras and lenses): each mask's first
   computation, a new value, and a cached one; and an exact 1M x 64 FAISS search with
   and without a place mask.

Run::

    source .venv/bin/activate
    python bench/bench_capture_index.py                  # all three (~10 min on 2 cores)
    python bench/bench_capture_index.py --only filters   # or run, upgrade
    python bench/bench_capture_index.py -n 500 --pairs 2 --upgrade-files 20000

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

NO_CAPTURE = "LOUPE_BENCH_NO_CAPTURE"
if os.environ.get(NO_CAPTURE):
    # At import: spawned decode workers import this main module too, so they read
    # nothing either (the "without" side of the photo run).
    from loupe.indexer.decode import worker as _worker
    from loupe.indexer.media.capture import NOTHING

    _worker.capture_of_image = lambda src: NOTHING
    _worker.capture_of_video = lambda src: NOTHING


def _one_run(photos: str, db: str, model: str, workers: int) -> None:
    """One ``loupe index`` run in this process (the parent times it)."""
    from loupe.search.cli import main

    sys.exit(main(["index", photos, "--db", db, "--model", model, "--workers", str(workers),
                   "--quiet", "--json"]))


def photo_run(args) -> None:
    from _common import bench_env, tiny_model_dir
    from bench_capture import make_exif_photos

    work = Path(args.work)
    print(f"photo run: {args.count} camera JPEGs with EXIF + GPS, tiny model, "
          f"{args.workers} workers, {args.pairs} pairs of runs (alternating)")
    paths = make_exif_photos(args.count, work)
    folder = str(paths[0].parent)
    model = tiny_model_dir(str(work))
    env = bench_env(str(work))
    for p in paths:  # a warm page cache for every run
        p.read_bytes()
    times: dict[str, list[float]] = {"with": [], "without": []}
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    order = [side for _ in range(args.pairs) for side in ("with", "without")]
    for i, side in enumerate(order):
        db = work / f"db-run-{i}"
        shutil.rmtree(db, ignore_errors=True)
        run_env = {**env, **({NO_CAPTURE: "1"} if side == "without" else {})}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, __file__, "--one-run", folder, str(db), model,
                              str(args.workers)], env=run_env, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr)
            raise SystemExit(out.returncode)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(out.stdout[out.stdout.index("{"):])
        times[side].append(report["seconds"])
        # the whole process tree's CPU (the decode workers are reaped by the run):
        # steadier than wall time on a shared machine; model loading included
        cpu[side].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        from loupe.search.store import Store

        placed = Store(str(db)).capture_counts()["placed"]
        print(f"  run {i + 1} {side:8s} {report['seconds']:7.2f} s, CPU {cpu[side][-1]:7.2f} s "
              f"({report['embedded']} photos, {placed} with a place)")
        shutil.rmtree(db, ignore_errors=True)
    w, wo = statistics.median(times["with"]), statistics.median(times["without"])
    pairs = [a / b - 1 for a, b in zip(times["with"], times["without"], strict=True)]
    print(f"  median: with {w:.2f} s, without {wo:.2f} s: {(w / wo - 1) * 100:+.1f} % "
          f"({args.count / w:.1f} vs {args.count / wo:.1f} photos/s); per pair "
          f"{', '.join(f'{p * 100:+.1f} %' for p in pairs)} (median "
          f"{statistics.median(pairs) * 100:+.1f} %)")
    cw, cwo = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    print(f"  CPU of the process tree: with {cw:.1f} s, without {cwo:.1f} s: "
          f"{(cw / cwo - 1) * 100:+.1f} %")


def _old_index(work: Path, n: int):
    """An index of ``n`` small EXIF JPEGs (made once), then made as Loupe wrote it
    before captures were read. Returns (folder, db)."""
    from helpers.exif import MAKE, MODEL, TAKEN, exif_jpeg, gps
    from helpers.toys import ToyEncoder

    from loupe.indexer.pipeline import IndexOptions, index_paths
    from loupe.search.store import CAPTURE_NAMES, Store

    folder = work / f"tiny-exif-{n}"
    marker = folder / ".done"
    if not marker.exists():
        t0 = time.perf_counter()
        for i in range(n):
            exif_jpeg(folder / f"{i // 1000:03d}" / f"IMG_{i:06d}.jpg",
                      (i % 251, (i * 7) % 251, (i * 13) % 251),
                      {MAKE: "Canon", MODEL: f"EOS R{i % 8}"},
                      {TAKEN: f"2019:0{1 + i % 9}:1{i % 10} 12:{i % 60:02d}:00"},
                      gps((38, 42, i % 60), "N", (9, 8, (i * 7) % 60), "W"))
        marker.write_text("")
        print(f"  made {n} files in {time.perf_counter() - t0:.0f} s")
    base = work / f"db-upgrade-{n}"
    if not (base / "meta.json").exists():
        shutil.rmtree(base, ignore_errors=True)
        t0 = time.perf_counter()
        index_paths([str(folder)], Store(str(base), create=True), ToyEncoder(),
                    IndexOptions(progress=False, commit_rows=5000))
        print(f"  indexed them in {time.perf_counter() - t0:.0f} s (made once)")
        store = Store(str(base))
        store.items().drop_columns(CAPTURE_NAMES)
        store.files().drop_columns(["captured"])
        store.optimize()
    db = work / "db-upgrade-copy"
    shutil.rmtree(db, ignore_errors=True)
    shutil.copytree(base, db)
    return folder, db


def upgrade(args) -> None:
    from helpers.toys import ToyEncoder

    from loupe.indexer.media.capture import capture_rows
    from loupe.indexer.pipeline import IndexOptions, index_paths
    from loupe.indexer.pipeline.recapture import RECAPTURE_THREADS, read_all
    from loupe.search.store import Store

    n = args.upgrade_files
    work = Path(args.work)
    print(f"upgrade: an index of {n:,} photos made before captures were read")
    folder, db = _old_index(work, n)
    counting = ToyEncoder()
    t0 = time.perf_counter()
    report = index_paths([str(folder)], Store(str(db)), counting,
                         IndexOptions(progress=False))
    total = time.perf_counter() - t0
    print(f"  the next run: {total:.1f} s for {report.recaptured:,} files read, "
          f"{report.embedded} embedded, the model called {counting.pixel_calls} times")
    # its parts, on a fresh copy
    folder, db = _old_index(work, n)
    store = Store(str(db))
    files = sorted(store.uncaptured_files())
    t0 = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(RECAPTURE_THREADS) as pool:
        caps = read_all([(p, "image") for p in files], pool, RECAPTURE_THREADS)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = capture_rows(caps)
    t_places = time.perf_counter() - t0
    for r, p in zip(rows, files, strict=True):
        r["path"] = p
    store.add_capture_columns()
    t0 = time.perf_counter()
    store.write_captures(rows)
    t_write = time.perf_counter() - t0
    print(f"  reading {len(files):,} files' metadata ({RECAPTURE_THREADS} threads, warm "
          f"cache): {t_read:.1f} s ({t_read / len(files) * 1e6:.0f} us/file); naming "
          f"places (towns loaded): {t_places:.2f} s; writing the rows and records: "
          f"{t_write:.2f} s")
    wide_write(work, n)


def wide_write(work: Path, n: int) -> None:
    """write_captures on ``n`` rows that hold 512-d vectors: column patch vs rewrite."""
    import lancedb.table
    import numpy as np
    import pyarrow as pa

    from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
    from loupe.search.store import CAPTURE_NAMES, Store, item_id

    spec = EncoderSpec(backend="toy", model="wide", weights="none", weights_id="w", dim=512,
                       preprocess=ImagePreprocess(size=(8, 8)))
    for how in ("column patch (pylance)", "merge_insert (LanceDB, no pylance)"):
        db = work / "db-wide"
        shutil.rmtree(db, ignore_errors=True)
        store = Store(str(db), create=True)
        col = store.register_encoder(spec)
        paths = [f"/archive/{i:07d}.jpg" for i in range(n)]
        vec = np.random.default_rng(0).random((n, 512), np.float32)
        t = store.items()
        data = {name: pa.nulls(n, t.schema.field(name).type) for name in t.schema.names}
        data.update(id=pa.array([item_id(p) for p in paths]), path=pa.array(paths),
                    kind=pa.array(["photo"] * n), indexed_at=pa.array(np.ones(n)))
        data[col] = pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 512)
        t.add(pa.table(data, schema=t.schema).drop_columns(CAPTURE_NAMES))
        rows = [{"path": p, "taken_local": "2019-01-01T12:00:00", "lat": 38.7, "lon": -9.1,
                 "camera_make": "Canon", "place": "Lisbon, Lisbon, PT"} for p in paths]
        undo = None
        if how.startswith("merge"):
            undo = lancedb.table.LanceTable.to_lance

            def no_lance(self):
                raise ImportError

            lancedb.table.LanceTable.to_lance = no_lance
        try:
            t0 = time.perf_counter()
            updated = store.write_captures(rows)
            dt = time.perf_counter() - t0
        finally:
            if undo is not None:
                lancedb.table.LanceTable.to_lance = undo
        size = sum(f.stat().st_size for f in (db / "items.lance").rglob("*") if f.is_file())
        print(f"  {n:,} rows with 512-d vectors, {how}: {dt:.2f} s for {updated:,} rows "
              f"(items table now {size / 2**20:.0f} MiB)")
        shutil.rmtree(db, ignore_errors=True)


def filters(args) -> None:
    import faiss
    import numpy as np
    import pyarrow as pa

    from loupe.search.ann import CaptureFilter, RowCatalog

    n = args.rows
    rng = np.random.default_rng(1)
    print(f"filters at {n:,} rows (one RowCatalog, as one index version holds it)")
    has_point = rng.random(n) < 0.6
    lat = np.where(has_point, rng.uniform(-60, 70, n), np.nan)
    lon = np.where(has_point, rng.uniform(-180, 180, n), np.nan)
    home = rng.random(n) < 0.05  # a twentieth taken around Lisbon, as archives cluster
    lat[home] = rng.normal(38.72, 0.2, home.sum())
    lon[home] = rng.normal(-9.14, 0.2, home.sum())
    dated = rng.random(n) < 0.8
    secs = rng.integers(1_000_000_000, 1_700_000_000, n)
    local = np.datetime_as_string(secs.astype("datetime64[s]"))
    cams = [f"Canon EOS R{i}" for i in range(10)] + [f"NIKON D{800 + i}" for i in range(10)]
    lenses = [f"RF{24 + 2 * i}mm F2.8" for i in range(20)]
    rows = pa.table({
        "id": pa.array([f"{i:024x}" for i in range(n)]),
        "path": pa.array([f"/archive/{i // 1000}/{i}.jpg" for i in range(n)]),
        "kind": pa.array(["photo"] * n),
        "timestamp": pa.nulls(n, pa.float64()), "end": pa.nulls(n, pa.float64()),
        "mtime_ns": pa.array(secs * 1_000_000_000, pa.int64()),
        "indexed_at": pa.array(np.ones(n)),
        "taken_at": pa.array(np.where(dated, secs.astype(float), np.nan),
                             from_pandas=True),
        "taken_local": pa.array([s if d else None for s, d in zip(local, dated, strict=True)]),
        "lat": pa.array(lat, from_pandas=True), "lon": pa.array(lon, from_pandas=True),
        "alt": pa.nulls(n, pa.float64()),
        "camera_make": pa.array([c.split()[0] for c in rng.choice(cams, n)]),
        "camera_model": pa.array(rng.choice(cams, n)),
        "lens": pa.array(rng.choice(lenses, n)),
        "place": pa.nulls(n, pa.string()),
    })

    def ms(f) -> float:
        t0 = time.perf_counter()
        f()
        return (time.perf_counter() - t0) * 1e3

    cat = RowCatalog(rows)
    cases = {
        "place (near a point, 25 km)": lambda i: CaptureFilter(near=(38.7 + i / 50, -9.1)),
        "date (taken between two days)": lambda i: CaptureFilter(
            taken_since=1.3e9 + i * 86400, taken_until=1.4e9),
        "date or modified": lambda i: CaptureFilter(
            taken_since=1.3e9 + i * 86400, taken_until=1.4e9, or_modified=True),
        "camera (substring of make model)": lambda i: CaptureFilter(camera=f"eos r{i}"),
        "lens (substring)": lambda i: CaptureFilter(lens=f"rf{24 + 2 * i}"),
    }
    for name, make in cases.items():
        first = ms(lambda make=make: cat.mask(capture=make(0)))
        new = [ms(lambda i=i, make=make: cat.mask(capture=make(i))) for i in range(1, 16)]
        cached = statistics.median(ms(lambda make=make: cat.mask(capture=make(1)))
                                   for _ in range(20))
        kept = int(cat.mask(capture=make(1)).sum())
        print(f"  {name:34s} first {first:7.1f} ms; a new value {statistics.median(new):5.2f} "
              f"ms (best {min(new):5.2f}); cached {cached:5.3f} ms ({kept:,} rows kept)")
    fresh = RowCatalog(rows)
    first = ms(lambda: fresh.date_keys(np.arange(10_000)))
    again = ms(lambda: fresh.date_keys(np.arange(10_000, 20_000)))
    print(f"  dates of 10,000 hits (sorting by date): first {first:.1f} ms (the catalog's "
          f"capture times read), then {again:.2f} ms")
    # an exact search over 1M vectors, without and with a place mask
    d = 64
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    faiss.normalize_L2(vecs)
    index = faiss.IndexFlatIP(d)
    index.add(vecs)
    q = vecs[:1].copy()
    place = cat.mask(capture=CaptureFilter(near=(40.0, -3.7), within_km=2000))

    def search(mask):
        if mask is None:
            return index.search(q, 10)
        sel = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
        return index.search(q, 10, params=faiss.SearchParameters(sel=sel))

    plain = statistics.median(ms(lambda: search(None)) for _ in range(10))
    masked = statistics.median(ms(lambda: search(place)) for _ in range(10))
    print(f"  exact search of {n:,} x {d} vectors: {plain:.1f} ms; with a place mask "
          f"({int(place.sum()):,} rows): {masked:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one-run"]:
        _one_run(*argv[1:4], int(argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["run", "upgrade", "filters"], default=None)
    ap.add_argument("-n", "--count", type=int, default=2000, help="photos of the run (2000)")
    ap.add_argument("--pairs", type=int, default=3, help="pairs of runs (3)")
    ap.add_argument("--workers", type=int, default=2, help="decode workers (2)")
    ap.add_argument("--upgrade-files", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=1_000_000, help="filter rows (1M)")
    ap.add_argument("--work", default="/tmp/loupe-bench/capture")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for part, fn in (("filters", filters), ("upgrade", upgrade), ("run", photo_run)):
        if args.only in (None, part):
            fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
