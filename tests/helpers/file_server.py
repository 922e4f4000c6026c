"""Loupe's file routes (ui/routes.py) alone in a real uvicorn server on 127.0.0.1, in a
process of its own (so its memory can be read from /proc), and a file record made
by hand for a file the indexer would not take (a huge sparse one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from helpers.served import free_port, stop

SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from loupe.ui.routes import file_routes
uvicorn.run(Starlette(routes=file_routes(sys.argv[1])), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""


@dataclass
class FileServer:
    url: str  # http://127.0.0.1:PORT
    pid: int

    def file_url(self, item_id: str) -> str:
        return f"{self.url}/loupe/file/{item_id}"


@contextmanager
def serve_files(db: str, timeout: float = 60) -> Iterator[FileServer]:
    """uvicorn serving ``file_routes(db)`` until the block ends."""
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, db, str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:  # up once it answers (404: no such item)
            try:
                urllib.request.urlopen(f"{url}/loupe/file/0", timeout=2)
            except urllib.error.HTTPError:
                break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the file server did not start")
            time.sleep(0.2)
        yield FileServer(url, proc.pid)
    finally:
        stop(proc)


def memory(pid: int) -> dict[str, int]:
    """{"rss": now, "peak": highest since start or the last reset_peak} in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Start the peak over at the current RSS (Linux 4.0+); False where it cannot."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def open_files(pid: int, path: str) -> int:
    """How many descriptors of process ``pid`` are open on ``path``."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == path
        except OSError:
            pass
    return n


def sparse_file(path: str, size: int, marks: dict[int, bytes]) -> None:
    """A sparse file of ``size`` bytes: zeros (no disk used) but for ``marks``
    ({offset: bytes})."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in marks.items():
            f.seek(offset)
            f.write(data)


def record_file(store, path: str, kind: str = "frame") -> str:
    """Record ``path`` in ``store`` as a complete file of one item (its size, mtime and
    fingerprint as the indexer takes them), through the Store's own writes; returns the
    item id. For files too big or too empty for the indexer to take."""
    from loupe.indexer.fingerprint import fingerprint_file
    from loupe.search.store import item_id

    st = os.stat(path)
    fp = fingerprint_file(path, st.st_size)
    now = time.time()
    media = {"frame": "video", "audio": "audio", "photo": "image"}[kind]
    timestamp = None if kind == "photo" else 0.0
    iid = item_id(path, kind, timestamp)
    store.upsert_items([{"id": iid, "path": path, "kind": kind, "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns, "fingerprint": fp, "width": None,
                         "height": None, "timestamp": timestamp, "indexed_at": now,
                         "end": None, "shot": None, "silent": None}])
    store.upsert_files([{"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                         "fingerprint": fp, "media": media, "rows": 1, "duration": None,
                         "problem": None, "indexed_at": now, "sound": False}])
    return iid
