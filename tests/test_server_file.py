"""The server file: how clients find a running server of an index (search/server_file.py)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

from loupe.search.server_file import (
    SERVER_FILE,
    ServerInfo,
    announced,
    read_server,
    remove_server,
    write_server,
)


def test_announced_writes_an_owner_only_file_for_the_servers_life(tmp_path):
    with announced(str(tmp_path), "http://127.0.0.1:8765/", "k3y", "serve") as info:
        path = tmp_path / SERVER_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        got = read_server(str(tmp_path))
        assert got == info
        assert got.url == "http://127.0.0.1:8765" and got.token == "k3y"
        assert got.pid == os.getpid() and got.kind == "serve"
    assert not path.exists()
    assert read_server(str(tmp_path)) is None


def test_a_dead_servers_file_is_ignored(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    write_server(str(tmp_path), ServerInfo("http://127.0.0.1:1", pid, socket.gethostname(),
                                           "serve", None, 0.0))
    assert read_server(str(tmp_path)) is None
    # another machine's server is not judged by this machine's processes
    write_server(str(tmp_path), ServerInfo("http://10.0.0.9:8765", pid, "elsewhere",
                                           "serve", None, 0.0))
    assert read_server(str(tmp_path)).host == "elsewhere"


def test_malformed_or_foreign_files_are_ignored_and_a_newer_servers_file_is_kept(tmp_path):
    path = tmp_path / SERVER_FILE
    for text in ("", "{", "[]", json.dumps({"url": "x"}),
                 json.dumps({"url": "file:///etc/passwd", "pid": os.getpid(),
                             "host": socket.gethostname(), "kind": "serve", "token": None,
                             "started": 0.0})):
        path.write_text(text)
        assert read_server(str(tmp_path)) is None
    write_server(str(tmp_path), ServerInfo("http://127.0.0.1:2", os.getpid(),
                                           socket.gethostname(), "ui", None, 0.0))
    remove_server(str(tmp_path), os.getpid() + 1)  # not this file's process: kept
    assert path.exists()
    remove_server(str(tmp_path), os.getpid())
    assert not path.exists()


def test_an_unwritable_index_folder_is_no_error(tmp_path):
    not_a_folder = tmp_path / "a-file"  # (root writes into read-only folders: use ENOTDIR)
    not_a_folder.write_text("")
    info = ServerInfo("http://127.0.0.1:3", os.getpid(), socket.gethostname(), "ui", None, 0.0)
    assert write_server(str(not_a_folder), info) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no temp file left
