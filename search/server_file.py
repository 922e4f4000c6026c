"""Where a running server for an index can be reached: ``<index>/.server.json``.

A server (``loupe serve``, ``loupe ui``) writes it once it listens and removes it when
it stops; ``loupe search`` and other clients read it to use that server's loaded models
instead of loading their own. It holds the address, the process, the machine and the
per-launch API key, so it is written readable by its owner only (0600), atomically (a
reader never sees half of it). A file whose process is gone (a server killed with -9)
is ignored, and removed by the next server that starts.

Light on purpose: the standard library only, so a client that finds a server pays no
numpy, torch or LanceDB import.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

SERVER_FILE = ".server.json"
FORMAT = 1


@dataclass(frozen=True)
class ServerInfo:
    """A running server of an index, as its server file says."""

    url: str  # how this machine reaches it: "http://127.0.0.1:8765" (no trailing slash)
    pid: int
    host: str  # the machine it runs on (socket.gethostname())
    kind: str  # "serve" (the API alone) or "ui" (the UI with the API)
    token: str | None  # the API key (Authorization: Bearer ...); None: none needed
    started: float  # seconds since the epoch
    format: int = FORMAT


def server_file(db_dir: str) -> str:
    """The path of the server file of the index at ``db_dir``."""
    return os.path.join(db_dir, SERVER_FILE)


def _alive(info: ServerInfo) -> bool:
    if info.host != socket.gethostname():
        return True  # another machine's server (a shared index folder): ask it, not ps
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def read_server(db_dir: str) -> ServerInfo | None:
    """The server the index's server file names, when the file is readable, well formed
    and its process alive (same machine) or on another machine; None otherwise. Whether
    it answers is the client's to find out (a refused connection: fall back)."""
    try:
        with open(server_file(db_dir), encoding="utf-8") as f:
            data = json.load(f)
        info = ServerInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    if info.format != FORMAT or not isinstance(info.url, str) or not info.url.startswith(
            ("http://", "https://")):
        return None
    return info if _alive(info) else None


def write_server(db_dir: str, info: ServerInfo) -> bool:
    """Write the server file atomically, owner-readable only; False when the index folder
    is not writable (the server still runs; clients then load their own models)."""
    path = server_file(db_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(info), f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def remove_server(db_dir: str, pid: int) -> None:
    """Remove the server file when it still names process ``pid`` on this machine (a
    newer server's file is left alone)."""
    path = server_file(db_dir)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("pid") == pid and data.get("host") == socket.gethostname():
            os.unlink(path)
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def announced(db_dir: str, url: str, token: str | None, kind: str) -> Iterator[ServerInfo]:
    """The server file for this process while the block runs (the server's life)."""
    info = ServerInfo(url.rstrip("/"), os.getpid(), socket.gethostname(), kind, token,
                      time.time())
    write_server(db_dir, info)
    try:
        yield info
    finally:
        remove_server(db_dir, info.pid)
