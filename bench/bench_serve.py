"""`loupe search` through a running server, and the JSON API's search under load.

Part 1 (``cli``): ``python -m loupe.search.cli search WORDS --db DB`` end to end as a
subprocess (start, parse, the answer printed, exit), ``--runs`` (20) times each way:

- ``here``     with ``--no-server``: the process imports torch and loads the index's model;
- ``server``   with a ``loupe serve`` of the same index running (started once, warmed
               by one query): the CLI finds it through the index folder's server file.

for two indexes of the shared corpus photos: the tests' tiny open_clip, and a full-size
ViT-B-32 with seeded random weights (a local file: nothing is downloaded; the speed is
that of the real model). Also printed: ``python -c pass`` (the interpreter alone) and the
modules imported on the path through a server (none of numpy, torch, LanceDB, Pillow).

Part 2 (``api``): at each of ``--sizes`` (100k, 1M) a store of synthetic 512-d unit
vectors (random, which does not change the speed) recorded as embedded by that ViT-B-32,
so that the server embeds every query with the real model; ``loupe serve`` on it, then
``--clients`` (4) threads each sending ``--queries`` POST /api/v1/search {"q": WORDS,
"k": 10} (different words every time) with the API key: latency p50 / p99 per request
and requests per second; one client alone for reference.

Run::

    source .venv/bin/activate
    python bench/bench_serve.py                        # both parts, 100k and 1M
    python bench/bench_serve.py --parts cli --runs 20
    python bench/bench_serve.py --parts api --sizes 100000 --queries 50
    python bench/bench_serve.py --parts api --server-threads 1   # torch on one thread

(``--server-threads 1``: on a machine other work keeps busy, torch's one-thread-per-core
pool spins against it and a 2-layer text tower takes 100 ms instead of 1; see the
report this prints.)

The stores and models are built once under ``--work``. Benchmarks print numbers; they
assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from _common import (
    DEFAULT_WORK,
    REPO,
    add_random_photos,
    bench_env,
    cpu_busy_s,
    machine_info,
    percentile,
    run_clients,
    tiny_model_dir,
    vit_b32_weights,
)

LOUPE = [sys.executable, "-m", "loupe.search.cli"]
CORPUS = REPO.parent / "shared" / "corpus" / "photos"
WORDS = ["a photo of a cat", "an astronaut in a white suit", "a cup of coffee on a table",
         "a rocket launching", "the moon at night", "a horse in a field", "coins on a desk",
         "a red motorcycle"]
HEAVY = ("numpy", "torch", "lancedb", "pyarrow", "PIL", "faiss", "open_clip")
BATCH = 50_000


def run_s(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, p


def stats(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"p50 {percentile(ms, 50):8.1f} ms  p90 {percentile(ms, 90):8.1f}  "
            f"p99 {percentile(ms, 99):8.1f}  min {min(ms):8.1f}  (n={len(ms)})")


@contextmanager
def serving(db: str, env: dict, log: str):
    """`loupe serve` on 127.0.0.1 (any free port) for ``db``; yields its ServerInfo."""
    from loupe.search import client, read_server

    with open(log, "w") as out:
        proc = subprocess.Popen([*LOUPE, "serve", "--db", db, "--port", "0"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            info = read_server(db)
            if info is not None and info.pid == proc.pid:
                try:
                    client.call(info, "GET", "/api/v1/status", read_timeout=30)
                    break
                except (client.NoAnswer, client.LoupeError):
                    pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("loupe serve did not start:\n" + Path(log).read_text())
            time.sleep(0.2)
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- part 1: the CLI -----------------------------------------------------------------------
def photo_index(work: str, name: str, flags: list[str], env: dict) -> str:
    """An index of the corpus photos with the model ``flags`` (built once)."""
    db = os.path.join(work, f"serve-cli-{name}")
    if not os.path.exists(os.path.join(db, ".bench-complete")):
        shutil.rmtree(db, ignore_errors=True)
        p = subprocess.run([*LOUPE, "index", str(CORPUS), "--db", db, *flags, "--quiet"],
                           env=env, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(f"indexing failed:\n{p.stderr}")
        open(os.path.join(db, ".bench-complete"), "w").close()
    return db


def imported_through_server(db: str, env: dict) -> list[str]:
    code = ("import sys; from loupe.search.cli import main; main(sys.argv[1:]); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, "search", "a cat", "--db", db], env=env,
                       capture_output=True, text=True)
    return p.stderr.strip().splitlines()[-1:]


def import_ms(db: str, env: dict, runs: int = 5) -> float:
    """The smallest total of -X importtime's self times on the path through a server."""
    best = float("inf")
    for _ in range(runs):
        p = subprocess.run([*LOUPE[:1], "-X", "importtime", *LOUPE[1:], "search", "a cat",
                            "--db", db], env=env, capture_output=True, text=True)
        total = sum(int(line.split("|")[0].split(":")[1]) for line in p.stderr.splitlines()
                    if line.startswith("import time:") and "self" not in line)
        best = min(best, total / 1000)
    return best


def loadavg() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def bench_cli(args, env: dict) -> None:
    print("\n== loupe search end to end (a subprocess: start, query, print, exit) ==")
    print(f"  ({loadavg()} at the start)")
    base = [run_s([sys.executable, "-c", "pass"], env)[0] for _ in range(args.runs)]
    print(f"  {'python -c pass':<34} {stats(base)}")
    models = [("tiny", ["--model", tiny_model_dir(args.work)], "tiny open_clip"),
              ("vit-b-32", ["--model", "ViT-B-32", "--pretrained",
                            vit_b32_weights(args.work)], "ViT-B-32 (random weights)")]
    for name, flags, label in models:
        db = photo_index(args.work, name, flags, env)
        words = [f"{WORDS[i % len(WORDS)]} {i}" for i in range(args.runs)]
        here = []
        for w in words[:args.runs_here or args.runs]:
            s, p = run_s([*LOUPE, "search", w, "--db", db, "--no-server"], env)
            if p.returncode:
                raise SystemExit(p.stderr)
            here.append(s)
        log = os.path.join(args.work, f"serve-cli-{name}.log")
        with serving(db, env, log) as info:
            run_s([*LOUPE, "search", "warm up", "--db", db], env)
            served, trips = [], []
            for w in words:
                s, p = run_s([*LOUPE, "search", w, "--db", db], env)
                m = re.search(r" in (\d+) ms through the server", p.stderr)
                if p.returncode or not m:
                    raise SystemExit(f"not answered by the server: {p.stderr}")
                served.append(s)
                trips.append(int(m.group(1)) / 1000)
            same = all(run_s([*LOUPE, "search", w, "--db", db, *j], env)[1].stdout
                       == run_s([*LOUPE, "search", w, "--db", db, "--no-server", *j],
                                env)[1].stdout for w in words[:2] for j in ([], ["--json"]))
            heavy = imported_through_server(db, env)
            imports = import_ms(db, env)
        print(f"  {label}: index of {len(list(CORPUS.iterdir()))} corpus files at {db}; "
              f"server {info.url}")
        print(f"    {'without a server (--no-server)':<32} {stats(here)}")
        print(f"    {'through the server':<32} {stats(served)}")
        print(f"    {'  of which the request':<32} {stats(trips)}")
        print(f"    {'  the rest (start, read, print)':<32} "
              f"{stats([a - b for a, b in zip(served, trips, strict=True)])}")
        print(f"    ratio (p50 without / through): "
              f"{percentile(here, 50) / percentile(served, 50):.1f}x; through the server "
              f"minus python -c pass: {(percentile(served, 50) - percentile(base, 50)) * 1000:.0f}"
              f" ms at p50; same stdout both ways (text and --json): {same}")
        print(f"    imports on the path through the server: {imports:.1f} ms (-X importtime "
              f"self times, best of 5); heavy modules imported: {heavy[0] if heavy else '?'}")
        print(f"    ({loadavg()})")


# -- part 2: the API under load ------------------------------------------------------------
def synthetic_store(work: str, n: int, weights: str) -> str:
    """A store of ``n`` random 512-d unit vectors recorded as embedded by the ViT-B-32 of
    ``weights`` (its column, its spec), with its FAISS index (built once)."""
    db = os.path.join(work, f"serve-api-{n}")
    marker = os.path.join(db, ".bench-complete")
    if os.path.exists(marker):
        return db
    import numpy as np

    from loupe.indexer.encoders import load_encoder
    from loupe.search.ann import build_index
    from loupe.search.store import Store

    shutil.rmtree(db, ignore_errors=True)
    t = time.perf_counter()
    spec = load_encoder("ViT-B-32", weights, "cpu").spec
    store = Store(db, create=True)
    column = store.register_encoder(spec)
    rng = np.random.default_rng(7)
    for s in range(0, n, BATCH):
        add_random_photos(store, column, s, min(n, s + BATCH) - s, rng, "api")
    store.optimize()
    build_index(store, column)
    open(marker, "w").close()
    print(f"  built {n:,} items at {db} in {time.perf_counter() - t:.0f}s")
    return db


def load(info, clients: int, queries: int, offset: int) -> tuple[list[float], float]:
    """``clients`` threads, ``queries`` searches each: (latencies, wall seconds)."""
    from loupe.search import client

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(c: int) -> None:
        for i in range(queries):
            q = f"{WORDS[(c + i) % len(WORDS)]} {offset + c * queries + i}"
            t = time.perf_counter()
            try:
                client.call(info, "POST", "/api/v1/search", {"q": q, "k": 10})
            except Exception as e:  # noqa: BLE001 - counted and shown
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                lat.append(time.perf_counter() - t)

    wall = run_clients(worker, clients)
    if errors:
        print(f"    {len(errors)} errors, e.g. {errors[0]}")
    return lat, wall


def bench_api(args, env: dict) -> None:
    print(f"\n== POST /api/v1/search under load (loupe serve, ViT-B-32 random weights, "
          f"{args.clients} concurrent clients) ==")
    weights = vit_b32_weights(args.work)
    for n in args.sizes:
        db = synthetic_store(args.work, n, weights)
        with serving(db, env, os.path.join(args.work, f"serve-api-{n}.log")) as info:
            load(info, 1, 10, 10**6)  # model and index loaded, first queries done
            time.sleep(5)  # (the server's warm-up thread done)
            one, wall1 = load(info, 1, max(10, args.queries // 2), 0)
            busy0, t_all = cpu_busy_s(), time.perf_counter()
            many, wall = load(info, args.clients, args.queries, 10**5)
            busy = cpu_busy_s() - busy0
        print(f"  {n:>9,} items  1 client : {stats(one)}  {len(one) / wall1:5.1f} req/s")
        print(f"  {n:>9,} items  {args.clients} clients: {stats(many)}  "
              f"{len(many) / wall:5.1f} req/s")
        span = time.perf_counter() - t_all
        print(f"    the machine's cores were {busy / span / (os.cpu_count() or 1) * 100:.0f}% busy "
              f"under 4 clients (this server and its clients included); {loadavg()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--parts", default="cli,api")
    ap.add_argument("--runs", type=int, default=20, help="CLI runs each way (20)")
    ap.add_argument("--runs-here", type=int, default=None, metavar="N",
                    help="CLI runs without a server (default: --runs)")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=50, help="searches per client (50)")
    ap.add_argument("--server-threads", type=int, default=None, metavar="N",
                    help="OMP_NUM_THREADS of the servers and local searches (default: "
                         "torch's, one per core)")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    os.makedirs(args.work, exist_ok=True)
    env = bench_env(args.work)
    if args.server_threads:
        env["OMP_NUM_THREADS"] = str(args.server_threads)
    os.environ.update(XDG_CACHE_HOME=env["XDG_CACHE_HOME"], HF_HUB_OFFLINE="1")
    env.pop("LOUPE_DEBUG", None)
    print(f"{machine_info()}; precision {os.environ.get('LOUPE_PRECISION', 'auto')}; "
          f"servers' OMP_NUM_THREADS {env.get('OMP_NUM_THREADS', 'unset')}")
    parts = set(args.parts.split(","))
    if "cli" in parts:
        bench_cli(args, env)
    if "api" in parts:
        bench_api(args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
