"""Search replicas on one tables URI: throughput with 1, 2 and 4 `loupe serve` replicas,
and the time a re-index takes to reach every replica.

A local S3-API server (moto, tests/helpers/s3.py, in its own process on 127.0.0.1) holds
the tables of a store of ``--items`` (20,000) synthetic unit vectors recorded as
embedded by the tests' tiny open_clip, so that every replica embeds every query with a
real (tiny: about a millisecond) text tower and the time measured is the replica's:
HTTP, the JSON API, the index search, reading the hits' rows from the tables. The
indexer's folder is local (meta.json); each replica gets an empty folder of its own and
``--tables-uri s3://loupe/bench`` (see search/store/meta.py: it reads the meta from the
tables and builds or opens its index from them).

For each replica count R of ``--replicas`` (1 2 4): R replicas started at once, each
warmed by a few queries, then ``--clients`` (8) threads sending ``--queries`` (40) each
POST /api/v1/search {"q": WORDS, "k": 10} round-robin over the replicas: requests per
second and latency p50 / p99. Then, with the largest R running, ``loupe index`` (in this
process) adds a folder of ``--new`` (5) pictures, and each replica is asked (every 50 ms)
for hits in that folder until all answer: the seconds from the index run's return (its
commit) to each replica's first answer with them.

This machine has 2 cores (``os.cpu_count()`` is printed): every replica, every client
thread and the S3 server share them, so more replicas cannot add throughput beyond two
cores' worth; the numbers show the overhead of more processes, not the scaling on more
machines. Run::

    source .venv/bin/activate
    python bench/bench_replicas.py                       # LOUPE_ANN auto (lance on S3)
    LOUPE_ANN=faiss python bench/bench_replicas.py       # each replica builds FAISS
    python bench/bench_replicas.py --items 5000 --replicas 1 2 --queries 20

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

from _common import (
    DEFAULT_WORK,
    REPO,
    add_random_photos,
    bench_env,
    machine_info,
    percentile,
    run_clients,
    tiny_model_dir,
)

sys.path.insert(0, str(REPO / "tests"))

WORDS = ["a photo of a cat", "an astronaut in a white suit", "a cup of coffee on a table",
         "a rocket launching", "the moon at night", "a horse in a field", "coins on a desk",
         "a red motorcycle"]


def synthetic_store(db: str, uri: str, n: int, model: str) -> None:
    """``n`` random unit vectors in tables at ``uri`` (meta in ``db``), recorded as the
    tiny model's."""
    import numpy as np

    from loupe.indexer.encoders import load_encoder
    from loupe.search.store import Store

    spec = load_encoder(model, None, "cpu").spec
    store = Store(db, create=True, tables_uri=uri)
    column = store.register_encoder(spec)
    add_random_photos(store, column, 0, n, np.random.default_rng(7), "replicas")
    store.meta.mark_complete(column)


def ask(r, body: dict) -> list[dict]:
    request = urllib.request.Request(
        r.url + "/api/v1/search", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {r.key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["hits"]


def load(reps: list, clients: int, queries: int) -> tuple[list[float], float, int]:
    """``clients`` threads, ``queries`` each, round-robin over ``reps``: (latencies,
    wall seconds, errors)."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(c: int) -> None:
        for i in range(queries):
            r = reps[(c + i) % len(reps)]
            t = time.perf_counter()
            try:
                ask(r, {"q": f"{WORDS[(c + i) % len(WORDS)]} {c * queries + i}", "k": 10})
            except OSError:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                lat.append(time.perf_counter() - t)

    return lat, run_clients(worker, clients), errors[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=os.path.join(DEFAULT_WORK, "replicas"))
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queries", type=int, default=40, help="per client")
    p.add_argument("--new", type=int, default=5, help="pictures the re-index adds")
    args = p.parse_args(argv)

    from helpers.media import solid
    from helpers.s3 import replicas, s3_server

    from loupe.search.cli import main as loupe

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model = tiny_model_dir(str(work.parent))
    print(f"{machine_info()}; LOUPE_ANN={os.environ.get('LOUPE_ANN', 'auto')}")
    print(f"{args.items:,} items in a local S3 (moto) bucket, tiny open_clip queries, "
          f"{args.clients} client threads x {args.queries} queries")
    with s3_server(work) as s3:
        env = {**bench_env(str(work)), **s3.env()}
        os.environ.update(s3.env())
        os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
        uri = s3.uri("bench")
        t = time.perf_counter()
        synthetic_store(str(work / "indexer-db"), uri, args.items, model)
        print(f"store written to {uri} in {time.perf_counter() - t:.1f}s")
        rows = []
        reach: dict[str, float] = {}
        for n in sorted(args.replicas):
            folders = [work / f"r{n}-{i}" for i in range(n)]
            t = time.perf_counter()
            with replicas(folders, uri, env, work) as reps:
                started = time.perf_counter() - t
                t = time.perf_counter()
                for r in reps:  # model loaded, index built or opened, first queries done
                    for w in WORDS[:3]:
                        ask(r, {"q": w, "k": 10})
                warm = time.perf_counter() - t
                same = len({json.dumps([(h["id"], round(h["score"], 5)) for h in
                                        ask(r, {"q": WORDS[0], "k": 10})]) for r in reps}) == 1
                lat, wall, errors = load(reps, args.clients, args.queries)
                rows.append((n, len(lat) / wall, percentile(lat, 50) * 1e3,
                             percentile(lat, 99) * 1e3, errors, started, warm, same))
                print(f"  {n} replica(s): {rows[-1][1]:.1f} q/s, p50 {rows[-1][2]:.0f} ms, "
                      f"p99 {rows[-1][3]:.0f} ms ({errors} errors; started in {started:.1f}s, "
                      f"first queries {warm:.1f}s; same answers: {same})", flush=True)
                if n == max(args.replicas):
                    new = work / "new-pictures"
                    new.mkdir()
                    for i in range(args.new):
                        solid(new / f"new-{i}.png", (40 * i % 256, 200, 90))
                    t = time.perf_counter()
                    assert loupe(["index", str(new), "--db", str(work / "indexer-db"),
                                  "--workers", "0", "--quiet"]) == 0
                    committed = time.perf_counter()
                    index_s = committed - t
                    while len(reach) < n and time.perf_counter() - committed < 120:
                        for r in reps:
                            if r.folder.name not in reach and ask(
                                    r, {"q": "green", "k": 10, "folder": str(new)}):
                                reach[r.folder.name] = time.perf_counter() - committed
                        time.sleep(0.05)
    print("\n| replicas | queries/s | p50 ms | p99 ms | errors | start s | first queries s "
          "| same answers |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, qps, p50, p99, errors, started, warm, same in rows:
        print(f"| {n} | {qps:.1f} | {p50:.0f} | {p99:.0f} | {errors} | {started:.1f} | "
              f"{warm:.1f} | {same} |")
    print(f"\nre-index of {args.new} pictures: `loupe index` took {index_s:.1f}s; seen by "
          f"{len(reach)} of {max(args.replicas)} replicas, after (s from its commit):")
    print("| replica | seconds |\n| --- | --- |")
    for name, s in sorted(reach.items()):
        print(f"| {name} | {s:.2f} |")
    print(f"\n{os.cpu_count()} cores: replicas, clients and the S3 server share them; more "
          "replicas cannot add throughput beyond these cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
