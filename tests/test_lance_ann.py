"""LanceDB's own vector index as the second index backend (search/ann/lance_index.py):
recall against exact search on held-out queries, filters through LanceDB's prefilter,
new rows found before and after the index is brought up to date, and which backend
the plan picks. The index contract (tests/contracts/test_index_contract.py) holds it to
everything the FAISS indexes promise; this file covers what only it does.

One store of ``N`` 32-d vectors (clustered, low intrinsic dimension as image embeddings
are) is built once for the module: LanceDB trains IVF_PQ on 2 cores in a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ann_plan import clustered

from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.search.ann import lance_index, load_index
from loupe.search.ann.catalog import filter_sql
from loupe.search.ann.index import VectorIndex
from loupe.search.ann.lance_index import LanceVectorIndex, unindexed
from loupe.search.ann.lance_plan import (
    LANCE_FLAT,
    LANCE_PQ,
    choose_backend,
    partitions_for,
    plan_lance,
)
from loupe.search.ann.persist import backend_for
from loupe.search.ann.plan import RECALL_TARGET, IndexPlan, tuning_queries
from loupe.search.store import Store

N, DIM = 40_000, 32
GIB = 1 << 30
SPEC = EncoderSpec(backend="bench", model="synthetic", weights="none", weights_id="s64",
                   dim=DIM, preprocess=ImagePreprocess(size=(8, 8)))
T0 = 1_600_000_000
PLAN = plan_lance(N, DIM, index_min=1)  # an index at this size (the default starts at 50,000)


def rows(col: str, vecs: np.ndarray, start: int = 0) -> list[dict]:
    """Photos and frames in folders /m/a, /m/ab (a look-alike prefix), /m/a/sub, /m/z,
    modified a second apart, every 9th with no known time."""
    return [{"id": f"{i:024x}", "path": f"/m/{('a', 'ab', 'a/sub', 'z')[i % 4]}/{i}.jpg",
             "kind": ("photo", "frame")[i % 2], "indexed_at": 1.0,
             "mtime_ns": None if i % 9 == 0 else (T0 + i) * 10**9, col: v.tolist()}
            for i, v in enumerate(vecs, start)]


def exact_top(vecs: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None):
    s = q @ vecs.T
    if keep is not None:
        s[:, ~keep] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :k], s


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / truth.shape[1]
                          for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    store = Store(str(tmp_path_factory.mktemp("lance") / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = clustered(N, DIM, k=200, seed=3)
    store.upsert_items(rows(col, vecs))
    vidx = load_index(store, col, plan=PLAN)
    return store, col, vecs, vidx


def test_recall_at_10_on_held_out_queries(built):
    store, col, vecs, vidx = built
    assert isinstance(vidx, LanceVectorIndex) and vidx.info.kind == LANCE_PQ
    assert vidx.trained == partitions_for(N) == 10  # one partition per 4,096 rows
    assert unindexed(vidx.pinned) == (N, 0)
    assert vidx.info.recall >= RECALL_TARGET and vidx.info.nprobe >= 1
    q = tuning_queries(vecs, count=200, seed=42)  # not the tuning queries
    truth, s = exact_top(vecs, q, 10)
    scores, pos = vidx.search(q, 10)
    ids = np.asarray([int(i, 16) for i in vidx.catalog.ids])  # position -> row number
    found = np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)
    assert recall(found, truth) >= RECALL_TARGET
    # scores are exact inner products (re-scored with the whole vectors), best first
    np.testing.assert_allclose(scores, np.take_along_axis(s, found, axis=1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def partitions_of(vidx) -> int:
    return int(vidx.pinned.index()["indices"][0]["num_partitions"])


def _found(vidx, pos):
    ids = np.asarray([int(i, 16) for i in vidx.catalog.ids])
    return np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)


def test_the_catalog_gives_the_sql_of_its_masks(built):
    store, col, vecs, vidx = built
    cat = vidx.catalog
    ds = vidx.pinned.ds
    for kind, folder, since, until in (("frame", None, None, None), (None, "/m/a", None, None),
                                       ("photo", "/m/a/", T0 + 1_000, T0 + 30_000.5),
                                       (None, None, T0 + 0.25, None)):
        mask = cat.mask(kind, folder, since, until)
        sql = cat.where_of(mask)
        assert sql == filter_sql(kind, folder.rstrip("/") if folder else None, since, until)
        got = set(ds.to_table(columns=["id"], filter=sql)["id"].to_pylist())
        assert got == set(cat.ids[mask].tolist()), sql
    combined = cat.mask(kind="frame") & cat.mask(folder="/m/z")  # the engine's own mask
    assert cat.where_of(combined) is None and cat.where_of(None) is None


def test_filters_go_through_the_prefilter_and_keep_only_what_the_mask_keeps(built,
                                                                             monkeypatch):
    store, col, vecs, vidx = built
    cat = vidx.catalog
    q = tuning_queries(vecs, count=50, seed=7)
    by_position = vecs[_found(vidx, np.arange(N)[None])[0]]
    rng = np.random.default_rng(0)
    sql_mask = cat.mask(kind="photo", folder="/m/a/sub")  # SQL: 1 in 4 rows
    seen = []
    real = vidx.pinned.nearest

    def spy(*a, **kw):
        seen.append(kw.get("where"))
        return real(*a, **kw)

    monkeypatch.setattr(vidx.pinned, "nearest", spy)
    id_mask = np.zeros(N, bool)  # no SQL, 10,000 rows: `_rowid IN (...)`
    id_mask[rng.choice(N, 10_000, replace=False)] = True
    wide = rng.random(N) < 0.7  # no SQL, 28,000 rows: searched unfiltered, masked after
    tiny = np.zeros(N, bool)  # no SQL, 500 rows: scored exactly
    tiny[rng.choice(N, 500, replace=False)] = True
    for mask, how in ((sql_mask, "kind = 'photo'"), (id_mask, "_rowid IN ("), (wide, None),
                      (tiny, "exact")):
        seen.clear()
        scores, pos = vidx.search(q, 10, mask)
        assert mask[pos[pos >= 0]].all() and (pos >= 0).all()
        truth, _ = exact_top(by_position, q, 10, mask)
        r = recall(pos, truth)
        if how == "exact":
            assert not seen and r == 1.0
        else:
            assert seen and (seen[0] or "").startswith(how or "") and (how or not seen[0])
            assert r >= RECALL_TARGET, (how, r)
    # a filter keeping 3 rows, with exact scoring turned off: the prefilter still finds them
    monkeypatch.setattr(vidx, "limit", 0)
    three = np.zeros(N, bool)
    three[[5, 20_001, 39_998]] = True
    pos = vidx.search(q, 10, three)[1]
    assert (np.sort(pos[:, :3], axis=1) == [5, 20_001, 39_998]).all() and (pos[:, 3:] == -1).all()


def test_new_rows_are_found_before_and_after_the_index_takes_them(built):
    store, col, vecs, vidx = built
    extra = clustered(4_000, DIM, k=200, seed=9)  # 500, then 3,500 more
    store.upsert_items(rows(col, extra[:500], start=N))  # few: searched flat, unindexed
    fresh = load_index(store, col, previous=vidx, plan=PLAN)
    assert fresh is not vidx and fresh.trained == vidx.trained  # refreshed, not retrained
    assert unindexed(fresh.pinned) == (N, 500) and fresh.info.version == store.version()
    got = fresh.search(extra[:500][::50], 1)[1][:, 0]
    assert fresh.catalog.ids[got].tolist() == [f"{N + i:024x}" for i in range(0, 500, 50)]
    # past the bound (5% of the indexed rows): brought into the index in place
    store.upsert_items(rows(col, extra[500:], start=N + 500))
    later = load_index(store, col, previous=fresh, plan=PLAN)
    assert later.info.kind == LANCE_PQ and unindexed(later.pinned) == (N + 4_000, 0)
    assert later.trained == partitions_of(later)  # tuned for what optimize left
    assert later.info.version == store.version() and later.info.count == N + 4_000
    got = later.search(extra[::400], 1)[1][:, 0]
    assert later.catalog.ids[got].tolist() == [f"{N + i:024x}" for i in range(0, 4_000, 400)]
    q = tuning_queries(np.vstack([vecs, extra]), count=100, seed=5)
    truth, _ = exact_top(np.vstack([vecs, extra]), q, 10)
    assert recall(_found(later, later.search(q, 10)[1]), truth) >= RECALL_TARGET
    # a new process reads the saved catalog and tuning, and the same index
    again = load_index(Store(store.dir), col, plan=PLAN)
    assert isinstance(again, LanceVectorIndex) and again.info == later.info
    np.testing.assert_array_equal(again.search(q, 10)[1], later.search(q, 10)[1])


def test_the_plan_picks_the_backend(built, monkeypatch):
    monkeypatch.delenv("LOUPE_ANN", raising=False)
    assert choose_backend("/data/db", 1_000_000, 512, 12 * GIB)[0] == "faiss"
    assert choose_backend("s3://bucket/loupe", 1_000, 512, 12 * GIB)[0] == "lance"
    assert choose_backend("file:///data/db", 1_000, 512, 12 * GIB)[0] == "faiss"
    over = choose_backend("/data/db", 10_000_000, 512, 12 * GIB)  # 19 GiB of float32
    assert over[0] == "lance" and "memory budget" in over[1]
    monkeypatch.setenv("LOUPE_ANN", "faiss")
    assert choose_backend("s3://bucket/loupe", 10**9, 512)[0] == "faiss"
    assert choose_backend("/d", 10, 8, override="lance")[0] == "lance"  # --ann wins
    monkeypatch.setenv("LOUPE_ANN", "annoy")
    with pytest.raises(LoupeError, match="LOUPE_ANN"):
        choose_backend("/d", 10, 8)
    assert plan_lance(10_000, 512).factory == LANCE_FLAT  # below the index: an exact scan
    p = plan_lance(10_000_000, 512)
    assert (p.factory, p.nlist, p.pq_bytes, p.backend) == (LANCE_PQ, 2441, 64, "lance")
    store, col = built[0], built[1]
    monkeypatch.setenv("LOUPE_ANN", "auto")
    assert backend_for(store, col)[0] == "faiss"  # a local folder, within memory
    monkeypatch.setenv("LOUPE_ANN", "lance")
    assert isinstance(load_index(Store(store.dir), col), LanceVectorIndex)
    monkeypatch.setenv("LOUPE_ANN", "faiss")
    assert isinstance(load_index(Store(store.dir), col), VectorIndex)


def test_tables_on_object_storage_get_the_lance_index_and_replicas_share_it(tmp_path,
                                                                          monkeypatch):
    """Tables in a local S3 server (moto): the plan picks LanceDB's index, trained once in
    the bucket, its tuning recorded in the table's config; a replica with an empty folder
    of its own reads that index and that tuning (no training, no tuning, nothing
    written) and answers as the first process does."""
    from helpers.s3 import s3_server

    with s3_server(tmp_path) as s3:
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("LOUPE_ANN", raising=False)
        uri = s3.uri("idx")
        store = Store(str(tmp_path / "indexer"), create=True, tables_uri=uri)
        col = store.register_encoder(SPEC)
        vecs = clustered(1_500, DIM, k=30, seed=4)
        store.upsert_items(rows(col, vecs))
        assert backend_for(store, col)[0] == "lance"
        plan = IndexPlan(LANCE_PQ, nlist=4, pq_bytes=8, backend="lance")
        first = load_index(store, col, plan=plan)
        assert isinstance(first, LanceVectorIndex) and first.trained > 1
        trained_at = store.version()
        replica = Store(str(tmp_path / "replica"), tables_uri=uri)

        def no_tuning(*a, **kw):
            raise AssertionError("the replica tuned again: the table's config says how")

        monkeypatch.setattr(lance_index, "tune_index", no_tuning)
        other = load_index(replica, col)  # auto: object storage, the table's own index
        assert isinstance(other, LanceVectorIndex) and other.info.kind == LANCE_PQ
        assert replica.version() == trained_at and other.trained == first.trained
        q = tuning_queries(vecs, count=20, seed=8)
        mask = first.catalog.mask(kind="photo")
        for a, b in ((first.search(q, 10), other.search(q, 10)),
                     (first.search(q, 10, mask), other.search(q, 10, other.catalog.mask(
                         kind="photo")))):
            ids_a = first.catalog.ids[a[1]]
            ids_b = other.catalog.ids[b[1]]
            assert (ids_a == ids_b).mean() > 0.9  # tuned apart: near ties may differ
            np.testing.assert_allclose(np.sort(a[0])[:, -3:], np.sort(b[0])[:, -3:],
                                       atol=1e-5)
