"""The store contract, run against an index whose tables live in its folder and one
whose tables live at a separate URI (``--tables-uri``; object storage in production)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest
from helpers.toys import ToyEncoder

from loupe.indexer import ItemKind, MediaKind
from loupe.search.store import FORMAT_VERSION, IndexMeta, Store, item_id, items_schema


@pytest.fixture(params=["folder", "tables-uri"])
def store(request, tmp_path) -> Store:
    uri = str(tmp_path / "elsewhere" / "tables") if request.param == "tables-uri" else None
    s = Store(str(tmp_path / "db"), create=True, tables_uri=uri)
    s.register_encoder(ToyEncoder().spec)
    return s


def _row(path: str, vec=(1.0, 0.0, 0.0, 0.0), fingerprint: str = "fp", at: float = 1.0,
         kind: str = ItemKind.PHOTO, ts: float | None = None) -> dict:
    return {"id": item_id(path, kind, ts), "path": path, "kind": kind, "size": 10,
            "mtime_ns": 5, "fingerprint": fingerprint, "width": 8, "height": 8,
            "timestamp": ts, "indexed_at": at, "end": None, "shot": None, "silent": None,
            "vec": list(vec)}


def _rows(store: Store, *args, **kw) -> dict:
    r = _row(*args, **kw)
    r[next(iter(store.meta.encoders))] = r.pop("vec")
    return r


def test_the_tables_live_where_the_meta_says(store, tmp_path):
    meta = json.loads((tmp_path / "db" / "meta.json").read_text())
    assert meta["format"] == FORMAT_VERSION
    assert store.tables_uri == meta.get("tables_uri", store.dir)
    store.upsert_items([_rows(store, "/a.jpg")])
    assert os.path.isdir(os.path.join(store.tables_uri, "items.lance"))


def test_an_upsert_is_idempotent_by_key(store):
    rows = [_rows(store, "/a.jpg"), _rows(store, "/b.jpg", fingerprint="fb")]
    store.upsert_items(rows)
    store.upsert_items(rows)
    assert store.counts() == {ItemKind.PHOTO: 2}
    store.upsert_files([{"path": "/a.jpg", "size": 10, "mtime_ns": 5, "fingerprint": "fp",
                         "media": MediaKind.IMAGE, "rows": 1, "duration": None,
                         "problem": None, "indexed_at": 1.0, "sound": False}] * 2)
    assert [f["path"] for f in store.file_rows()] == ["/a.jpg"]


def test_the_version_only_moves_forward(store):
    seen = [store.version()]
    for i in range(3):
        store.upsert_items([_rows(store, f"/{i}.jpg")])
        seen.append(store.version())
    store.delete_paths(["/0.jpg"])
    seen.append(store.version())
    assert seen == sorted(seen) and len(set(seen[1:])) == len(seen) - 1


def test_a_read_is_one_snapshot_while_another_writer_commits(store):
    store.upsert_items([_rows(store, "/a.jpg")])
    column = next(iter(store.meta.encoders))
    version, table = store.read_vectors(column)
    other = Store(store.dir)  # another process, as far as the tables can tell
    other.upsert_items([_rows(other, "/b.jpg")])
    assert table.num_rows == 1 and store.version() > version
    assert store.read_vectors(column)[1].num_rows == 2


def test_rows_by_fingerprint_reads_the_pinned_version(store):
    column = next(iter(store.meta.encoders))
    store.upsert_items([_rows(store, "/a.jpg", vec=(0, 1, 0, 0), fingerprint="old")])
    pinned = store.version()
    store.upsert_items([_rows(store, "/a.jpg", vec=(0, 0, 1, 0), fingerprint="new")])
    then = store.rows_by_fingerprint(["old"], [column], version=pinned)
    assert [r["path"] for r in then["old"]] == ["/a.jpg"]
    np.testing.assert_allclose(then["old"][0][column], [0, 1, 0, 0])
    assert store.rows_by_fingerprint(["old"], [column]) == {}
    assert store.rows_by_fingerprint(["new"], [column], paths=["/elsewhere.jpg"]) == {}


def test_deleting_paths_and_older_rows(store):
    store.upsert_items([_rows(store, "/v.mp4", kind=ItemKind.FRAME, ts=float(t), at=1.0)
                        for t in range(3)])
    store.upsert_items([_rows(store, "/v.mp4", kind=ItemKind.FRAME, ts=0.0, at=2.0),
                        _rows(store, "/p.jpg", at=2.0)])
    store.delete_older_rows(["/v.mp4"], run=2.0)  # a re-indexed, shorter video
    assert store.counts() == {ItemKind.FRAME: 1, ItemKind.PHOTO: 1}
    store.delete_paths(["/p.jpg", "/nothing.jpg"])
    assert store.counts() == {ItemKind.FRAME: 1}


def test_a_half_made_table_is_made_anew(store):
    os.makedirs(os.path.join(store.tables_uri, "files.lance"))  # killed while creating
    again = Store(store.dir)
    assert again.files(create=False) is None
    assert again.files() is not None and again.file_rows() == []


def test_format_1_becomes_format_2(tmp_path):
    db = tmp_path / "old"
    IndexMeta.create(str(db))
    meta = json.loads((db / "meta.json").read_text())
    spec = ToyEncoder().spec
    meta.update(format=1, encoders={spec.column: spec.to_dict()})
    del meta["encoder_order"]
    (db / "meta.json").write_text(json.dumps(meta))
    import lancedb

    old_fields = [f for f in items_schema({spec.column: spec.dim})
                  if f.name not in ("end", "shot", "silent")]
    rows = [{"id": "x", "path": "/a.jpg", "kind": "photo", "size": 1, "mtime_ns": 2,
             "fingerprint": "f", "width": 8, "height": 8, "timestamp": None,
             "indexed_at": 1.0, spec.column: [1.0, 0, 0, 0]}]
    lancedb.connect(str(db)).create_table("items", pa.Table.from_pylist(
        rows, pa.schema(old_fields)))
    store = Store(str(db))
    assert store.meta.format == 2 and store.meta.encoders == {spec.column: spec}
    assert {"end", "shot", "silent"} <= set(store.items().schema.names)
    assert [f["media"] for f in store.file_rows()] == [MediaKind.IMAGE]
