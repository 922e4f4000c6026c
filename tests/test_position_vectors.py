"""Whole vectors of an index of codes, in position order in segment files beside it (read
instead of the store to re-score candidates), and the store's id index for when they
are missing."""

from __future__ import annotations

import os

import numpy as np
from test_ann_plan import SPEC, clustered, item_rows, top_ids

from loupe.search.ann import load_index, plan_index
from loupe.search.ann import position_vectors as pv
from loupe.search.ann.plan import tuning_queries
from loupe.search.store import Store


def _vector_files(store, col) -> dict[str, int]:
    d = os.path.join(store.dir, "faiss")
    return {n: os.path.getsize(os.path.join(d, n)) for n in sorted(os.listdir(d))
            if n.startswith(col) and ".vec" in n}


def test_pq_rescoring_reads_vector_files_beside_the_index(tmp_path):
    """A PQ index keeps its whole vectors in position order in segment files beside it:
    re-scoring reads them, not the store. A refresh adds a segment, a rebuild replaces
    them, and a missing file means reading from the store again."""
    plan = plan_index(3_000, 16, 100_000, flat_limit=1_000)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = clustered(3_000, 16)
    store.upsert_items(item_rows(col, vecs, 0, 1.0))
    first = load_index(store, col, plan=plan)
    assert first.info.rerank and first.local is not None
    assert list(_vector_files(store, col).values()) == [3_000 * 16 * 4]
    np.testing.assert_array_equal(first.vectors([0, 2_999, 7]), vecs[[0, 2_999, 7]])

    def no_store(ids):
        raise AssertionError("read from the store")

    q = tuning_queries(vecs, count=20, seed=4)
    loaded = load_index(Store(store.dir), col, plan=plan)
    assert loaded.local is not None and loaded.local.saved == 3_000  # memory-mapped
    want = loaded.search(q, 10)
    loaded.fetch = no_store
    got = loaded.search(q, 10)
    np.testing.assert_array_equal(got[1], want[1])
    from_store = store.vectors_of([str(loaded.catalog.ids[p]) for p in want[1][0]], col)
    np.testing.assert_array_equal(loaded.vectors(want[1][0]), from_store)

    new = clustered(30, 16, seed=8)
    store.upsert_items(item_rows(col, new, 10_000, 2.0))
    second = load_index(store, col, previous=loaded, plan=plan)
    files = _vector_files(store, col)
    assert len(files) == 2 and sorted(files.values()) == [30 * 16 * 4, 3_000 * 16 * 4]
    third = load_index(Store(store.dir), col, plan=plan)
    third.fetch = no_store
    assert third.local is not None and len(third.local.segments) == 2
    np.testing.assert_array_equal(third.vectors(np.arange(3_000, 3_030)), new)
    assert top_ids(third, new[4])[0][0] == f"{10_004:024x}"

    store.items().delete("path < '/a/001000.jpg'")  # a rebuild
    fourth = load_index(store, col, previous=second, plan=plan)
    assert fourth.info.count == 2_030 and list(_vector_files(store, col).values()) == [
        2_030 * 16 * 4]

    for name in _vector_files(store, col):  # lost: searches read the store again
        os.remove(os.path.join(store.dir, "faiss", name))
    fifth = load_index(Store(store.dir), col, plan=plan)
    assert fifth.local is None and fifth.rescores
    assert top_ids(fifth, new[4])[0][0] == f"{10_004:024x}"


def test_position_vectors_merge_past_the_segment_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(pv, "MAX_SEGMENTS", 3)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(10, 4)).astype(np.float32)
    v = pv.PositionVectors(4, pending=rows[:4])
    for i, stop in enumerate((6, 7, 9, 10)):
        v = v.save(str(tmp_path), f"c.v{i}")
        v = v.appended(rows[len(v):stop])
    v = v.save(str(tmp_path), "c.v9")
    assert len(v.segments) <= 3 and len(v) == 10
    np.testing.assert_array_equal(v.take(np.arange(10)[::-1]), rows[::-1])
    again = pv.PositionVectors.open(str(tmp_path), v.segments, 4)
    np.testing.assert_array_equal(again.take([9, 0, 5]), rows[[9, 0, 5]])
    assert pv.PositionVectors.open(str(tmp_path), [*v.segments, ("gone", 1)], 4) is None


def test_item_ids_get_a_scalar_index_once_the_table_is_large(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(item_rows(col, clustered(300, 16), 0, 1.0))
    store.optimize()
    assert store.items().list_indices() == []  # small: a scan is quick
    assert store.index_ids(min_rows=200) and not store.index_ids(min_rows=200)
    assert [i.columns for i in store.items().list_indices()] == [["id"]]
    store.upsert_items(item_rows(col, clustered(5, 16, seed=2), 1_000, 2.0))
    store.optimize()  # new rows join the index
    got = store.vectors_of([f"{1_002:024x}", f"{7:024x}", "missing"], col)
    assert np.isnan(got[2]).all() and not np.isnan(got[:2]).any()


def test_exact_index_without_its_vector_files_is_rebuilt(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = clustered(500, 16)
    store.upsert_items(item_rows(col, vecs, 0, 1.0))
    load_index(store, col)
    for name in _vector_files(store, col):
        os.remove(os.path.join(store.dir, "faiss", name))
    vidx = load_index(Store(store.dir), col)  # rebuilt from the store
    assert vidx.codes and vidx.local is not None and _vector_files(store, col)
    assert top_ids(vidx, vecs[7])[0][0] == f"{7:024x}"


def test_a_reader_appends_to_segments_a_writer_has_removed(tmp_path):
    """A long-lived searcher refreshes its index after a writer merged the segment files
    and removed the old ones (watch mode writes every few seconds): the reader keeps the
    files it has mapped instead of opening them again by name."""
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 4), np.float32), rng.random((3, 4), np.float32)
    reader = pv.PositionVectors(4).appended(a).save(str(tmp_path), "col.v1")
    for name in os.listdir(tmp_path):  # a writer's merge dropped the old version's files
        os.remove(tmp_path / name)
    later = reader.appended(b)
    assert np.array_equal(later.take(np.arange(8)), np.concatenate([a, b]))
