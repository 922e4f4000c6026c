"""Incremental indexing with the toy encoder: after any mix of adds, changes, moves,
copies and deletes, the store must hold exactly what a fresh index of the folder holds,
having embedded only content it had never seen."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.media import solid
from helpers.toys import ToyEncoder

import loupe.indexer.decode.worker as worker_mod
from loupe.indexer.pipeline import IndexOptions, IndexReport, index_paths
from loupe.search.cli import main as loupe_main
from loupe.search.engine import Searcher
from loupe.search.status import index_status
from loupe.search.store import Store, item_id

COLOURS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
    "dark": (40, 40, 40), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
    "purple": (128, 0, 128), "orange": (255, 128, 0), "grey": (128, 128, 128),
}


def _index(roots, db: Path, enc: ToyEncoder | None = None,
           **opts) -> tuple[Store, IndexReport, ToyEncoder]:
    enc = enc or ToyEncoder()
    store = Store(str(db), create=True)
    options = IndexOptions(**{"workers": 0, "progress": False, **opts})
    roots = [str(r) for r in (roots if isinstance(roots, list) else [roots])]
    return store, index_paths(roots, store, enc, options), enc


def _snapshot(store: Store) -> dict[str, dict]:
    """{path: row} without the run-dependent indexed_at, checking ids and uniqueness."""
    t = store.items(create=False)
    if t is None:
        return {}
    col = next(iter(store.meta.encoders))
    out = {}
    for r in t.to_arrow().to_pylist():
        assert r["path"] not in out, f"duplicate row for {r['path']}"
        assert r["id"] == item_id(r["path"], "photo")
        r.pop("indexed_at")
        r["vector"] = np.asarray(r.pop(col), np.float32)
        out[r["path"]] = r
    return out


def _assert_same_rows(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert set(got) == set(want), (
        f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}")
    for p, w in want.items():
        g = got[p]
        for key in ("id", "kind", "size", "mtime_ns", "fingerprint", "width", "height"):
            assert g[key] == w[key], (p, key, g[key], w[key])
        assert np.allclose(g["vector"], w["vector"], atol=1e-6), p


def _fresh(root: Path, tmp_path: Path, name: str = "fresh-db") -> dict[str, dict]:
    store, _, _ = _index(root, tmp_path / name)
    return _snapshot(store)


def _rewrite(path: Path, colour, size=(40, 30), fmt: str | None = None) -> None:
    """New content, and an mtime clearly after the old one."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    solid(path, colour, size=size, fmt=fmt)
    t = max(old, path.stat().st_mtime_ns) + 5_000_000_000
    os.utime(path, ns=(t, t))


def _skipped(store: Store) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in index_status(store)["skipped"]}


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    for name in ("red", "green", "blue", "white"):
        solid(root / f"{name}.png", COLOURS[name])
    solid(root / "sub" / "dark.jpg", COLOURS["dark"], fmt="JPEG")
    solid(root / "doomed.png", COLOURS["yellow"])
    solid(root / "changing.png", COLOURS["cyan"], size=(50, 20))
    return root


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
def test_mixed_changes_equal_fresh_index(photos, tmp_path, workers):
    db = tmp_path / "db"
    store, report, enc = _index(photos, db, workers=workers)
    assert report.embedded == enc.images_embedded == 7
    searcher = Searcher(store, ToyEncoder())
    assert any(h.path.endswith("doomed.png") for h in searcher.search(["red green"], k=10))

    solid(photos / "new.png", COLOURS["purple"])  # add
    _rewrite(photos / "changing.png", COLOURS["orange"], size=(30, 60))  # change
    (photos / "moved").mkdir()
    os.rename(photos / "red.png", photos / "moved" / "red-renamed.png")  # move + rename
    shutil.copy(photos / "green.png", photos / "green-copy.png")  # duplicate
    os.rename(photos / "sub" / "dark.jpg", photos / "sub" / "dark-moved.jpg")  # rename
    (photos / "doomed.png").unlink()  # delete

    store, report, enc = _index(photos, db, workers=workers)
    # only the new and the changed content went through the encoder
    assert enc.images_embedded == 2 and report.embedded == 2
    assert report.reused == 3  # the two moves and the copy
    assert report.removed == 3  # red.png, dark.jpg and doomed.png are gone
    _assert_same_rows(_snapshot(store), _fresh(photos, tmp_path))
    changed = _snapshot(store)[str(photos / "changing.png")]
    assert (changed["width"], changed["height"]) == (30, 60)
    assert np.allclose(changed["vector"], ToyEncoder().embed_pixels(
        np.full((1, 8, 8, 3), COLOURS["orange"], np.uint8))[0], atol=2e-2)

    # deleted files vanish from the store and from searches, old searcher or new
    for s in (searcher, Searcher(Store(str(db)), ToyEncoder())):
        paths = {h.path for h in s.search(["yellow"], k=100)}
        assert str(photos / "doomed.png") not in paths
        assert str(photos / "red.png") not in paths
        assert str(photos / "moved" / "red-renamed.png") in paths
        assert len(paths) == 8
    assert _skipped(store) == {}

    # and a third run has nothing to do
    store, report, enc = _index(photos, db, workers=workers)
    assert (report.to_process, report.embedded, enc.images_embedded) == (0, 0, 0)
    assert report.unchanged == 8


@pytest.mark.parametrize("commit_rows", [256, 1])
def test_swapped_names_follow_content(photos, tmp_path, commit_rows):
    """red.png and green.png trade contents (names swapped): both reuse vectors and
    end up right, whether or not the two land in the same commit."""
    db = tmp_path / "db"
    for i, name in enumerate(("red.png", "green.png")):  # distinct mtimes, whatever the fs
        t = (photos / name).stat().st_mtime_ns + (i + 1) * 3_000_000_000
        os.utime(photos / name, ns=(t, t))
    _index(photos, db)
    tmp = photos / "swap.tmp"
    os.rename(photos / "red.png", tmp)
    os.rename(photos / "green.png", photos / "red.png")
    os.rename(tmp, photos / "green.png")
    store, report, enc = _index(photos, db, commit_rows=commit_rows)
    assert enc.images_embedded == 0 and report.reused == 2
    _assert_same_rows(_snapshot(store), _fresh(photos, tmp_path))


def test_unchanged_folder_decodes_and_embeds_nothing(photos, tmp_path, monkeypatch):
    db = tmp_path / "db"
    _index(photos, db)
    looked_at: list[str] = []
    real = worker_mod.process_file_with

    def spy(path, *a, **kw):
        looked_at.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr("loupe.indexer.decode.pool.process_file_with", spy)
    before = _snapshot(Store(str(db)))
    store, report, enc = _index(photos, db)
    assert report.to_process == 0 and report.embedded == 0 and report.reused == 0
    assert report.unchanged == report.files_seen == 7
    assert looked_at == [] and enc.pixel_calls == 0
    _assert_same_rows(_snapshot(store), before)
    # the spy does see work when there is some
    solid(photos / "extra.png", COLOURS["grey"])
    _, report, enc = _index(photos, db)
    assert looked_at == [str(photos / "extra.png")] and enc.images_embedded == 1


def test_second_root_keeps_first_roots_rows(tmp_path):
    a, b = tmp_path / "photos", tmp_path / "photos-b"  # b's name starts with a's
    solid(a / "a1.png", COLOURS["red"])
    solid(a / "a2.png", COLOURS["green"])
    solid(b / "b1.png", COLOURS["blue"])
    single = solid(tmp_path / "loose" / "single.png", COLOURS["white"])
    db = tmp_path / "db"
    _index(a, db)
    store, report, _ = _index(b, db)
    assert report.removed == 0
    assert set(_snapshot(store)) == {str(a / "a1.png"), str(a / "a2.png"), str(b / "b1.png")}
    store, report, _ = _index(single, db)  # a file as a root
    assert report.removed == 0 and len(_snapshot(store)) == 4
    # deleting in A and re-indexing A touches nothing of B's or the single file's
    (a / "a2.png").unlink()
    store, report, _ = _index(a, db)
    assert report.removed == 1
    assert set(_snapshot(store)) == {str(a / "a1.png"), str(b / "b1.png"), str(single)}
    # both roots at once: the same as a fresh index of both
    store, report, _ = _index([a, b], db)
    assert report.to_process == 0 and report.removed == 0
    fresh, _, _ = _index([a, b, single], tmp_path / "fresh-db")
    _assert_same_rows(_snapshot(store), _snapshot(fresh))


def test_unreadable_folder_or_missing_root_keeps_its_rows(photos, tmp_path, monkeypatch):
    """A folder that cannot be listed this time (permissions, an unmounted drive) is
    reported, and its rows are kept rather than taken for deleted files."""
    db = tmp_path / "db"
    _index(photos, db)
    before = _snapshot(Store(str(db)))
    sub = photos / "sub"
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path) == str(sub):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    store, report, _ = _index(photos, db)
    assert report.removed == 0 and report.skipped == 1
    _assert_same_rows(_snapshot(store), before)
    assert set(_skipped(store)) == {str(sub)} and "cannot list" in _skipped(store)[str(sub)]
    monkeypatch.setattr(os, "scandir", real_scandir)
    store, report, enc = _index(photos, db)
    assert _skipped(store) == {} and enc.images_embedded == 0
    _assert_same_rows(_snapshot(store), before)

    # the whole root gone (unmounted): nothing deleted either
    os.rename(photos, tmp_path / "elsewhere")
    store, report, _ = _index(photos, db)
    assert report.removed == 0
    _assert_same_rows(_snapshot(store), before)
    os.rename(tmp_path / "elsewhere", photos)
    store, report, enc = _index(photos, db)
    assert _skipped(store) == {} and enc.images_embedded == 0 and report.to_process == 0
    _assert_same_rows(_snapshot(store), _fresh(photos, tmp_path))


def test_bad_then_fixed_and_good_then_corrupt(photos, tmp_path):
    db = tmp_path / "db"
    broken = photos / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    store, report, _ = _index(photos, db)
    assert report.skipped == 1 and str(broken) in _skipped(store)

    # fixed: indexed, and off the skipped list
    _rewrite(broken, COLOURS["purple"], fmt="JPEG")
    # turned corrupt: out of the results, onto the skipped list
    blue = photos / "blue.png"
    data = blue.read_bytes()
    blue.write_bytes(data[: len(data) // 3])
    os.utime(blue, ns=(blue.stat().st_mtime_ns + 5_000_000_000,) * 2)

    store, report, enc = _index(photos, db)
    assert enc.images_embedded == 1 and report.skipped == 1
    rows = _snapshot(store)
    assert str(broken) in rows and str(blue) not in rows
    skipped = _skipped(store)
    assert set(skipped) == {str(blue)}
    assert re.search(r"truncated|corrupt|damaged", skipped[str(blue)])
    assert "object at 0x" not in skipped[str(blue)]
    hits = Searcher(store, ToyEncoder()).search(["blue"], k=100)
    assert str(blue) not in {h.path for h in hits} and len(hits) == 7
    _assert_same_rows(rows, _fresh(photos, tmp_path))

    # and once deleted, the bad file leaves the skipped list too
    blue.unlink()
    store, report, _ = _index(photos, db)
    assert _skipped(store) == {} and report.removed == 0


def test_retry_failed(photos, tmp_path, capsys):
    """Files refused in an earlier run are looked at again only with --retry-failed."""
    db = tmp_path / "db"
    truncated = photos / "truncated.png"
    data = (photos / "white.png").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    store, report, _ = _index(photos, db, max_pixels=1100)  # 50x20 = 1000 ok, 40x30 too big
    rows, skipped = _snapshot(store), _skipped(store)
    assert set(rows) == {str(photos / "changing.png")}
    assert len(skipped) == 7 and all("refused" in r for p, r in skipped.items()
                                     if not p.endswith("truncated.png"))

    def cli_index(*extra: str) -> dict:
        capsys.readouterr()
        # no --model: the toy encoder the index recorded is rebuilt from its spec
        assert loupe_main(["index", str(photos), "--db", str(db), "--workers", "0", "--quiet",
                           "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    report = cli_index()  # same files, no retry: nothing is looked at
    assert report["to_process"] == 0 and report["embedded"] == 0
    assert len(_skipped(Store(str(db)))) == 7

    report = cli_index("--retry-failed")
    assert report["to_process"] == 7 and report["embedded"] == 6
    store = Store(str(db))
    assert set(_skipped(store)) == {str(truncated)}
    assert len(_snapshot(store)) == 7
    _assert_same_rows(_snapshot(store), _fresh(photos, tmp_path))

    report = cli_index("--retry-failed")  # still broken: looked at, still listed
    assert report["to_process"] == 1 and report["skipped"] == 1 and report["embedded"] == 0
    assert set(_skipped(Store(str(db)))) == {str(truncated)}
