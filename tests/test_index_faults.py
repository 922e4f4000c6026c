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
