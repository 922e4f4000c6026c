"""An index written by the release before the redesign (tests/fixtures/index-0.1, made by
tests/fixtures/make_index_0_1.py at commit 20f1526) opens and searches unchanged: the
same rows, stored strings, FAISS files and answers, and opening it rewrites nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.toys import SoundToyEncoder

from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.search.ann import saved_info
from loupe.search.engine import Searcher
from loupe.search.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "index-0.1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def old_db(tmp_path) -> Path:
    db = tmp_path / "db"
    shutil.copytree(FIXTURE / "db", db)
    return db


def test_the_old_index_opens_with_its_rows_and_stored_strings(old_db):
    store = Store(str(old_db))
    assert store.meta.format == 2
    assert store.counts() == EXPECTED["counts"]
    kinds = set(store.item_rows(["kind"])["kind"].to_pylist())
    assert kinds <= set(ItemKind) and kinds == {"photo", "frame", "audio"}
    media = {f["media"] for f in store.file_rows()}
    assert media == {MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.AUDIO}
    codes = {s["code"] for s in store.skipped_rows()}
    assert codes == {SkipCode.BAD, SkipCode.NOT_MEDIA} == {"bad", "not-media"}
    (column, spec), = store.meta.encoders.items()
    assert spec.backend == "toy-sound" and spec.audio is not None
    assert store.meta.last_run["embedded"] == EXPECTED["report"]["embedded"]
    info = saved_info(store, column)
    assert info is not None and info.version == store.version()


def _same_hits(got, want) -> None:
    assert [h.id for h in got] == [w["id"] for w in want]
    for h, w in zip(got, want, strict=True):
        assert (h.path, h.kind, h.timestamp, h.end) == (w["path"], w["kind"], w["timestamp"],
                                                        w["end"])
        assert h.score == pytest.approx(w["score"], abs=1e-6)
        assert [m.id for m in h.moments] == [m["id"] for m in w["moments"]]


def test_the_old_index_answers_as_it_did_and_is_left_as_it_was(old_db):
    before = _digest(old_db)
    searcher = Searcher(Store(str(old_db)), SoundToyEncoder())
    for name, q in EXPECTED["queries"].items():
        if "vector" in q:
            got = searcher.search_vector(np.asarray(q["vector"], np.float32), k=20, **q["kw"])
        else:
            got = searcher.search(q["terms"], k=20, **q["kw"])
        assert got, name
        _same_hits(got, q["hits"])
    # The saved FAISS index was the store's version: loaded, not rebuilt or rewritten;
    # meta.json and the tables are byte for byte the same.
    assert _digest(old_db) == before


def test_the_old_files_table_gains_decoded_from_on_its_first_write(old_db):
    """A column added to the files table since (how a camera raw was decoded) is read as
    null from the old table, and added (null for the old records) by the next write."""
    store = Store(str(old_db))
    old = store.file_rows()
    assert old and all(f["decoded_from"] is None for f in old)
    assert "decoded_from" not in store.files(create=False).schema.names  # opening added none
    record = dict(old[0], path="/archive/IMG_0001.CR2", decoded_from="raw preview 1616x1080")
    store.upsert_files([record])
    again = Store(str(old_db))
    assert "decoded_from" in again.files(create=False).schema.names
    rows = {f["path"]: f for f in again.file_rows()}
    assert rows["/archive/IMG_0001.CR2"]["decoded_from"] == "raw preview 1616x1080"
    assert [rows[f["path"]] for f in old] == old  # the old records as they were, null added
