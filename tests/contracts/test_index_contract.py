"""The index backend contract: every kind of index, injected as an ``IndexPlan``, answers
searches, filters, saves, loads and refreshes the same way (REDESIGN.md §4.6, item 2).

Kinds: the legacy ``Flat`` index, the exact fp16 codes (``SQfp16``), and inverted files of
whole vectors, of fp16 codes and of OPQ+PQ codes (those two re-scored with whole
vectors); the GPU copy, where faiss-gpu sees a GPU; and the second backend, LanceDB's
index in the items table (search/ann/lance_index.py): its column scanned without an
index (exact), IVF_PQ and IVF_HNSW_SQ re-scored with whole vectors (``refine_factor``).
The data holds a crowd of vectors within fp16's rounding error of each other, so scores
off by that much would rank it wrongly; "exact" below is up to ties (faiss's
``check_ref_knn_with_draws``): the items scoring above the k-th best are all there, the
rest score as the k-th does.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from test_ann_plan import SPEC, clustered

from loupe.search.ann import IndexPlan, RowCatalog, load_index
from loupe.search.ann.gpu import gpu_count
from loupe.search.ann.index import build_vector_index, store_fetcher
from loupe.search.ann.lance_index import build_lance_index
from loupe.search.ann.lance_plan import LANCE, LANCE_FLAT, LANCE_HNSW_SQ, LANCE_PQ
from loupe.search.ann.plan import EXACT_KIND, RECALL_TARGET, tuning_queries
from loupe.search.store import Store

N, DIM, CROWD = 2_000, 16, 150
PLANS = {
    "flat": IndexPlan("Flat", reason="legacy: whole vectors, exact"),
    "sqfp16": IndexPlan(EXACT_KIND, reason="exact: fp16 codes, re-scored"),
    "ivf-flat": IndexPlan("IVF32,Flat", nlist=32, train_size=N),
    "ivf-sqfp16": IndexPlan("IVF32,SQfp16", nlist=32, train_size=N),
    "opq-ivf-pq": IndexPlan("OPQ4_16,IVF32,PQ4", nlist=32, pq_bytes=4, train_size=N),
    "lance-flat": IndexPlan(LANCE_FLAT, backend=LANCE, reason="LanceDB scan, exact"),
    "lance-ivf-pq": IndexPlan(LANCE_PQ, nlist=32, pq_bytes=4, backend=LANCE),
    "lance-ivf-hnsw-sq": IndexPlan(LANCE_HNSW_SQ, nlist=16, backend=LANCE),
}
EXACT = {"flat", "sqfp16", "lance-flat"}
MTIME0 = 1_600_000_000  # seconds: files' modification times are MTIME0 + row number


def dataset(seed: int = 0) -> np.ndarray:
    """Clustered unit vectors, then a crowd at norm 3 within fp16's error of one centre."""
    rng = np.random.default_rng(seed)
    base = clustered(N - CROWD, DIM, seed=seed)
    crowd = 3.0 * (base[0] + 2e-5 * rng.normal(size=(CROWD, DIM)).astype(np.float32))
    return np.vstack([base, crowd]).astype(np.float32)


def rows_of(col: str, vecs: np.ndarray, start: int = 0, at: float = 1.0) -> list[dict]:
    """Rows numbered from ``start``: photos, video frames and sound windows in folders
    /m/x, /m/xy, /m/x/sub and /m/z (prefix look-alikes), some without a known date."""
    out = []
    for i, v in enumerate(vecs, start):
        kind = ("photo", "frame", "audio")[i % 3]
        folder = ("x", "xy", "x/sub", "z")[i % 4]
        name = f"p{i:06d}.jpg" if kind == "photo" else f"v{i // 40:04d}.mp4"
        ts = None if kind == "photo" else float((i // 12) % 50)
        out.append({"id": f"{i:024x}", "path": f"/m/{folder}/{name}", "kind": kind,
                    "timestamp": ts, "end": None if ts is None else ts + 2.0,
                    "mtime_ns": None if i % 7 == 0 else (MTIME0 + i) * 10**9,
                    "indexed_at": at, col: v.tolist()})
    return out


def queries(vecs: np.ndarray, count: int = 40, seed: int = 11) -> np.ndarray:
    """Held-out queries near the data, and the crowd's centre at three norms."""
    centre = vecs[-1] / np.linalg.norm(vecs[-1])
    held = tuning_queries(vecs[:N - CROWD], count=count, seed=seed)
    return np.vstack([held, centre, 2.5 * centre, -centre]).astype(np.float32)


def truth(vidx, by_id: dict[str, np.ndarray], q: np.ndarray) -> np.ndarray:
    """Float64 scores (positions x queries) of each live position's stored vector."""
    cat = vidx.catalog
    live = cat.live()
    vecs = np.asarray([by_id[i] if ok else np.zeros(q.shape[1]) for i, ok
                       in zip(cat.ids.tolist(), live, strict=True)], np.float64)
    s = vecs @ q.astype(np.float64).T
    s[~live] = -np.inf
    return s


def tolerance(q: np.ndarray) -> np.ndarray:
    """float32 scoring error per query, vectors of norm up to 3."""
    return 2e-5 * 3.0 * np.maximum(np.linalg.norm(q, axis=1), 1e-3)


def assert_exact(s: np.ndarray, q: np.ndarray, scores: np.ndarray, pos: np.ndarray, k: int,
                 keep: np.ndarray | None = None) -> None:
    """Per query: the exact top k of the positions ``keep`` passes, up to ties, with
    their exact scores, best first; -1 after when fewer pass."""
    s = s if keep is None else np.where(keep[:, None], s, -np.inf)
    tol = tolerance(q)
    for j in range(len(q)):
        ref = np.sort(s[:, j])[::-1]
        kk = min(k, int(np.isfinite(ref).sum()))
        got = pos[j][:kk]
        assert (got >= 0).all() and len(set(got.tolist())) == kk and (pos[j][kk:] == -1).all()
        if not kk:
            continue
        kth = ref[kk - 1]
        assert s[got, j].min() >= kth - tol[j], (j, kth - s[got, j].min())
        assert set(np.flatnonzero(s[:, j] > kth + tol[j]).tolist()) <= set(got.tolist())
        np.testing.assert_allclose(scores[j, :kk], s[got, j], rtol=1e-4, atol=tol[j])


def recall(s: np.ndarray, q: np.ndarray, pos: np.ndarray, k: int = 10) -> float:
    """Mean share of the k returned that score at least the exact k-th best (tie-aware
    recall@k)."""
    tol = tolerance(q)
    shares = []
    for j in range(len(q)):
        kth = np.sort(s[:, j])[::-1][k - 1]
        got = pos[j][:k][pos[j][:k] >= 0]
        shares.append(float(np.sum(s[got, j] >= kth - tol[j])) / k)
    return float(np.mean(shares))


def assert_search_contract(kind: str, vidx, s: np.ndarray, q: np.ndarray) -> None:
    """Top 10 exact (exact kinds) or at the recall target (the others), scored with the
    whole vectors, best first, never a dead slot."""
    scores, pos = vidx.search(q, 10)
    assert scores.shape == pos.shape == (len(q), 10) and scores.dtype == np.float32
    assert np.isfinite(s[pos[pos >= 0], np.nonzero(pos >= 0)[0]]).all()  # live positions
    if kind in EXACT:
        assert_exact(s, q, scores, pos, 10)
    else:
        assert recall(s, q, pos) >= RECALL_TARGET
        ok = pos >= 0
        np.testing.assert_allclose(scores[ok], s[pos[ok], np.nonzero(ok)[0]], rtol=1e-4,
                                   atol=1e-4)
    for row_scores, row_pos in zip(scores, pos, strict=True):  # best first
        assert (np.diff(row_scores[row_pos >= 0]) <= 1e-6).all()


def same_hits(a, b, q: np.ndarray, k: int, mask_a=None, mask_b=None) -> None:
    """Two indexes of the same rows (positions may differ) give the same ids, up to ties,
    with the same scores."""
    sa, pa = a.search(q, k, mask_a)
    sb, pb = b.search(q, k, mask_b)
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-4)
    tol = tolerance(q)
    for j in range(len(q)):
        ids_a = {str(a.catalog.ids[p]) for p, x in zip(pa[j], sa[j], strict=True)
                 if p >= 0 and x > sa[j][-1] + tol[j]}
        ids_b = {str(b.catalog.ids[p]) for p, x in zip(pb[j], sb[j], strict=True)
                 if p >= 0 and x > sb[j][-1] + tol[j]}
        assert ids_a == ids_b


def new_store(path: str) -> tuple[Store, str]:
    store = Store(path, create=True)
    return store, store.register_encoder(SPEC)


@pytest.fixture(scope="module", params=list(PLANS))
def fresh(request, tmp_path_factory):
    """An index of N rows, as planned, built and saved."""
    kind, plan = request.param, PLANS[request.param]
    store, col = new_store(str(tmp_path_factory.mktemp(kind) / "db"))
    vecs = dataset()
    store.upsert_items(rows_of(col, vecs))
    vidx = load_index(store, col, plan=plan)
    by_id = {f"{i:024x}": v for i, v in enumerate(vecs)}
    return SimpleNamespace(kind=kind, plan=plan, store=store, col=col, vecs=vecs,
                           by_id=by_id, vidx=vidx)


@pytest.fixture(scope="module", params=list(PLANS))
def changed(request, tmp_path_factory):
    """An index refreshed after 40 rows were deleted, 10 re-written and 60 added; and
    the index a rebuild from the same store version gives."""
    kind, plan = request.param, PLANS[request.param]
    store, col = new_store(str(tmp_path_factory.mktemp(kind) / "db"))
    vecs = dataset()
    store.upsert_items(rows_of(col, vecs))
    first = load_index(store, col, plan=plan)
    gone = [f"{i:024x}" for i in range(5, 5 + 4 * 40, 4)]
    store.items().delete("id IN (" + ", ".join(f"'{i}'" for i in gone) + ")")
    moved = -vecs[200:210]
    store.upsert_items(rows_of(col, moved, start=200, at=2.0))
    added = clustered(60, DIM, seed=5)
    store.upsert_items(rows_of(col, added, start=N, at=3.0))
    refreshed = load_index(store, col, previous=first, plan=plan)
    if plan.backend == LANCE:  # the catalog read whole, the table's index as it is
        rebuilt = build_lance_index(store, col, plan, retrain=False)
    else:
        version, table = store.read_vectors(col)
        rebuilt = build_vector_index(col, version, table, fetch=store_fetcher(store, col),
                                     plan=plan)
    by_id = {f"{i:024x}": v for i, v in enumerate(vecs)}
    by_id.update({f"{200 + i:024x}": v for i, v in enumerate(moved)})
    by_id.update({f"{N + i:024x}": v for i, v in enumerate(added)})
    for i in gone:
        del by_id[i]
    return SimpleNamespace(kind=kind, plan=plan, store=store, col=col, by_id=by_id,
                           refreshed=refreshed, rebuilt=rebuilt, gone=gone)


def test_search_is_exact_or_reaches_the_recall_target(fresh):
    vidx, q = fresh.vidx, queries(fresh.vecs)
    assert vidx.info.kind == fresh.plan.factory and len(vidx) == N
    assert vidx.info.recall >= RECALL_TARGET
    assert_search_contract(fresh.kind, vidx, truth(vidx, fresh.by_id, q), q)


def test_masked_positions_are_never_returned_and_short_answers_are_padded(fresh, monkeypatch):
    vidx, q = fresh.vidx, queries(fresh.vecs, count=10)
    s = truth(vidx, fresh.by_id, q)
    frames = vidx.catalog.mask(kind="frame")
    three = np.zeros(len(vidx), bool)
    three[[7, 700, 1_900]] = True
    # a small selection is scored exactly; with that off, an IVF index probes through it
    for limit in (None, 0):
        if limit is not None and hasattr(vidx.strategy, "limit"):
            monkeypatch.setattr(vidx.strategy, "limit", limit)
        scores, pos = vidx.search(q, 10, frames)
        assert frames[pos[pos >= 0]].all()
        if fresh.kind in EXACT or limit is None:
            assert_exact(s, q, scores, pos, 10, frames)
        scores, pos = vidx.search(q, 10, three)
        assert pos.shape == (len(q), 10) and (pos[:, 3:] == -1).all()
        assert (np.sort(pos[:, :3], axis=1) == [7, 700, 1_900]).all()
        assert_exact(s, q, scores, pos, 10, three)
        nothing = np.zeros(len(vidx), bool)
        assert (vidx.search(q, 5, nothing)[1] == -1).all()


def test_k_larger_than_the_index(fresh):
    vidx, q = fresh.vidx, queries(fresh.vecs, count=2)
    scores, pos = vidx.search(q, N + 50)
    assert pos.shape == (len(q), N)  # k is capped at the number of slots
    for row in pos:
        valid = row[row >= 0]
        assert len(set(valid.tolist())) == len(valid) and (row[len(valid):] == -1).all()
        if fresh.kind in EXACT:
            assert sorted(valid.tolist()) == list(range(N))


def test_vectors_are_the_whole_float32_vectors(fresh):
    vidx = fresh.vidx
    pos = np.array([0, 1_999, 7, N - CROWD, 7])
    got = vidx.vectors(pos)
    assert got.dtype == np.float32 and got.shape == (5, DIM)
    np.testing.assert_array_equal(got, fresh.vecs[pos])  # not codes: bit for bit
    assert vidx.vectors([]).shape == (0, DIM)


def test_save_then_load_gives_the_same_results(fresh):
    vidx, q = fresh.vidx, queries(fresh.vecs)
    loaded = load_index(Store(fresh.store.dir), fresh.col, plan=fresh.plan)
    assert loaded is not vidx and loaded.info == vidx.info
    assert loaded.catalog.ids.tolist() == vidx.catalog.ids.tolist()
    frames = vidx.catalog.mask(kind="frame")
    for mask in (None, frames):
        want, got = vidx.search(q, 10, mask), loaded.search(q, 10, mask)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_array_equal(loaded.vectors(np.arange(N)), fresh.vecs)


def test_dead_positions_are_never_returned(changed):
    vidx = changed.refreshed
    assert vidx.info.dead == 50 and vidx.info.count == N - 40 + 60  # refreshed, not rebuilt
    alive = vidx.catalog.alive
    dead = set(np.flatnonzero(~alive).tolist())
    q = queries(np.vstack(list(changed.by_id.values())), count=10)
    s = truth(vidx, changed.by_id, q)
    assert_search_contract(changed.kind, vidx, s, q)
    for mask in (None, vidx.catalog.mask(kind="photo"), vidx.catalog.mask(folder="/m/x")):
        pos = vidx.search(q, len(vidx), mask)[1]
        assert not dead & set(pos[pos >= 0].tolist())
    gone_ids = set(changed.gone) | {f"{i:024x}" for i in range(200, 210)}  # 10 re-written
    assert {str(vidx.catalog.ids[p]) for p in dead} == gone_ids


def test_refresh_gives_what_a_rebuild_gives(changed):
    a, b = changed.refreshed, changed.rebuilt
    live = a.catalog.live()

    def rows(vidx, keep):
        cat = vidx.catalog
        return sorted((str(cat.ids[p]), str(cat.paths[p]), str(cat.kinds[p]),
                       float(np.nan_to_num(cat.timestamps[p], nan=-1)))
                      for p in np.flatnonzero(keep))

    assert rows(a, live) == rows(b, b.catalog.live()) and b.info.count == a.info.count
    order = {i: p for p, i in enumerate(b.catalog.ids.tolist())}
    pos_a = np.flatnonzero(live)
    pos_b = [order[i] for i in a.catalog.ids[pos_a].tolist()]
    np.testing.assert_array_equal(a.vectors(pos_a), b.vectors(pos_b))
    q = queries(np.vstack(list(changed.by_id.values())), count=10)
    # a filter keeping few rows: exactly the same answers
    same_hits(a, b, q, 10, a.catalog.mask(kind="audio", folder="/m/z"),
              b.catalog.mask(kind="audio", folder="/m/z"))
    if changed.kind in EXACT:
        same_hits(a, b, q, 10)
    else:  # approximate: both as good (the rebuild trains anew)
        assert recall(truth(b, changed.by_id, q), q, b.search(q, 10)[1]) >= RECALL_TARGET
        assert recall(truth(a, changed.by_id, q), q, a.search(q, 10)[1]) >= RECALL_TARGET
    loaded = load_index(Store(changed.store.dir), changed.col, plan=changed.plan)
    assert loaded.info == a.info
    np.testing.assert_array_equal(loaded.search(q, 10)[1], a.search(q, 10)[1])


@pytest.mark.parametrize("kind", list(PLANS))
def test_a_loaded_index_refreshed_after_deletions_loads_again(kind, tmp_path):
    """Deletions only: the refreshed index is saved whole (an IVF index loaded with its
    lists memory-mapped once saved a reference to the older file it maps, then removed
    that file), so the next process loads and searches it."""
    store, col = new_store(str(tmp_path / "db"))
    vecs = dataset()[:1_000]
    store.upsert_items(rows_of(col, vecs))
    load_index(store, col, plan=PLANS[kind])
    loaded = load_index(Store(store.dir), col, plan=PLANS[kind])
    store.items().delete(f"id IN ('{3:024x}', '{77:024x}')")
    refreshed = load_index(store, col, previous=loaded, plan=PLANS[kind])
    assert refreshed.info.dead == 2
    again = load_index(Store(store.dir), col, plan=PLANS[kind])
    assert again.info == refreshed.info
    q = queries(vecs, count=10)
    np.testing.assert_array_equal(again.search(q, 10)[1], refreshed.search(q, 10)[1])


def _brute_mask(cat: RowCatalog, kind, folder, since, until) -> np.ndarray:
    f = os.path.abspath(folder) if folder else None
    alive = cat.live().tolist()
    return np.asarray([
        (kind is None or k == kind) and (f is None or path == f or path.startswith(f + "/"))
        and (since is None or (not np.isnan(mt) and mt >= since))
        and (until is None or (not np.isnan(mt) and mt < until)) and ok
        for k, path, mt, ok in zip(cat.kinds.tolist(), cat.paths.tolist(),
                                   cat.mtimes.tolist(), alive, strict=True)], bool)


def test_catalog_masks_equal_a_brute_force_filter(changed):
    for vidx in (changed.refreshed, changed.rebuilt):
        cat = vidx.catalog
        for kind in (None, "photo", "frame", "audio"):
            for folder in (None, "/m/x", "/m/x/", "/m", "/m/x/sub", "/elsewhere"):
                for since, until in ((None, None), (MTIME0 + 500, None),
                                     (None, MTIME0 + 1_500.5), (MTIME0 + 500, MTIME0 + 900)):
                    m = cat.mask(kind, folder, since, until)
                    want = _brute_mask(cat, kind, folder, since, until)
                    got = np.ones(len(cat), bool) if m is None else m
                    np.testing.assert_array_equal(got, want, (kind, folder, since, until))
                    assert cat.mask(kind, folder, since, until) is m  # cached
    assert changed.rebuilt.catalog.mask() is None  # no filter, nothing dead


def test_frames_near_lists_the_live_frames_of_the_same_video(changed):
    cat = changed.refreshed.catalog
    frame = next(p for p in np.flatnonzero(cat.live()) if cat.kinds[p] == "frame")
    item, t = str(cat.ids[frame]), float(cat.timestamps[frame])
    got = cat.frames_near(item, 3.0)
    live = cat.live()
    want = sorted((float(cat.timestamps[p]), str(cat.ids[p])) for p in range(len(cat))
                  if cat.kinds[p] == "frame" and cat.paths[p] == cat.paths[frame]
                  and live[p] and abs(cat.timestamps[p] - t) <= 3.0)
    assert [x[1] for x in got] == [w[0] for w in want] and {x[0] for x in got} == {
        w[1] for w in want} and (item, t) in got
    photo = next(p for p in range(len(cat)) if cat.kinds[p] == "photo")
    assert cat.frames_near(str(cat.ids[photo]), 3.0) == []
    assert cat.frames_near(changed.gone[0], 3.0) == [] and cat.frames_near("nope", 1.0) == []


@pytest.mark.parametrize("kind", list(PLANS))
def test_an_empty_index(kind, tmp_path):
    store, col = new_store(str(tmp_path / "db"))
    never = load_index(store, col, plan=PLANS[kind])  # no items table yet
    assert len(never) == 0 and never.search(np.ones((2, DIM), np.float32), 5)[1].size == 0
    store.upsert_items(rows_of(col, dataset()[:300]))
    store.items().delete("id IS NOT NULL")
    vidx = load_index(Store(store.dir), col, plan=PLANS[kind])  # rebuilt: no rows left
    assert len(vidx) == 0 and vidx.info.count == 0 and vidx.info.kind == EXACT_KIND
    scores, pos = vidx.search(np.ones((2, DIM), np.float32), 5)
    assert scores.shape == pos.shape == (2, 0)
    assert vidx.catalog.mask(kind="photo").shape == (0,) and vidx.vectors([]).shape == (0, DIM)
    again = load_index(Store(store.dir), col, plan=PLANS[kind])
    assert len(again) == 0 and again.info == vidx.info


@pytest.mark.skipif(gpu_count() == 0, reason="faiss-gpu sees no GPU")
def test_the_gpu_copy_gives_what_the_cpu_index_gives(changed, monkeypatch):
    vidx = changed.refreshed
    q = queries(np.vstack(list(changed.by_id.values())), count=20)
    got = vidx.search(q, 10)
    assert changed.kind == "opq-ivf-pq" or vidx.gpu_index() is not None
    monkeypatch.setenv("LOUPE_FAISS_GPU", "0")
    want = vidx.search(q, 10)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
    if changed.kind in EXACT:
        assert_exact(truth(vidx, changed.by_id, q), q, got[0], got[1], 10)
    dead = np.flatnonzero(~vidx.catalog.alive)
    assert not np.isin(got[1], dead).any()
