"""Object storage for real: a local S3-API server (moto, tests/helpers/s3.py) on 127.0.0.1
with authentication on, and a tiny-model index whose tables live in its bucket.

`loupe index DIR --db LOCAL --tables-uri s3://...` keeps the tables (and a copy of the
meta) in the bucket and meta.json, the FAISS files and caches in LOCAL; a search from it;
two `loupe serve --db OWN_DIR --tables-uri s3://...` replicas, each with an empty folder of
its own, answer the same query identically (and as a search on the indexer's folder
does); a re-index of new files reaches both without a restart; credentials come from the
environment, and a wrong one is refused in one line by index, search and serve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers.media import solid
from helpers.s3 import S3Server, replicas, s3_server

from loupe.search.cli import main

LOUPE = [sys.executable, "-m", "loupe.search.cli"]
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
           "white": (240, 240, 240), "black": (10, 10, 10), "yellow": (230, 230, 20)}
NEW = {"cyan": (20, 220, 220), "purple": (140, 20, 160)}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def indexed(s3: S3Server, tmp_path_factory, tiny_clip_dir):
    """An index of six pictures on S3 (tables at s3://loupe/idx, meta in ``local``),
    the environment that reaches it, and the folders. The indexer runs in this process,
    with the environment's credentials (set for the module)."""
    base = tmp_path_factory.mktemp("os")
    photos = base / "photos"
    photos.mkdir()
    for name, rgb in COLOURS.items():
        solid(photos / f"{name}.png", rgb)
    env = {**os.environ, **s3.env(), "XDG_CACHE_HOME": str(base / "cache")}
    uri = s3.uri("idx")
    local = base / "indexer-db"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["index", str(photos), "--db", str(local), "--model", tiny_clip_dir,
                     "--workers", "0", "--quiet", "--tables-uri", uri]) == 0
        yield {"base": base, "photos": photos, "env": env, "uri": uri, "local": local,
               "model": tiny_clip_dir}


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _loupe(argv: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*LOUPE, *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _search_api(url: str, key: str, q: str, k: int = 10) -> list[dict]:
    request = urllib.request.Request(
        url + "/api/v1/search", data=json.dumps({"q": q, "k": k}).encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)["hits"]


def _ranked(hits: list[dict]) -> list[tuple[str, str, float]]:
    return [(h["id"], h["path"], round(h["score"], 5)) for h in hits]


def test_index_keeps_its_tables_in_the_bucket_and_searches_from_them(indexed, s3, capsys):
    keys = [o["Key"] for o in s3.client().list_objects_v2(
        Bucket=s3.bucket, Prefix="idx/").get("Contents", [])]
    tables = {k.split("/")[1] for k in keys}
    assert {"items.lance", "files.lance", "index_meta.lance"} <= tables
    local = indexed["local"]
    assert (local / "meta.json").is_file() and not (local / "items.lance").exists()
    meta = json.loads((local / "meta.json").read_text())
    assert meta["tables_uri"] == indexed["uri"] and not meta.get("replica")
    rc, out, err = _cli(capsys, "search", "a red picture", "--db", str(local), "--no-server",
                        "--json", "-k", "6")
    assert rc == 0, err
    assert sorted(os.path.basename(h["path"]) for h in json.loads(out)) == sorted(
        f"{n}.png" for n in COLOURS)


def test_two_replicas_answer_alike_and_both_see_a_reindex(indexed, capsys):
    """Each replica starts from an empty folder of its own and the tables URI alone; both
    rank the same query the same way, and `loupe search` through each prints what a
    search on the indexer's folder prints; new files indexed by the indexer reach both,
    without a restart, within seconds."""
    base, env = indexed["base"], indexed["env"]
    rc, here, err = _cli(capsys, "search", "a blue picture", "--db", str(indexed["local"]),
                         "--no-server", "--json", "-k", "10")
    assert rc == 0, err
    folders = [base / "replica-1", base / "replica-2"]
    with replicas(folders, indexed["uri"], env, base) as (one, two):
        for f in folders:
            meta = json.loads((f / "meta.json").read_text())
            assert meta["replica"] is True and meta["tables_uri"] == indexed["uri"]
            assert set(meta) == {"format", "replica", "tables_uri", "shard", "created"}
            assert meta["shard"] is None  # the whole index (loupe serve --shard: a part)
        a = _search_api(one.url, one.key, "a blue picture")
        b = _search_api(two.url, two.key, "a blue picture")
        assert _ranked(a) == _ranked(b) and len(a) == len(COLOURS)
        for f in folders:  # answered by the replica (its server file is in its folder)
            p = _loupe(["search", "a blue picture", "--db", str(f), "--json", "-k", "10"], env)
            assert p.returncode == 0 and p.stderr == "", p.stderr
            assert p.stdout == here
            assert not (f / "items.lance").exists()  # the tables stayed in the bucket

        for name, rgb in NEW.items():
            solid(indexed["photos"] / f"{name}.png", rgb)
        rc, _, err = _cli(capsys, "index", str(indexed["photos"]), "--db",
                          str(indexed["local"]), "--workers", "0", "--quiet")
        assert rc == 0, err
        committed = time.monotonic()
        seen: dict[str, float] = {}
        want = {f"{n}.png" for n in NEW}
        while len(seen) < 2 and time.monotonic() - committed < 30:
            for name, r in (("one", one), ("two", two)):
                if name not in seen:
                    got = {os.path.basename(h["path"])
                           for h in _search_api(r.url, r.key, "a cyan picture", k=20)}
                    if want <= got:
                        seen[name] = time.monotonic() - committed
            time.sleep(0.05)
        assert set(seen) == {"one", "two"}, f"a replica never saw the new files: {seen}"
        print(f"re-index reached the replicas after {seen}")
        a = _search_api(one.url, one.key, "a purple picture")
        b = _search_api(two.url, two.key, "a purple picture")
        assert _ranked(a) == _ranked(b) and len(a) == len(COLOURS) + len(NEW)


def test_a_replica_folder_never_writes_the_index(indexed, capsys):
    from loupe.search import Store

    folder = indexed["base"] / "replica-ro"
    store = Store(str(folder), tables_uri=indexed["uri"])
    assert store.meta.replica and store.meta.encoders  # the indexer's, from the tables
    rc, _, err = _cli(capsys, "index", str(indexed["photos"]), "--db", str(folder),
                      "--workers", "0", "--quiet")
    assert rc == 1 and err.startswith("loupe: error: ") and err.count("\n") == 1
    assert "search replica" in err
    rc, _, err = _cli(capsys, "serve", "--db", str(folder), "--watch", "--port", "0")
    assert rc == 1 and "a replica does not write" in err
    # a folder for tables that hold no index is refused, not made
    rc, _, err = _cli(capsys, "serve", "--db", str(indexed["base"] / "nothing"),
                      "--tables-uri", indexed["uri"] + "-none")
    assert rc == 1 and "no Loupe index at s3://" in err
    assert not (indexed["base"] / "nothing" / "meta.json").exists()


def _wrong_runs(indexed, s3, tmp_path) -> dict[str, list[str]]:
    """index (an existing index and a new one), search and serve (a new replica)."""
    return {
        "index": ["index", str(indexed["photos"]), "--db", str(indexed["local"]),
                  "--workers", "0", "--quiet"],
        "index new": ["index", str(indexed["photos"]), "--db", str(tmp_path / "new"),
                      "--model", indexed["model"], "--workers", "0", "--quiet",
                      "--tables-uri", s3.uri("other")],
        "search": ["search", "red", "--db", str(indexed["local"]), "--no-server"],
        "serve": ["serve", "--db", str(tmp_path / "replica"), "--tables-uri",
                  indexed["uri"], "--port", "0"],
    }


def _one_refusal(what: str, stderr: str, code: str) -> None:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, (what, stderr)
    line = stderr.strip()
    assert line.startswith("loupe: error: cannot reach the tables at s3://loupe/"), line
    assert f"403 {code} (" in line and "AWS_ACCESS_KEY_ID" in line, line


def test_a_wrong_secret_is_refused_in_one_line(indexed, s3, tmp_path):
    """The real command lines (all four at once), the secret not the key's: exit 1, one
    line on stderr (nothing else: no traceback, no log line of Lance's) naming the
    tables, the server's refusal and where credentials come from."""
    env = {**indexed["env"], "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    runs = {what: subprocess.Popen([*LOUPE, *argv], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            for what, argv in _wrong_runs(indexed, s3, tmp_path).items()}
    for what, p in runs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 1, (what, err)
        _one_refusal(what, err, "SignatureDoesNotMatch")
    assert not (tmp_path / "replica" / "meta.json").exists()
    assert not (tmp_path / "new" / "meta.json").exists()


def test_an_unknown_key_is_refused_in_one_line(indexed, s3, tmp_path, capfd, monkeypatch):
    """The same four, in this process (stderr read at the descriptor: Lance's own log
    lines would show)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODY0000000000")
    for what, argv in _wrong_runs(indexed, s3, tmp_path).items():
        capfd.readouterr()
        assert main(argv) == 1, what
        _one_refusal(what, capfd.readouterr().err, "InvalidAccessKeyId")


def test_the_error_line_of_an_object_store():
    from loupe.search.store.remote import is_remote, storage_error

    dump = ('IO { source: RetryError { retries: 0, inner: Status { status: 403, body: '
            'Some("<?xml version=\\"1.0\\"?>\\n<Error><Code>InvalidAccessKeyId</Code>'
            '<Message>The key does not exist.</Message></Error>") } } }')
    e = storage_error("s3://b/x", ValueError(dump))
    assert str(e).startswith("cannot reach the tables at s3://b/x: 403 InvalidAccessKeyId "
                             "(The key does not exist.); ")
    assert "plain http" in str(storage_error("s3://b", ValueError("kind: Builder, "
                                                                  "source: BadScheme")))
    assert all(map(is_remote, ["s3://b/x", "gs://b", "az://c/d"]))
    assert not any(map(is_remote, ["/tmp/x", "file:///tmp/x", "C:\\db", None]))
