"""Watch mode: the delay from a photo's arrival in a watched folder to its being searchable.

Builds an index of ``--base`` (1000) small distinct photos with a full-size ViT-B-32
(seeded random weights: the speed of the real one; ``--tiny`` for the tests' tiny model),
then, for each mode (file-system events, then polling every ``--poll`` s), starts the
watcher in this process (``start_watch``, the model already loaded, the default settle
time of 2 s unless ``--settle``) and drops ``--files`` (20) camera-sized JPEGs into the
folder one at a time, each written as a copy is (opened, written in chunks, closed), at
a random moment (so polls fall anywhere in between). The delay of each is from the end
of its copy to the end of the batch that indexed it (the FAISS index then holds it: a
search started after that finds it; each file is checked by a search by itself). Then a
burst: ``--files`` photos copied at once, the time until the last is searchable.

Run::

    source .venv/bin/activate
    python bench/bench_watch.py                 # ~2 minutes
    python bench/bench_watch.py --tiny --base 0 --files 10 --settle 0.5

Prints p50 / p90 / max per mode, and what the delay is made of (settle time, poll wait,
the run).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import time

import numpy as np
from _common import DEFAULT_WORK, machine_info, percentile, tiny_model_dir, vit_b32_weights
from PIL import Image

from loupe.indexer import IndexOptions, index_paths, load_encoder, start_watch
from loupe.search import Searcher, Store


def photo(rng: np.random.Generator, size=(1600, 1200)) -> bytes:
    """A distinct camera-like JPEG (smooth colour field plus noise)."""
    w, h = size
    base = rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.BICUBIC)
    noisy = np.asarray(im, dtype=np.int16) + rng.integers(-12, 12, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def copy_in(path: str, data: bytes, chunk: int = 64 * 1024) -> float:
    """Write ``data`` as cp does (chunks, then close); the moment it is complete."""
    with open(path, "wb") as f:
        for i in range(0, len(data), chunk):
            f.write(data[i:i + chunk])
            f.flush()
    return time.time()


def wait_indexed(w, after: float, timeout: float = 120.0) -> float:
    """The end of the first batch finished after ``after`` that added something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = w.state()
        if s.last_run is not None and s.last_run.finished > after and s.last_run.new:
            return s.last_run.finished
        if s.last_error:
            raise SystemExit(f"watcher error: {s.last_error}")
        time.sleep(0.005)
    raise SystemExit("timed out waiting for the watcher")


def found(searcher: Searcher, path: str) -> bool:
    hits = searcher.search([path], k=1)
    return bool(hits) and hits[0].path == path


def run_mode(mode: str, root: str, db: str, enc, args, rng) -> dict:
    poll = args.poll if mode == "polling" else None
    w = start_watch(db, [root], poll=poll, settle=args.settle, encoders=[enc],
                    options=IndexOptions(progress=False), initial_scan=False)
    searcher = Searcher(Store(db), enc)
    delays, runs = [], []
    try:
        inbox = os.path.join(root, f"inbox-{mode}")
        os.makedirs(inbox)
        for i in range(args.files):
            time.sleep(random.uniform(0.2, 1.0 + (poll or 0)))  # arrivals at any moment
            path = os.path.join(inbox, f"p{i:03d}.jpg")
            t = copy_in(path, photo(rng))
            done = wait_indexed(w, t)
            delays.append(done - t)
            runs.append(w.state().last_run.seconds)
            if not found(searcher, path):
                raise SystemExit(f"{path} was indexed but a search by it does not find it")
        burst = os.path.join(root, f"burst-{mode}")
        os.makedirs(burst)
        datas = [photo(rng) for _ in range(args.files)]
        before = w.state().runs
        t0 = time.time()
        for i, d in enumerate(datas):
            copy_in(os.path.join(burst, f"b{i:03d}.jpg"), d)
        t_last = time.time()
        store = Store(db)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            s = w.state()
            if not s.running and s.pending == 0 and s.runs > before:
                n = len(store.file_rows(f"starts_with(path, '{burst}/')"))
                if n == args.files:
                    break
            time.sleep(0.01)
        burst_s = w.state().last_run.finished - t_last
        burst_run = w.state().last_run.seconds
        burst_batches = w.state().runs - before
        copy_s = t_last - t0
    finally:
        w.stop()
    return {"mode": mode, "delays": delays, "runs": runs, "burst_s": burst_s,
            "burst_batches": burst_batches, "copy_s": copy_s, "poll": poll,
            "burst_run": burst_run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--base", type=int, default=1000, help="photos indexed before (1000)")
    ap.add_argument("--files", type=int, default=20, help="photos dropped in per mode (20)")
    ap.add_argument("--settle", type=float, default=2.0, help="settle seconds (2, the default)")
    ap.add_argument("--poll", type=float, default=5.0, help="polling interval (5 s)")
    ap.add_argument("--tiny", action="store_true", help="the tests' tiny model")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    work = os.path.join(args.work, f"watch-{args.base}{'-tiny' if args.tiny else ''}")
    root, db = os.path.join(work, "archive"), os.path.join(work, "db")
    built = os.path.join(work, ".built")
    if not os.path.exists(built):  # else the base index of an earlier run is reused
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(root)
    for name in os.listdir(root):  # the photos dropped in by an earlier run
        if name.startswith(("inbox-", "burst-")):
            shutil.rmtree(os.path.join(root, name))
    if args.tiny:
        enc, label = load_encoder(tiny_model_dir(args.work), None, args.device), "tiny open_clip"
    else:
        enc = load_encoder("ViT-B-32", vit_b32_weights(args.work), args.device)
        label = "ViT-B-32 (random weights)"
    rng = np.random.default_rng(0)
    random.seed(0)
    if not os.path.exists(built):
        for i in range(args.base):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
                os.path.join(root, f"base{i:05d}.png"))
    t = time.monotonic()
    index_paths([root], Store(db, create=True), enc, IndexOptions(progress=False))
    open(built, "w").close()
    print(f"{machine_info()}; load average {os.getloadavg()[0]:.1f}\nmodel {label}; base index "
          f"of {args.base} photos (made or brought up to date in "
          f"{time.monotonic() - t:.1f} s); settle {args.settle:g} s; polling every "
          f"{args.poll:g} s; photos 1600x1200 JPEG (~{len(photo(rng)) / 1e6:.1f} MB)")
    for mode in ("events", "polling"):
        r = run_mode(mode, root, db, enc, args, rng)
        d = r["delays"]
        print(f"{mode:8s} arrival -> searchable, {len(d)} photos one at a time: "
              f"p50 {percentile(d, 50):.2f} s, p90 {percentile(d, 90):.2f} s, "
              f"max {max(d):.2f} s (the run itself: p50 {percentile(r['runs'], 50):.2f} s)")
        print(f"{'':8s} burst of {args.files} copied at once ({r['copy_s']:.2f} s to copy): "
              f"the last searchable {r['burst_s']:.2f} s after its copy ended, in "
              f"{r['burst_batches']} batch(es) (the last run {r['burst_run']:.2f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
