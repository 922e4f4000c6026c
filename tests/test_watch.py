"""Watch mode (loupe.indexer.pipeline.watch, `loupe index --watch`): files added,
changed, moved and deleted under a watched folder are reflected in the index, a copy in
progress is indexed once when complete, a root that goes away keeps its rows, and the
writer lock is held only while a batch is written. With file-system events (inotify)
and with polling. Waits are conditions polled with a timeout, never fixed sleeps
(except where a test shows that something does *not* happen before a time)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.media import solid
from helpers.toys import ToyEncoder
from PIL import Image

from loupe.indexer import IndexOptions, LoupeError, index_paths, start_watch
from loupe.indexer.pipeline.mounts import fs_type, needs_polling
from loupe.indexer.pipeline.settle import Pending
from loupe.search import Searcher, Store
from loupe.search.store.lock import writer_lock

SETTLE = 0.3
OPTS = IndexOptions(workers=0, progress=False)
TESTS = Path(__file__).resolve().parent
# `loupe` in a fresh process that knows the toy encoders (the index records "toy")
LOUPE = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
         "import helpers.toys; from loupe.search.cli import main; sys.exit(main())", str(TESTS)]


def until(predicate, timeout: float = 20.0, what: str = "the condition"):
    """``predicate()`` once it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def batch_done(w, runs: int = -1) -> None:
    """Wait until the watcher has finished a batch after ``runs`` (default: any) and has
    nothing waiting or running."""
    def done():
        s = w.state()
        return s.runs > runs and not s.running and s.pending == 0
    until(done, what=f"a batch after run {runs}")


def files(db) -> dict[str, dict]:
    """{file name: its record} of what the index holds."""
    return {os.path.basename(r["path"]): r for r in Store(str(db)).file_rows()}


def items(db) -> list[str]:
    return sorted(os.path.basename(p) for p in
                  Store(str(db)).item_rows(["path"])["path"].to_pylist())


def png_bytes(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "photos"
    solid(root / "red.png", (255, 0, 0))
    solid(root / "green.png", (0, 255, 0))
    db = tmp_path / "db"
    index_paths([str(root)], Store(str(db), create=True), ToyEncoder(), OPTS)
    return root, db


@pytest.fixture(params=["events", "polling"])
def watching(request, archive):
    root, db = archive
    toy = ToyEncoder()
    poll = 0.2 if request.param == "polling" else None
    w = start_watch(str(db), [str(root)], poll=poll, settle=SETTLE, encoders=[toy],
                    options=OPTS, initial_scan=False, check=0.1)
    yield root, db, w, toy
    w.stop()
    assert not w.alive


def test_added_changed_moved_deleted_files_are_reflected(watching):
    root, db, w, toy = watching
    assert [r.mode for r in w.state().roots] == [
        "polling" if w.poll else "events"]
    searcher = Searcher(Store(str(db)), toy)

    solid(root / "blue.png", (0, 0, 255))  # added
    batch_done(w, 0)
    assert "blue.png" in files(db)
    assert searcher.search(["blue"], k=1)[0].path == str(root / "blue.png")
    assert w.state().last_searchable is not None

    size = files(db)["red.png"]["size"]
    solid(root / "red.png", (0, 0, 0), size=(60, 50))  # changed: now black, bigger
    until(lambda: files(db)["red.png"]["size"] != size, what="red.png re-indexed")
    assert searcher.search(["black"], k=1)[0].path == str(root / "red.png")

    embedded = toy.images_embedded
    (root / "sub").mkdir()
    os.rename(root / "blue.png", root / "sub" / "moved.png")  # moved: vectors reused
    until(lambda: "moved.png" in files(db) and "blue.png" not in files(db), what="the move")
    assert toy.images_embedded == embedded
    assert items(db) == ["green.png", "moved.png", "red.png"]
    assert searcher.search(["blue"], k=1)[0].path == str(root / "sub" / "moved.png")

    os.remove(root / "green.png")  # deleted: its rows go
    until(lambda: "green.png" not in files(db), what="green.png removed")
    batch_done(w)
    assert items(db) == ["moved.png", "red.png"]
    s = w.state()
    assert s.last_error is None and s.pending == 0 and s.runs >= 4
    assert s.last_run.removed == 1 and s.last_run.line().startswith("indexed 0 new")
    # the runs were over single files: none of them is kept as a root of the index
    assert Store(str(db)).meta.roots == [os.path.realpath(root)]


def test_a_folder_deleted_or_moved_away_loses_its_rows(watching, tmp_path):
    root, db, w, _ = watching
    (root / "a").mkdir()
    (root / "b").mkdir()
    solid(root / "a" / "one.png", (10, 10, 200))
    solid(root / "b" / "two.png", (10, 200, 10))
    until(lambda: {"one.png", "two.png"} <= set(files(db)), what="the two folders indexed")
    batch_done(w)
    import shutil

    shutil.rmtree(root / "a")
    os.rename(root / "b", tmp_path / "elsewhere")  # out of the watched folder
    until(lambda: not {"one.png", "two.png"} & set(files(db)), what="their rows removed")
    batch_done(w)
    assert items(db) == ["green.png", "red.png"]


def test_a_copy_in_progress_is_indexed_once_complete(watching):
    root, db, w, toy = watching
    data = png_bytes((0, 0, 255))
    runs = w.state().runs
    with open(root / "copying.png", "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(SETTLE / 3)  # less than the settle time
        f.write(data[len(data) // 2:])
    until(lambda: "copying.png" in files(db), what="the copy indexed")
    batch_done(w)
    s = w.state()
    assert s.runs == runs + 1  # one batch: never taken half written
    assert files(db)["copying.png"]["size"] == len(data)
    assert Store(str(db)).skipped_rows() == []
    assert toy.images_embedded == 1


def test_a_file_open_for_writing_waits_for_its_close(archive):
    """With events, a file written and not closed yet is not taken after the settle time
    alone (only after open_grace of silence)."""
    root, db = archive
    w = start_watch(str(db), [str(root)], settle=SETTLE, encoders=[ToyEncoder()],
                    options=OPTS, initial_scan=False, check=0.1)
    try:
        data = png_bytes((0, 0, 255))
        with open(root / "slow.png", "wb") as f:
            f.write(data[:100])
            f.flush()
            until(lambda: w.state().pending == 1, what="the write seen")
            time.sleep(SETTLE * 4)  # the point: it is not taken while open
            assert "slow.png" not in files(db) and w.state().runs == 0
            f.write(data[100:])
        until(lambda: "slow.png" in files(db), what="the closed file indexed")
        batch_done(w)
        assert files(db)["slow.png"]["size"] == len(data) and w.state().runs == 1
    finally:
        w.stop()


def test_a_root_that_goes_away_keeps_its_rows_and_is_scanned_again(watching, tmp_path):
    root, db, w, _ = watching
    away = tmp_path / "unmounted"
    os.rename(root, away)  # the drive is unplugged (the folder is gone)
    until(lambda: not w.state().roots[0].online, what="the root seen offline")
    assert items(db) == ["green.png", "red.png"]  # rows kept
    solid(away / "while-away.png", (0, 0, 255))  # changed while away
    os.remove(away / "green.png")
    os.rename(away, root)  # plugged in again
    until(lambda: "while-away.png" in files(db) and "green.png" not in files(db),
          what="the root scanned again")
    batch_done(w)
    assert items(db) == ["red.png", "while-away.png"]
    assert w.state().roots[0].online
    solid(root / "after.png", (0, 255, 0))  # and it is watched again
    until(lambda: "after.png" in files(db), what="a file after the return")

    # an empty mount point (every file gone at once, folder kept): rows kept too
    for p in list(root.iterdir()):
        os.rename(p, tmp_path / p.name)
    until(lambda: not w.state().roots[0].online, what="the empty root seen offline")
    assert items(db) == ["after.png", "red.png", "while-away.png"]
    assert w.state().last_error is None


def test_loupe_index_runs_while_the_watcher_watches(archive, tmp_path):
    """The watcher holds the writer lock only while it writes: `loupe index --no-wait`
    (which fails at once when the lock is held) succeeds in another process."""
    root, db = archive
    w = start_watch(str(db), [str(root)], settle=SETTLE, encoders=[ToyEncoder()],
                    options=OPTS, initial_scan=False, check=0.1)
    try:
        solid(tmp_path / "other" / "blue.png", (0, 0, 255))
        p = subprocess.run([*LOUPE, "index", str(tmp_path / "other"), "--db", str(db),
                            "--workers", "0", "--quiet", "--no-wait"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "blue.png" in files(db)
        solid(root / "after.png", (0, 0, 0))  # and the watcher goes on
        until(lambda: "after.png" in files(db), what="a file after the other run")
        batch_done(w)
        assert w.state().last_error is None
    finally:
        w.stop()


def test_a_batch_waits_while_another_writer_holds_the_lock(watching):
    root, db, w, _ = watching
    with writer_lock(str(db), "loupe index", on_wait=None):
        solid(root / "waiting.png", (0, 0, 0))
        until(lambda: w.state().waiting_for, what="the watcher waiting for the lock")
        assert "waiting.png" not in files(db)
    until(lambda: "waiting.png" in files(db), what="the batch after the lock")
    assert w.state().waiting_for is None and w.state().last_error is None


def test_stop_ends_the_thread_and_errors_do_not(archive, tmp_path):
    root, db = archive
    w = start_watch(str(db), [str(root)], settle=SETTLE, options=OPTS, initial_scan=True,
                    encoders=[ToyEncoder(16)], check=0.1)  # not the index's model
    until(lambda: w.state().last_error, what="the error")
    s = w.state()
    assert "another encoder" in s.last_error and "\n" not in s.last_error
    assert w.alive and s.alive
    w.stop()
    assert not w.alive and not w.state().alive
    with pytest.raises(LoupeError, match="watches folders"):
        start_watch(str(db), [str(root / "red.png")])


def test_cli_index_watch_until_ctrl_c(archive, tmp_path):
    root, db = archive
    p = subprocess.Popen([*LOUPE, "index", str(root), "--db", str(db), "--workers", "0",
                          "--quiet", "--watch", "--settle", str(SETTLE)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "indexed into" in p.stdout.readline()  # the first run's report
        solid(root / "blue.png", (0, 0, 255))
        line = until(p.stdout.readline, timeout=60, what="a batch line")
        assert line.strip().startswith("indexed 1 new, 0 changed, 0 removed in "), line
        assert "blue.png" in files(db)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode in (0, 130), err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("loupe: stopped watching (1 batch ")


def test_cli_watch_refuses_a_file_and_poll_without_watch(archive, capsys):
    from loupe.search.cli import main

    root, db = archive
    assert main(["index", str(root / "red.png"), "--db", str(db), "--watch"]) == 1
    assert "--watch watches folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", str(root), "--db", str(db), "--poll", "5"])
    assert "--poll and --settle go with --watch" in capsys.readouterr().err


def test_settling_is_size_and_mtime_unchanged_for_the_settle_time():
    p = Pending(settle=1.0, open_grace=10.0)
    stat = {"a": (5, 1), "b": (7, 1)}
    p.touch("a", 0.0, (5, 1))
    p.touch("b", 0.0, (7, 1), writing=True)
    assert p.take(0.5, stat.get) == []
    stat["a"] = (9, 2)  # grew without an event (polling): its settle starts over
    assert p.take(1.0, stat.get) == [] and p.next_due(1.0) == pytest.approx(1.0)
    assert p.take(2.0, stat.get) == ["a"]
    assert p.take(5.0, stat.get) == []  # b is open for writing
    p.touch("b", 6.0, (7, 1), writing=False)  # closed
    assert p.take(7.0, stat.get) == ["b"] and len(p) == 0


def test_network_mounts_are_polled(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n"
                      "server:/photos /mnt/nas nfs4 rw 0 0\n"
                      "//host/share /mnt/my\\040share cifs rw 0 0\n"
                      "sshfs#me@host: /mnt/ssh fuse.sshfs rw 0 0\n")
    assert fs_type("/mnt/nas/2024", str(mounts)) == "nfs4"
    assert fs_type("/mnt/my share/a", str(mounts)) == "cifs"
    assert fs_type("/mnt/ssh", str(mounts)) == "fuse.sshfs"
    assert fs_type("/home/me", str(mounts)) == "ext4"
    assert [needs_polling(t) for t in ("nfs4", "cifs", "fuse.sshfs", "ext4", "fuseblk")] == [
        True, True, True, False, False]


def test_the_index_page_shows_what_the_watcher_does(archive, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from loupe.ui import watching
    from loupe.ui.core import parse_args

    root, db = archive
    app = str(TESTS.parent / "ui" / "app.py")
    monkeypatch.setenv("LOUPE_UI_GATED", "1")  # as served by server.py, behind the gate
    monkeypatch.setattr(sys, "argv", [app, "--db", str(db), "--watch"])
    try:
        at = AppTest.from_file(app, default_timeout=60).run()
        at.switch_page("page_index.py").run()
        assert not at.exception, at.exception
        assert "Watching" in [h.value for h in at.subheader]
        assert any(str(root) in c.value and "file-system events" in c.value
                   for c in at.caption)
        w = watching.watcher(str(db))
        assert w is not None and w is watching.ensure_watching(parse_args(sys.argv[1:]))
        batch_done(w, 0)  # the scan at the start: changes made while nobody watched
        solid(root / "blue.png", (0, 0, 255))
        until(lambda: "blue.png" in files(db), what="blue.png indexed by the UI's watcher")
        batch_done(w, 1)
        at.run()
        assert any(c.value.startswith("Indexed 1 new, 0 changed, 0 removed")
                   for c in at.caption), [c.value for c in at.caption]
        assert watching.watch_state(str(db))["runs"] == 2
        assert "Up to date" in at.markdown[-1].value
    finally:
        watching.stop_all()
    assert watching.watch_state(str(db)) is None
