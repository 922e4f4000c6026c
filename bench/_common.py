"""Helpers shared by the benchmark scripts (not a benchmark itself).

- ``TreeMonitor`` / ``run_monitored``: run a command and sample the memory of its whole
  process tree (main process + decode workers), with psutil when installed, else by
  reading ``/proc`` directly (Linux); both sum RSS over the tree, ``/proc`` also sums PSS
  (shared pages split between processes, so libraries mapped by every worker are not
  counted N times).
- ``vit_b32_weights``: a full-size ViT-B-32 with seeded random weights saved to a local
  file (real weights cannot be downloaded here; the speed is the same).
- ``tiny_model_dir``: the tests' tiny open_clip model folder.
- ``bench_env`` / ``loupe_index_cmd``: how the benchmarks run the real CLI.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORK = "/tmp/loupe-bench"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

try:  # optional
    import psutil  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    psutil = None


# -- process-tree memory ---------------------------------------------------------------
def _proc_children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) comes after the command name, which is in parentheses.
        rest = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(rest[1]), []).append(int(name))
    return children


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    if psutil is not None:
        try:
            p = psutil.Process(root)
            return [root] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []
    children = _proc_children_map()
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def _rss_pss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; PSS is 0 where it cannot be read."""
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss, 0
        except psutil.Error:
            return 0, 0
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0, 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return rss, pss


def _cpu_s(pid: int) -> float | None:
    """user + sys CPU seconds of one process so far (None when it is gone)."""
    if psutil is not None:
        try:
            t = psutil.Process(pid).cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2:].split()  # rest[0] is field 3 (state)
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class TreeMonitor:
    """Samples the summed RSS (and PSS) of a process tree every ``interval`` seconds."""

    pid: int
    interval: float = 0.1
    peak_rss: int = 0
    peak_pss: int = 0
    peak_procs: int = 0
    samples: int = 0
    cpu_by_pid: dict = field(default_factory=dict)  # last CPU seconds seen per process
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def method(self) -> str:
        if psutil is not None:
            return "psutil polling, RSS summed over the process tree"
        return (f"/proc polling every {self.interval:.2f}s, RSS and PSS summed over the "
                "process tree (psutil not installed)")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        rss = pss = 0
        for p in pids:
            r, s = _rss_pss(p)
            rss += r
            pss += s
            c = _cpu_s(p)
            if c is not None:
                self.cpu_by_pid[p] = c
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, len(pids))
        self.samples += 1

    def start(self) -> TreeMonitor:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all processes, from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_note(others_cpu_s: float, wall_s: float) -> str:
    """A warning when other processes used the CPU during a measurement."""
    if not wall_s or others_cpu_s != others_cpu_s:
        return ""
    cores = os.cpu_count() or 1
    share = others_cpu_s / wall_s / cores * 100
    if share < 5:
        return f"machine otherwise idle (others used {share:.0f}% of the cores)"
    return (f"WARNING: other processes used {others_cpu_s:.0f} CPU-s = {share:.0f}% of "
            f"{cores} cores during this measurement; timings are pessimistic")


@dataclass
class RunResult:
    """What ``run_monitored`` measured."""

    cmd: list[str]
    returncode: int
    wall_s: float
    stdout: str
    stderr: str
    peak_rss: int
    peak_pss: int
    peak_procs: int
    cpu_s: float  # user + sys of the whole tree (RUSAGE_CHILDREN delta or sampled)
    max_single_rss: int  # ru_maxrss of RUSAGE_CHILDREN (largest single process so far)
    method: str
    others_cpu_s: float = 0.0  # CPU seconds used meanwhile by processes outside the tree

    @property
    def load_note(self) -> str:
        """Whether the machine was otherwise busy during the run."""
        return load_note(self.others_cpu_s, self.wall_s)

    def json(self) -> dict:
        """The command's stdout parsed as JSON (the CLI's --json report)."""
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise SystemExit(f"command did not print JSON (rc {self.returncode}):\n"
                             f"{' '.join(self.cmd)}\nstdout: {self.stdout[-2000:]}\n"
                             f"stderr: {self.stderr[-4000:]}") from e


def run_monitored(cmd: list[str], env: dict | None = None, interval: float = 0.1,
                  cwd: str | os.PathLike = REPO) -> RunResult:
    """Run ``cmd`` to completion, sampling its process tree's memory meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = cpu_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    mon = TreeMonitor(proc.pid, interval).start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    busy1 = cpu_busy_s()
    mon.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Workers that exit without being waited for are missing from RUSAGE_CHILDREN; the
    # sampled per-process CPU (up to the last sample) catches them.
    cpu = max(cpu, sum(mon.cpu_by_pid.values()))
    # The monitor thread's own CPU is small and counted as "others" (it is in this process).
    others = max(0.0, (busy1 - busy0) - cpu)
    return RunResult(cmd, proc.returncode, wall, out, err, mon.peak_rss, mon.peak_pss,
                     mon.peak_procs, cpu, after.ru_maxrss * 1024, mon.method, others)


def write_json(out_dir: str | None, name: str, data: dict) -> None:
    """Write a benchmark's numbers as ``out_dir/name`` (nothing when out_dir is None)."""
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(data, f, indent=2)


def mib(n: float) -> str:
    """Bytes as MiB text."""
    return f"{n / 2**20:,.0f} MiB"


# -- models ----------------------------------------------------------------------------
def vit_b32_weights(work: str, seed: int = 0) -> str:
    """Path of a full-size ViT-B-32 state dict with seeded random weights (made once)."""
    path = os.path.join(work, "models", f"vit-b-32-random-seed{seed}.pt")
    if os.path.exists(path):
        return path
    import open_clip
    import torch

    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    tmp = path + ".tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def tiny_model_dir(work: str, seed: int = 0) -> str:
    """The tests' tiny random open_clip model folder (tests/tiny_models.py), made once."""
    path = os.path.join(work, "models", f"tiny-clip-seed{seed}")
    if os.path.exists(os.path.join(path, "open_clip_config.json")):
        return path
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.tiny_models import make_tiny_clip_dir

    return make_tiny_clip_dir(path, seed=seed)


def model_args(work: str, tiny: bool, seed: int = 0) -> tuple[list[str], str]:
    """(CLI flags selecting the benchmark model, a label for it)."""
    if tiny:
        return ["--model", tiny_model_dir(work, seed)], "tiny open_clip (tests/tiny_models.py)"
    return (["--model", "ViT-B-32", "--pretrained", vit_b32_weights(work, seed)],
            "ViT-B-32, seeded random weights (full size)")


def bench_env(work: str) -> dict:
    """Environment for CLI runs: offline hub, a private cache dir (weight hashes)."""
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["XDG_CACHE_HOME"] = os.path.join(work, "cache")
    return env


def prehash_weights(work: str, flags: list[str]) -> None:
    """Hash the weight file once (cached like the CLI does) so runs do not pay for it."""
    os.environ["XDG_CACHE_HOME"] = os.path.join(work, "cache")
    from loupe.indexer.encoders.hub import file_sha256
    from loupe.indexer.encoders.openclip import _local_dir_weights

    if "--pretrained" in flags:
        file_sha256(flags[flags.index("--pretrained") + 1])
    else:
        w = _local_dir_weights(flags[flags.index("--model") + 1])
        if w:
            file_sha256(w)


def loupe_index_cmd(paths: list[str], db: str, flags: list[str], extra: list[str] = ()) -> list:
    """``python -m loupe.search.cli.main index PATH... --db DB --quiet --json`` plus flags."""
    return [sys.executable, "-m", "loupe.search.cli", "index", *paths, "--db", db, *flags,
            "--quiet", "--json", *extra]


# -- reporting -------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(seconds: list[float]) -> dict:
    """p50 / p99 / mean in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms) if ms else float("nan"), "n": len(ms)}


def machine_info() -> str:
    """One line about the machine and the thread settings that matter for timings."""
    keys = ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    envs = ", ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "none set"
    return (f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"thread env: {envs}")


def threadpool_info() -> list[str]:
    """threadpoolctl's view of the BLAS/OpenMP pools, when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_info as info
    except ImportError:
        return ["threadpoolctl not installed (pip install threadpoolctl to list BLAS pools)"]
    return [f"{p.get('internal_api')} {p.get('version')} threads={p.get('num_threads')} "
            f"coretype={p.get('architecture')} ({os.path.basename(p.get('filepath', ''))})"
            for p in info()]


def add_random_photos(store, column: str, start: int, count: int, rng, folder: str) -> None:
    """``count`` random unit vectors as photo rows ``start`` .. ``start + count`` of
    ``store`` (paths ``/bench/FOLDER/fNN/IMG_nnnnnnn.jpg``), in one commit: an index of
    that size without decoding anything."""
    import numpy as np
    import pyarrow as pa

    from loupe.search.store import item_id, items_schema

    dim = store.meta.encoders[column].dim
    schema = items_schema({column: dim})
    now = time.time()
    paths = [f"/bench/{folder}/f{(start + i) % 100:02d}/IMG_{start + i:07d}.jpg"
             for i in range(count)]
    vecs = rng.standard_normal((count, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cols = {"id": [item_id(p) for p in paths], "path": paths, "kind": ["photo"] * count,
            "size": [3_000_000] * count, "mtime_ns": [0] * count,
            "fingerprint": [f"{start + i:032x}" for i in range(count)],
            "width": [4000] * count, "height": [3000] * count, "indexed_at": [now] * count}
    flat = pa.array(vecs.reshape(-1), pa.float32())
    store.items().add(pa.Table.from_arrays(
        [pa.array(cols[f.name], f.type) if f.name in cols else
         (pa.FixedSizeListArray.from_arrays(flat, dim) if f.name == column
          else pa.nulls(count, f.type)) for f in schema], schema=schema))


def run_clients(worker, clients: int) -> float:
    """``worker(c)`` for c in 0 .. clients-1, each on its own thread, all at once; the
    wall-clock seconds until the last returns."""
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
