"""Streaming a large file through Loupe's file route (ui/routes.py) on a real server.

Makes a sparse file of ``--gb`` (2) GB (zeros, no disk used, a few marked bytes),
records it in a fresh index as one video item (its size, mtime and fingerprint as the
indexer takes them), serves the index's file routes with uvicorn on 127.0.0.1 in a
process of its own, and reads the whole file through ``GET /loupe/file/ID`` ``--runs``
(2) times, then a few hundred random 1 MiB ranges. Prints the throughput and the server's
RSS before, its peak during each stream (sampled, and the kernel's high-water mark) and
after. Numbers only: nothing is asserted.

Run::

    .venv/bin/python bench/bench_stream.py
    .venv/bin/python bench/bench_stream.py --gb 8 --work /data/lb
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers.file_server import (  # noqa: E402
    memory,
    record_file,
    reset_peak,
    serve_files,
    sparse_file,
)

from loupe.search.store import Store  # noqa: E402

MIB = 1 << 20


class Sampler(threading.Thread):
    """The highest RSS of a process, sampled every 20 ms until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, memory(self.pid)["rss"])
            time.sleep(0.02)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=float, default=2.0, help="file size in GB (2)")
    p.add_argument("--runs", type=int, default=2, help="whole-file reads (2)")
    p.add_argument("--ranges", type=int, default=300, help="random 1 MiB range reads (300)")
    p.add_argument("--work", default="/tmp/loupe-bench/stream")
    a = p.parse_args()

    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "archive").mkdir(parents=True)
    size = int(a.gb * 1e9)
    path = work / "archive" / "big.mp4"
    sparse_file(str(path), size, {0: b"FIRST", size // 2: b"MIDDLE", size - 4: b"LAST"})
    store = Store(str(work / "db"), create=True)
    store.meta.add_roots([str(work / "archive")], time.time() - 1)
    iid = record_file(store, str(path))
    print(f"file: {size / 1e9:.2f} GB sparse at {path}")

    with serve_files(store.dir) as server:
        url = server.file_url(iid)
        with urllib.request.urlopen(urllib.request.Request(
                url, headers={"Range": "bytes=0-4"})) as r:  # warm up
            assert r.read() == b"FIRST"
        idle = memory(server.pid)["rss"]
        print(f"server RSS before: {idle / MIB:.0f} MiB")
        for run in range(a.runs):
            reset_peak(server.pid)
            sampler = Sampler(server.pid)
            sampler.start()
            got, t0 = 0, time.monotonic()
            with urllib.request.urlopen(url, timeout=120) as r:
                while chunk := r.read(MIB):
                    got += len(chunk)
            seconds = time.monotonic() - t0
            sampled = sampler.stop()
            hwm = memory(server.pid)["peak"]
            assert got == size, (got, size)
            print(f"run {run + 1}: {got / 1e9:.2f} GB in {seconds:.2f} s = "
                  f"{got / seconds / 1e6:.0f} MB/s; server RSS peak {sampled / MIB:.0f} MiB "
                  f"sampled, {hwm / MIB:.0f} MiB high-water (+{(hwm - idle) / MIB:.0f} MiB)")
        rng = random.Random(0)
        reset_peak(server.pid)
        t0 = time.monotonic()
        for _ in range(a.ranges):
            start = rng.randrange(0, size - MIB)
            req = urllib.request.Request(url, headers={"Range": f"bytes={start}-{start + MIB - 1}"})
            with urllib.request.urlopen(req) as r:
                assert r.status == 206 and len(r.read()) == MIB
        seconds = time.monotonic() - t0
        print(f"{a.ranges} random 1 MiB ranges: {seconds / a.ranges * 1000:.1f} ms each "
              f"(checked and served); RSS high-water {memory(server.pid)['peak'] / MIB:.0f} MiB")
        time.sleep(1)
        print(f"server RSS after: {memory(server.pid)['rss'] / MIB:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
