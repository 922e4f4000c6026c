"""One writer at a time, and nothing lost around it: a second writer waits (or, with
--no-wait, says who holds the index and exits 1), a dead holder's lock is taken over,
readers never wait, concurrent runs and an --add beside a run end complete, each run
spills in its own folder, a vanished root keeps its rows (--prune forgets them), and a
model column left by a killed --add is backfilled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.media import solid

from loupe.search import Searcher, Store
from loupe.search.cli import main as loupe
from loupe.search.store.lock import holder, writer_lock

HOLD = r"""
import sys, time
from loupe.search.store.lock import writer_lock
with writer_lock(sys.argv[1], "loupe index"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _loupe_cmd() -> list[str]:
    script = Path(sys.executable).parent / "loupe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "loupe.search.cli"]


def _holder(db: Path, seconds: float) -> subprocess.Popen:
    db.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    for i, c in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        solid(d / f"p{i}.png", c)
    return d


def _index(folder, db, model, *extra) -> int:
    return loupe(["index", str(folder), "--db", str(db), "--model", model, "--workers", "0",
                  "--quiet", *extra])


def test_a_second_writer_says_who_holds_the_index_and_no_wait_exits_at_once(
        photos, tmp_path, tiny_clip_dir, capsys):
    db = tmp_path / "db"
    assert _index(photos, db, tiny_clip_dir) == 0
    held = _holder(db, 60)
    try:
        who = holder(str(db))
        assert who["pid"] == held.pid and who["command"] == "loupe index"
        solid(photos / "new.png", (9, 9, 9))
        capsys.readouterr()
        t0 = time.monotonic()
        assert _index(photos, db, tiny_clip_dir, "--no-wait") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {held.pid} (loupe index), since" in err[0]
        assert time.monotonic() - t0 < 30  # at once, not after the holder
        assert Store(str(db)).counts() == {"photo": 3}  # nothing written meanwhile
        # readers never wait
        hits = Searcher(Store(str(db))).search(["red"], k=2)
        assert len(hits) == 2
        assert loupe(["status", "--db", str(db), "--json"]) == 0
    finally:
        held.send_signal(signal.SIGKILL)
        held.wait()
    # the holder died (kill -9): its lock is taken over at once
    assert holder(str(db)) is None
    assert _index(photos, db, tiny_clip_dir, "--no-wait") == 0
    assert Store(str(db)).counts() == {"photo": 4}


def test_a_waiting_writer_runs_once_the_holder_is_done(photos, tmp_path, tiny_clip_dir,
                                                        capsys):
    db = tmp_path / "db"
    held = _holder(db, 3)
    capsys.readouterr()
    assert _index(photos, db, tiny_clip_dir) == 0
    err = capsys.readouterr().err
    assert f"pid {held.pid}" in err and "waiting for it to finish (Ctrl-C stops waiting)" in err
    held.wait()
    assert Store(str(db)).counts() == {"photo": 3}


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    db = str(tmp_path / "db")
    with writer_lock(db, "outer"):
        with writer_lock(db, "inner", wait=False):
            assert holder(db)["command"] == "outer"
    assert holder(db) is None


@pytest.mark.slow
def test_two_runs_at_once_and_an_add_beside_them_end_complete(corpus, tmp_path, tiny_clip_dir):
    from helpers.tiny_models import make_tiny_clip_dir

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(corpus / "video" / "three_shots.mp4", videos / "a.mp4")
    shutil.copy(corpus / "video" / "three_shots_10s.webm", videos / "b.webm")
    photos = tmp_path / "photos"
    for i in range(4):
        solid(photos / f"p{i}.png", (60 * i, 20, 200 - 40 * i))
    db = tmp_path / "db"
    other = make_tiny_clip_dir(str(tmp_path / "other-clip"), seed=1)
    base = ["--db", str(db), "--workers", "1", "--quiet", "--every", "0.5", "--commit-rows", "8"]
    runs = [subprocess.Popen([*_loupe_cmd(), "index", str(videos), "--model", tiny_clip_dir,
                              *base], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)
    add = subprocess.Popen([*_loupe_cmd(), "index", str(photos), str(videos), "--model",
                            tiny_clip_dir,
                            "--model", other, "--add", *base], stderr=subprocess.PIPE, text=True)
    for p in [*runs, add]:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    _assert_complete(db, models=2, files=6)


def _assert_complete(db: Path, models: int, files: int) -> None:
    """Every model recorded and filled, no file recorded bad, no duplicate row, every
    file with all of its rows and vectors, no spill left."""
    store = Store(str(db))
    assert len(store.meta.encoders) == models and store.meta.incomplete_columns == []
    assert store.skipped_rows() == []
    rows = store.items(create=False).to_arrow().to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)  # no duplicates
    recorded = store.file_rows()
    assert len(recorded) == files
    for f in recorded:  # every file has all of its rows, with every vector
        mine = [r for r in rows if r["path"] == f["path"]]
        assert len(mine) == f["rows"] > 0, f["path"]
        assert all(r[c] is not None for r in mine for c in store.meta.encoders), f["path"]
    assert not (db / ".spill").exists()


@pytest.mark.slow
def test_runs_over_disjoint_folders_and_a_ui_run_beside_them_end_complete(
        corpus, tmp_path, tiny_clip_dir):
    from loupe.ui.services import IndexJob

    folders = [tmp_path / name for name in ("a", "b", "ui")]
    videos = ["three_shots.mp4", "three_shots_10s.webm", "three_shots_10s.webm"]
    for i, (d, v) in enumerate(zip(folders, videos, strict=True)):
        d.mkdir()
        shutil.copy(corpus / "video" / v, d / v)
        solid(d / "p.png", (80 * i, 30, 90))
    db = tmp_path / "db"
    seed = tmp_path / "seed"
    solid(seed / "s.png", (1, 2, 3))
    assert _index(seed, db, tiny_clip_dir) == 0  # the UI adds folders to an index with a model
    base = ["--db", str(db), "--workers", "1", "--quiet", "--every", "0.5", "--commit-rows", "8"]
    runs = [subprocess.Popen([*_loupe_cmd(), "index", str(d), "--model", tiny_clip_dir, *base],
                             stderr=subprocess.PIPE, text=True) for d in folders[:2]]
    job = IndexJob()
    job.workers = 1
    job.start(str(db), str(folders[2]))  # the UI's "Index a folder", in this process
    for p in runs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    job.join(600)
    state = job.state()
    assert not state.running and state.error is None and state.report["files_seen"] == 2
    _assert_complete(db, models=1, files=7)


def test_each_run_spills_in_its_own_folder_and_the_dead_ones_are_cleared(
        corpus, tmp_path, tiny_clip_dir):
    db = tmp_path / "db"
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(corpus / "video" / "three_shots_10s.webm", videos / "b.webm")
    (db / ".spill" / "run-123-dead").mkdir(parents=True)
    (db / ".spill" / "run-123-dead" / "x.img0.bin").write_bytes(b"left by a killed run")
    assert _index(videos, db, tiny_clip_dir, "--every", "2") == 0
    assert not (db / ".spill").exists()
    assert Store(str(db)).counts()["frame"] >= 5


def test_a_vanished_root_keeps_its_rows_and_prune_forgets_them(photos, tmp_path,
                                                                tiny_clip_dir, capsys):
    db = tmp_path / "db"
    assert _index(photos, db, tiny_clip_dir) == 0
    moved = tmp_path / "photos-elsewhere"
    photos.rename(moved)  # renamed away, or a drive not mounted
    capsys.readouterr()
    assert _index(photos, db, tiny_clip_dir, "--json") == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["removed"] == 0 and report["kept_roots"] == [str(photos)]
    assert "missing or empty: the rows of its files are kept" in out.err
    assert Store(str(db)).counts() == {"photo": 3}
    assert Store(str(db)).skipped_rows() == []  # the missing root is no bad file
    photos.mkdir()  # an empty mount point
    assert _index(photos, db, tiny_clip_dir, "--json") == 0
    assert json.loads(capsys.readouterr().out)["kept_roots"] == [str(photos)]
    assert Store(str(db)).counts() == {"photo": 3}
    # files deleted inside a root that is there still go
    moved.rename(tmp_path / "tmp")
    photos.rmdir()
    (tmp_path / "tmp").rename(photos)
    (photos / "p0.png").unlink()
    assert _index(photos, db, tiny_clip_dir, "--json") == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    shutil.rmtree(photos)
    photos.mkdir()
    assert _index(photos, db, tiny_clip_dir, "--prune", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["removed"] == 2 and report["pruned_roots"] == [str(photos)]
    assert Store(str(db)).counts() == {}
    # a missing path the index never knew is still a typo
    assert _index(tmp_path / "nowhere", db, tiny_clip_dir) == 1


def test_a_column_left_by_a_killed_add_is_backfilled(photos, tmp_path, tiny_clip_dir):
    import pyarrow as pa
    from helpers.tiny_models import make_tiny_clip_dir

    from loupe.indexer import load_encoder

    db = tmp_path / "db"
    assert _index(photos, db, tiny_clip_dir) == 0
    other = make_tiny_clip_dir(str(tmp_path / "other-clip"), seed=1)
    spec = load_encoder(other, None, "cpu").spec
    # what a kill between the two steps of an old --add left: the column, no meta entry
    Store(str(db)).items().add_columns([pa.field(spec.column, pa.list_(pa.float32(),
                                                                        spec.dim))])
    assert _index(photos, db, tiny_clip_dir, "--model", other, "--add") == 0
    store = Store(str(db))
    assert spec.column in store.meta.encoders and store.meta.incomplete_columns == []
    rows = store.items().to_arrow().to_pylist()
    assert len(rows) == 3 and all(r[spec.column] is not None for r in rows)


SAVE_LOOP = r"""
import sys
from loupe.search.ann import build_index
from loupe.search.store import Store
store = Store(sys.argv[1])
column = next(iter(store.meta.encoders))
for _ in range(int(sys.argv[2])):
    build_index(store, column)
print("ok")
"""


def test_processes_saving_the_same_faiss_index_at_once_do_not_collide(photos, tmp_path,
                                                                       tiny_clip_dir):
    """Readers save FAISS files too (a search after a run refreshes the index): several at
    once use temp names of their own and rename them whole."""
    from loupe.search.ann import load_index

    db = tmp_path / "db"
    assert _index(photos, db, tiny_clip_dir) == 0
    savers = [subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(db), "15"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    for p in savers:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    store = Store(str(db))
    column = next(iter(store.meta.encoders))
    assert len(load_index(store, column)) == 3
    assert not [n for n in os.listdir(db / "faiss") if n.endswith(".tmp")]


def test_a_second_index_folder_on_the_same_tables_uri_is_refused(photos, tmp_path,
                                                                 tiny_clip_dir, capsys):
    """Writers are serialised by the lock in the index folder; two folders sharing one
    tables URI would not be, so the second is refused when it is made."""
    tables = tmp_path / "bucket" / "tables"
    base = ["--model", tiny_clip_dir, "--workers", "0", "--quiet", "--tables-uri", str(tables)]
    assert loupe(["index", str(photos), "--db", str(tmp_path / "one"), *base]) == 0
    capsys.readouterr()
    assert loupe(["index", str(photos), "--db", str(tmp_path / "two"), *base]) == 1
    assert "already belong to an index" in capsys.readouterr().err
    assert not (tmp_path / "two" / "meta.json").exists()
