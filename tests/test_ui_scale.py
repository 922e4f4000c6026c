"""Large archives in the UI: the folder filter reaches every folder (no cut at 5000),
the Index page's file lists come a page at a time, and the panels' lists (status,
counts, folders) are computed once per version of the index and again after a commit.

The big store is made cheaply: one real indexed photo in the folder that sorts last,
beside thousands of synthetic rows (items, file records, skip records) written through
the Store. bench/bench_ui_scale.py times the same things at 1M rows.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import pytest
from helpers.media import REPO, solid
from helpers.toys import ToyEncoder
from streamlit.testing.v1 import AppTest

from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.status import index_status, indexed_folders
from loupe.search.store import ITEM_META_COLUMNS, Store, item_id
from loupe.ui import core
from loupe.ui.summaries import PAGE_ROWS, IndexSummaries

APP = str(REPO / "ui" / "app.py")
TIMEOUT = 60
FOLDERS = 6000  # synthetic folders: more than the old list's 5000
BAD, UNSUPPORTED, NOT_MEDIA, PARTIAL = 450, 30, 10, 5


@pytest.fixture(autouse=True)
def gated(monkeypatch):
    """As served by server.py, behind its gate."""
    monkeypatch.setenv("LOUPE_UI_GATED", "1")


def _synthetic(store: Store, root: Path, column: str) -> None:
    """FOLDERS folders of one red photo each (rows only: no file on disk), and skip
    records: BAD unreadable, UNSUPPORTED sound files, NOT_MEDIA other files."""
    now = time.time()
    paths = [str(root / f"a{i:04d}" / "p.jpg") for i in range(FOLDERS)]
    store.upsert_items([{**dict.fromkeys(ITEM_META_COLUMNS), "id": item_id(p), "path": p,
                         "kind": "photo", "size": 10, "mtime_ns": 0, "fingerprint": f"{i:032x}",
                         "indexed_at": now, column: [1.0, 0.0, 0.0, 0.0]}
                        for i, p in enumerate(paths)])
    store.upsert_files([{"path": p, "size": 10, "mtime_ns": 0, "fingerprint": f"{i:032x}",
                         "media": "image", "rows": 1, "indexed_at": now,
                         "problem": "damaged tail" if i < PARTIAL else None}
                        for i, p in enumerate(paths)])
    skips = [(f"bad/b{i:04d}.jpg", "bad", None, f"cannot decode {i}") for i in range(BAD)]
    skips += [(f"snd/s{i:03d}.wav", "unsupported", "audio", "needs an audio model")
              for i in range(UNSUPPORTED)]
    skips += [(f"txt/t{i:03d}.txt", "not-media", None, "not media") for i in range(NOT_MEDIA)]
    store.upsert_skipped([{"path": str(root / p), "size": 1, "mtime_ns": 0, "kind": kind,
                           "code": code, "reason": reason, "at": now}
                          for p, code, kind, reason in skips])


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, str]:
    """(archive root, db): FOLDERS synthetic folders, and root/zz-last/red.png indexed
    for real (the folder that sorts last)."""
    root = tmp_path_factory.mktemp("big")
    solid(root / "zz-last" / "red.png", (255, 0, 0))
    db = str(tmp_path_factory.mktemp("db") / "db")
    store = Store(db, create=True)
    toy = ToyEncoder()
    index_paths([str(root / "zz-last")], store, toy, IndexOptions(workers=0, progress=False))
    _synthetic(store, root, toy.spec.column)
    return root, db


def _app(db: str, monkeypatch) -> AppTest:
    monkeypatch.setattr(sys, "argv", [APP, "--db", db])
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _names(at: AppTest) -> list[str]:
    return [Path(h["path"]).name for h in at.session_state["results"]]


def test_match_folders_keeps_order_counts_all_and_needs_every_word():
    folders = ["/p", "/p/2023 Trip", "/p/2024/Trip", "/p/2024/work", "/q/trip"]
    assert core.match_folders(folders, "") == (folders, 5)
    assert core.match_folders(folders, "TRIP") == (["/p/2023 Trip", "/p/2024/Trip", "/q/trip"], 3)
    assert core.match_folders(folders, "2024 trip") == (["/p/2024/Trip"], 1)
    assert core.match_folders(folders, "trip", limit=1) == (["/p/2023 Trip"], 3)
    assert core.match_folders(folders, "nowhere") == ([], 0)


def test_indexed_folders_are_the_files_dirnames_and_the_folders_above(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    assert indexed_folders(store) == []
    paths = ["/r/a/1.jpg", "/r/a/b/2.jpg", "/r/c d/é/3.jpg", "/r/a//4.jpg"]
    store.upsert_files([{"path": p, "media": "image"} for p in paths])
    assert indexed_folders(store) == ["/r", "/r/a", "/r/a/b", "/r/c d", "/r/c d/é"]
    store.upsert_files([{"path": "/top.jpg", "media": "image"}])  # a file at the root
    assert indexed_folders(store) == ["/", "/r", "/r/a", "/r/a/b", "/r/c d", "/r/c d/é"]


def test_lists_and_counts_read_the_same_without_pylance(big, monkeypatch):
    """pylance is not a core dependency: without it the columns come through LanceDB."""
    import lancedb.table

    _, db = big
    want = index_status(Store(db)), indexed_folders(Store(db))

    def no_lance(self, **kw):
        raise ImportError("no pylance")

    monkeypatch.setattr(lancedb.table.LanceTable, "to_lance", no_lance)
    assert (index_status(Store(db)), indexed_folders(Store(db))) == want


def test_counts_of_values_not_expected_are_read(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    store.upsert_files([{"path": "/r/1.jpg", "media": "image"}, {"path": "/r/2.jpg"},
                        {"path": "/r/3.x", "media": "other"}])
    assert index_status(store)["files"] == {"image": 1, None: 1, "other": 1}


def test_status_counts_and_lists_agree(big):
    root, db = big
    st = index_status(Store(db))
    assert st["counts"] == {"photo": FOLDERS + 1} and st["files"] == {"image": FOLDERS + 1}
    assert (st["skipped_count"], st["unsupported_count"], st["not_media"],
            st["partial_count"]) == (BAD, UNSUPPORTED, NOT_MEDIA, PARTIAL)
    assert len(st["skipped"]) == BAD and len(st["unsupported"]) == UNSUPPORTED
    assert len(st["partial"]) == PARTIAL
    assert [s["path"] for s in st["skipped"]] == sorted(s["path"] for s in st["skipped"])
    assert st["unsupported"][0] == {"path": str(root / "snd" / "s000.wav"), "kind": "audio",
                                    "reason": "needs an audio model"}
    slim = index_status(Store(db), lists=False)
    assert "skipped" not in slim and slim["skipped_count"] == BAD


def test_the_last_of_thousands_of_folders_is_found_picked_and_filters(big, monkeypatch):
    root, db = big
    last = str(root / "zz-last")
    at = _app(db, monkeypatch).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from loupe.ui.resources import search_service

    folders = search_service(db).folders()
    assert len(folders) > 5000 and folders[-1] == last  # every folder, none cut
    box = at.selectbox(key="folder")
    assert box.options[0] == "All folders" and len(box.options) == 1 + core.FOLDERS_SHOWN
    assert last not in box.options
    assert any(f"and {len(folders) - core.FOLDERS_SHOWN:,} more" in c.value for c in at.caption)
    at.text_input(key="folder_q").input("ZZ-LAST").run()
    assert at.selectbox(key="folder").options == ["All folders", last]
    at.selectbox(key="folder").set_value(last).run()
    at.text_input(key="query").input("red").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _names(at) == ["red.png"]  # 6000 other red photos lie outside the folder
    # other words in the box: the picked folder stays, and so does the search
    at.text_input(key="folder_q").input("a00").run()
    assert at.selectbox(key="folder").value == last and _names(at) == ["red.png"]
    at.selectbox(key="folder").set_value("").run()
    assert len(at.session_state["results"]) == 20 and "p.jpg" in _names(at)  # all folders


def _shown_files(at: AppTest) -> list[str]:
    return list(next(d.value for d in at.dataframe if "reason" in d.value.columns)["file"])


def test_skipped_files_come_a_page_at_a_time(big, monkeypatch):
    root, db = big
    at = _app(db, monkeypatch).run()
    at.switch_page("page_index.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Skipped files"] == f"{BAD}"
    assert any(f"Skipped files ({BAD})" in h.value for h in at.subheader)
    want = [str(root / "bad" / f"b{i:04d}.jpg") for i in range(BAD)]
    assert _shown_files(at) == want[:PAGE_ROWS]
    pager = at.number_input(key="skipped_page")
    assert pager.value == 1 and pager.max == 3 and pager.label == "Page (of 3)"
    assert any(f"Files 1–200 of {BAD}" in c.value for c in at.caption)
    pager.set_value(2).run()
    assert _shown_files(at) == want[PAGE_ROWS:2 * PAGE_ROWS]
    assert any(f"Files 201–400 of {BAD}" in c.value for c in at.caption)
    at.number_input(key="skipped_page").set_value(3).run()
    assert _shown_files(at) == want[2 * PAGE_ROWS:]
    assert "skipped_csv" in [b.key for b in at.get("download_button")]
    # the whole list as CSV, built only when asked (the button's callable)
    rows = list(csv.DictReader(io.StringIO(IndexSummaries(db).csv("skipped").decode())))
    assert [r["path"] for r in rows] == want and rows[3]["reason"] == "cannot decode 3"


def test_status_is_computed_once_per_version_and_again_after_a_commit(tmp_path, monkeypatch):
    import loupe.ui.summaries as summaries

    calls = []
    real = summaries.index_status

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(summaries, "index_status", counted)
    db = str(tmp_path / "db")
    solid(tmp_path / "photos" / "red.png", (255, 0, 0))
    store = Store(db, create=True)
    index_paths([str(tmp_path / "photos")], store, ToyEncoder(),
                IndexOptions(workers=0, progress=False))
    at = _app(db, monkeypatch)
    at.run()
    at.switch_page("page_index.py").run()
    at.run()
    _app(db, monkeypatch).run().switch_page("page_index.py").run()  # another session
    assert not at.exception and len(calls) == 1
    assert "index_status" not in at.session_state
    store.upsert_skipped([{"path": str(tmp_path / "photos" / "bad.jpg"), "code": "bad",
                           "reason": "cannot decode"}])  # a commit to the skipped table
    at.run()
    assert len(calls) == 2
    assert {m.label: m.value for m in at.metric}["Skipped files"] == "1"
    at.run()
    assert len(calls) == 2


def test_counts_and_folders_follow_an_indexing_run(tmp_path):
    db = str(tmp_path / "db")
    solid(tmp_path / "photos" / "red.png", (255, 0, 0))
    store = Store(db, create=True)
    toy = ToyEncoder()
    index_paths([str(tmp_path / "photos")], store, toy, IndexOptions(workers=0, progress=False))
    lists = IndexSummaries(db)
    assert lists.counts() == {"photo": 1}
    assert lists.folders() == [str(tmp_path / "photos")]
    assert lists.status()["files"] == {"image": 1}
    solid(tmp_path / "photos" / "more" / "blue.png", (0, 0, 255))
    solid(tmp_path / "photos" / "more" / "green.png", (0, 255, 0))
    index_paths([str(tmp_path / "photos")], store, toy, IndexOptions(workers=0, progress=False))
    assert lists.counts() == {"photo": 3}
    assert lists.folders() == [str(tmp_path / "photos"), str(tmp_path / "photos" / "more")]
    status = lists.status()
    assert status["files"] == {"image": 3} and status["last_run"]["embedded"] == 2
