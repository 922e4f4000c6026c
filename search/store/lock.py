"""One writer at a time per index: an exclusive lock on the index folder's
``.writer.lock`` (``fcntl.flock``), held for a whole run by every command that writes.

The kernel drops a lock whose holder died, however it died (kill -9 included), so a
stale lock is taken over at once; the file only says who holds it now (pid, command,
since) for the message a waiting writer prints. Readers (search, the UI, status) never
take it. Within one process the lock is re-entrant (a command that holds it may call
``index_paths``, which takes it again) and shared by threads one at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from loupe.indexer.errors import IndexFault, LoupeError

LOCK_NAME = ".writer.lock"
POLL_SECONDS = 0.25

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process
_guard = threading.Lock()
_threads: dict[str, threading.RLock] = {}


def _thread_lock(path: str) -> threading.RLock:
    with _guard:
        return _threads.setdefault(path, threading.RLock())


def holder(db_dir: str) -> dict | None:
    """Who holds the writer lock of the index at ``db_dir`` (None when nobody does)."""
    path = os.path.join(db_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            with open(path, encoding="utf-8") as f:
                try:
                    return json.load(f)
                except ValueError:
                    return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe(who: dict | None) -> str:
    """"pid 123 (loupe index), since 10:42:07" for a waiting writer's message."""
    if not who:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who.get("since", 0)))
    host = f" on {who['host']}" if who.get("host") and who["host"] != socket.gethostname() else ""
    return f"pid {who.get('pid', '?')}{host} ({who.get('command', '?')}), since {since}"


def _say(line: str) -> None:
    print(f"loupe: {line}", file=sys.stderr, flush=True)


@contextmanager
def writer_lock(db_dir: str, command: str, wait: bool = True,
                on_wait: Callable[[str], None] | None = _say) -> Iterator[None]:
    """Hold the writer lock of the index at ``db_dir`` while the block runs.

    When another process holds it: ``wait`` waits (saying once who holds it and that
    Ctrl-C stops waiting), else raises LoupeError with that line at once.
    """
    path = os.path.join(os.path.abspath(db_dir), LOCK_NAME)
    local = _thread_lock(path)
    if not local.acquire(blocking=wait):
        raise LoupeError(f"the index at {db_dir} is being written by this process already")
    try:
        with _guard:
            fd, depth = _held.get(path, (-1, 0))
        if depth:
            with _guard:
                _held[path] = (fd, depth + 1)
        else:
            fd = _acquire(path, db_dir, command, wait, on_wait)
            with _guard:
                _held[path] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[path]
                if depth > 1:
                    _held[path] = (fd, depth - 1)
                else:
                    del _held[path]
                    _release(fd)
    finally:
        local.release()


def _acquire(path: str, db_dir: str, command: str, wait: bool,
             on_wait: Callable[[str], None] | None) -> int:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # a read-only or full index folder: the run's fault, said in a line
        raise IndexFault.of(db_dir, e) from e
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or (not told and on_wait is not None):  # who: said once
                    line = (f"the index at {db_dir} is being written by "
                            f"{describe(holder(os.path.dirname(path)))}")
                    if not wait:
                        raise LoupeError(line + " (without --no-wait, this run waits)") from None
                    on_wait(line + "; waiting for it to finish (Ctrl-C stops waiting)")
                    told = True
                time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command,
                                  "since": time.time(),
                                  "host": socket.gethostname()}).encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
