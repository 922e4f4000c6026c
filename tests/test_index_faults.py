"""The index's faults are the run's, not the file's: a full spill disk, a read-only
index, an I/O error in a commit stop the run with one line and exit 1, record no source
file as bad, and a run after the fault is gone ends equal to a clean run."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from helpers.media import solid

import loupe.indexer.decode.results as results
from loupe.search import Store
from loupe.search.cli import main as loupe


@pytest.fixture
def archive(corpus, tmp_path) -> Path:
    d = tmp_path / "archive"
    for i, c in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        solid(d / f"p{i}.png", c)
    shutil.copy(corpus / "video" / "three_shots_10s.webm", d / "v.webm")
    return d


def _index(folder: Path, db: Path, model: str) -> int:
    return loupe(["index", str(folder), "--db", str(db), "--model", model, "--workers", "0",
                  "--quiet", "--every", "2", "--commit-rows", "2", "--batch-size", "2"])


def _state(db: Path) -> dict:
    store = Store(str(db))
    rows = store.items(create=False).to_arrow().drop_columns(["indexed_at"]).to_pylist()
    files = sorted((f["path"], f["rows"], f["media"], f["problem"]) for f in store.file_rows())
    return {"ids": sorted(r["id"] for r in rows), "files": files,
            "skipped": store.skipped_rows()}


@pytest.fixture
def clean(archive, tmp_path, tiny_clip_dir) -> dict:
    assert _index(archive, tmp_path / "clean", tiny_clip_dir) == 0
    return _state(tmp_path / "clean")


def _fail_with(monkeypatch, target, name: str, code: int, after: int = 0) -> list[int]:
    real = getattr(target, name, open)
    calls = [0]

    def failing(*a, **kw):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(code, "injected fault")
        return real(*a, **kw)

    monkeypatch.setattr(target, name, failing, raising=False)
    return calls


@pytest.mark.parametrize("target, name, code, words", [
    (results, "open", errno.ENOSPC, "is full"),  # the spill's writes (Spill.append)
    (Store, "upsert_items", errno.EROFS, "is read-only"),
    (Store, "upsert_files", errno.EIO, "had an I/O error"),
], ids=["full-spill", "read-only-store", "io-error-in-commit"])
def test_an_index_fault_stops_the_run_and_blames_no_file(target, name, code, words, archive,
                                                         tmp_path, tiny_clip_dir, clean,
                                                         monkeypatch, capsys):
    db = tmp_path / "db"
    calls = _fail_with(monkeypatch, target, name, code, after=1)
    capsys.readouterr()
    assert _index(archive, db, tiny_clip_dir) == 1
    assert calls[0] >= 2  # the fault was met
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("loupe: error: the index folder ") and words in err[0]
    assert "the work committed so far is kept" in err[0]
    assert Store(str(db)).skipped_rows() == []  # no good file recorded as bad
    monkeypatch.undo()
    assert _index(archive, db, tiny_clip_dir) == 0
    assert _state(db) == clean


def test_a_video_whose_spill_cannot_fit_is_refused_before_it_is_decoded(
        archive, tmp_path, tiny_clip_dir, clean, monkeypatch, capsys):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 10 << 20))
    written = _fail_with(monkeypatch, results, "open", errno.ENOSPC, after=10**9)  # counts
    db = tmp_path / "db"
    capsys.readouterr()
    assert _index(archive, db, tiny_clip_dir) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too full for v.webm: it needs about" in err[0], err
    assert "the disk has 10 MiB free" in err[0] and err[0].endswith("committed so far is kept")
    assert written[0] == 0  # refused before a single frame was spilled
    assert Store(str(db)).skipped_rows() == []
    monkeypatch.undo()
    assert _index(archive, db, tiny_clip_dir) == 0
    assert _state(db) == clean


@pytest.fixture
def small_mount(tmp_path):
    """A real 16 MiB tmpfs (root with mount rights only; skipped elsewhere)."""
    import subprocess

    where = tmp_path / "mnt"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount rights)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _remount(where: Path, options: str) -> None:
    import subprocess

    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def test_a_real_full_then_read_only_mount_stops_the_run_and_a_rerun_completes(
        archive, small_mount, tmp_path, tiny_clip_dir, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (archive / "noise").mkdir()
    for i in range(40):  # noisy photos: more index than the room left on the mount
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(archive / "noise" / f"n{i}.png")
    assert _index(archive, tmp_path / "clean", tiny_clip_dir) == 0
    filler = small_mount / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * (shutil.disk_usage(small_mount).free - (160 << 10)))
    db = small_mount / "db"
    capsys.readouterr()
    assert _index(archive, db, tiny_clip_dir) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "full" in err[0] and "is kept" in err[0], err
    assert Store(str(db)).skipped_rows() == []
    _remount(small_mount, "ro")
    assert _index(archive, db, tiny_clip_dir) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is read-only" in err[0], err
    _remount(small_mount, "rw")
    filler.unlink()
    assert _index(archive, db, tiny_clip_dir) == 0
    assert _state(db) == _state(tmp_path / "clean")
