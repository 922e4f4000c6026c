"""The real UI server for tests: `loupe ui`'s command on 127.0.0.1 and a free port, with
a known key, stopped when done."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOKEN = "test-key-" + "x" * 34


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT (no key)
    port: int
    token: str | None
    proc: subprocess.Popen
    log: Path

    @property
    def cookie(self) -> str:
        return f"loupe_key_{self.port}"

    @property
    def keyed_url(self) -> str:
        """The address `loupe ui` prints (with the key)."""
        return f"{self.url}/?token={self.token}"


@contextmanager
def serve_ui(db: str, work: Path, token: str | None = TOKEN, timeout: float = 90,
             env: dict | None = None, port: int | None = None,
             **command) -> Iterator[Served]:
    """Serve the UI on ``db`` (``command``: more ``ui_command`` arguments) until the block
    ends; the server's output goes to ``work/server-PORT.log``."""
    from loupe.search.cli.ui import ui_command

    port = port or free_port()
    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1",
               XDG_CACHE_HOME=str(work / "cache"))
    env.pop("LOUPE_UI_TOKEN", None)
    if token:
        env["LOUPE_UI_TOKEN"] = token
    log_path = work / f"server-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(ui_command(db, port, **command), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"{'https' if command.get('tls') else 'http'}://127.0.0.1:{port}"
    unchecked = ssl._create_unverified_context()  # the tests' own self-signed certificate
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2,
                                            context=unchecked) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("loupe ui did not start:\n" + log_path.read_text())
            time.sleep(0.3)
        yield Served(url, port, token, proc, log_path)
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """Terminate a server the test started; kill it if it does not end in ``grace`` s."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class ServedApi:
    """A `loupe serve` process on 127.0.0.1: its address and key, from its server file."""

    url: str  # http://127.0.0.1:PORT
    port: int
    key: str
    proc: subprocess.Popen
    log: Path


def ready_server(db: str, proc: subprocess.Popen):
    """The server file of ``db`` once it names ``proc`` and its /api/v1/status answers
    the key it gives; None until then."""
    from loupe.search import read_server

    info = read_server(str(db))
    if info is None or info.pid != proc.pid or not info.token:
        return None
    request = urllib.request.Request(info.url + "/api/v1/status",
                                     headers={"Authorization": f"Bearer {info.token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return info if r.status == 200 else None
    except OSError:
        return None


@contextmanager
def serve_api(db: str, work: Path, *flags: str, timeout: float = 90,
              env: dict | None = None) -> Iterator[ServedApi]:
    """Run ``loupe serve --db DB --port 0 FLAGS...`` until the block ends; it is ready
    once its server file names it and /api/v1/status answers its key. Its output goes
    to ``work/serve-PID.log``; no model hub is reached and no Kosmos-2 is cached."""
    import sys

    env = dict(os.environ if env is None else env, HF_HUB_OFFLINE="1",
               XDG_CACHE_HOME=str(work / "cache"), HF_HOME=str(work / "hf-home"))
    log_path = work / f"serve-{len(list(work.glob('serve-*.log')))}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "loupe.search.cli", "serve", "--db", db,
                             "--port", "0", *flags], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            info = ready_server(db, proc)
            if info is not None:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("loupe serve did not start:\n" + log_path.read_text())
            time.sleep(0.2)
        port = int(info.url.rsplit(":", 1)[1])
        yield ServedApi(info.url, port, info.token, proc, log_path)
    finally:
        stop(proc)
        log.close()
