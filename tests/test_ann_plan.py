"""ANN by size: the planned index kind, IVF tuned to the recall target on held-out
queries, and indexes kept in step with the store without full rebuilds."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest

from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.search.ann import index as ann
from loupe.search.ann import plan as ann_plan
from loupe.search.ann.plan import (
    RECALL_TARGET,
    build,
    exact_top,
    lists_for,
    plan_index,
    recall_at,
    tune,
    tuning_queries,
)
from loupe.search.store import Store

GIB = 1 << 30


def test_plan_by_size_and_memory_is_deterministic():
    assert plan_index(10_000, 512, 8 * GIB).factory == "SQfp16"
    exact = plan_index(1_000_000, 512, 8 * GIB)
    assert exact.factory == "SQfp16" and exact.exact and exact.bytes_per_vector(512) == 1024
    assert plan_index(2_000_000, 512, 8 * GIB).factory == "IVF65536_HNSW32,Flat"
    assert plan_index(20_000_000, 512, 64 * GIB).factory == "IVF262144_HNSW32,Flat"
    half = plan_index(2_000_000, 512, 3 * GIB)  # 4.1 GB raw, 2.1 GB as fp16 codes
    assert half.factory == "IVF65536_HNSW32,SQfp16" and half.bytes_per_vector(512) == 1032
    assert half.rerank == ann_plan.RERANK_DEPTH and not half.exact
    tight = plan_index(20_000_000, 512, 4 * GIB)  # 41 GB raw: product-quantised
    assert tight.factory == "OPQ128_512,IVF262144_HNSW32,PQ128" and tight.pq_bytes == 128
    tighter = plan_index(20_000_000, 512, 1 * GIB)
    assert tighter.pq_bytes == 32 and tighter.bytes_per_vector(512) == 40
    billion = plan_index(1_600_000_000, 512, 64 * GIB)
    assert billion.nlist == 1_048_576 and billion.pq_bytes == 32
    with pytest.raises(LoupeError, match="do not fit"):
        plan_index(1_600_000_000, 512, 8 * GIB)
    # small sets over a forced limit: 4 * sqrt(n) lists, a power of two
    assert lists_for(20_000) == 512 and lists_for(3_000) == 256 and lists_for(10) == 16
    assert plan_index(20_000, 64, GIB, flat_limit=1_000).factory == "IVF512,Flat"
    assert plan_index(20_000, 64, GIB, flat_limit=1_000) == plan_index(20_000, 64, GIB,
                                                                        flat_limit=1_000)
    # exact search over more than the memory budget allows is not planned either
    assert not plan_index(500_000, 512, 100 << 20).exact
    assert plan_index(100_000, 512, 100 << 20).exact  # 98 MiB of fp16 codes fit


def _clustered(n: int, dim: int, k: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    v = centres[rng.integers(0, k, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivf_is_tuned_to_the_recall_target_on_held_out_queries():
    vecs = _clustered(20_000, 32)
    plan = plan_index(len(vecs), 32, GIB, flat_limit=1_000)
    index = build(plan, vecs, seed=0)
    nprobe, recall = tune(index, plan, vecs, seed=0)
    assert recall >= RECALL_TARGET and 1 <= nprobe < plan.nlist  # approximate, yet enough
    # queries the tuning never saw reach the target too
    fresh = tuning_queries(vecs, count=300, seed=7)
    assert recall_at(index, fresh, exact_top(vecs, fresh, 10)) >= RECALL_TARGET
    # and fewer probes would not have been enough (the tuning stopped at the first)
    if nprobe > 1:
        ann_plan.set_search_params(index, nprobe // 2)
        queries = tuning_queries(vecs, seed=0)
        assert recall_at(index, queries, exact_top(vecs, queries, 10)) < RECALL_TARGET


def test_a_seed_makes_the_build_repeatable():
    vecs = _clustered(5_000, 16)
    plan = plan_index(len(vecs), 16, GIB, flat_limit=100)
    q = tuning_queries(vecs, seed=3)
    a, b = build(plan, vecs, seed=1), build(plan, vecs, seed=1)
    for idx in (a, b):
        ann_plan.set_search_params(idx, 4)
    np.testing.assert_array_equal(a.search(q, 10)[1], b.search(q, 10)[1])


SPEC = EncoderSpec(backend="bench", model="synthetic", weights="none", weights_id="s1",
                   dim=16, preprocess=ImagePreprocess(size=(8, 8)))


def _rows(col: str, vecs: np.ndarray, start: int, at: float) -> list[dict]:
    return [{"id": f"{start + i:024x}", "path": f"/a/{start + i:06d}.jpg", "kind": "photo",
             "indexed_at": at, col: v.tolist()} for i, v in enumerate(vecs)]


KINDS = {"flat": "SQfp16", "ivf": "IVF256,Flat", "sq": "IVF256,SQfp16",
         "pq": "OPQ4_16,IVF256,PQ4"}
BUDGETS = {"sq": 150_000, "pq": 100_000}  # bytes: fp16 codes fit / only PQ codes fit


@pytest.fixture(params=list(KINDS))
def big_store(request, tmp_path, monkeypatch):
    """3,000 clustered 16-d rows; "ivf" lowers the exact-search limit so they get IVF,
    "sq" and "pq" also the memory budget, so they get fp16 codes or product-quantised
    codes (both re-scored)."""
    if request.param != "flat":
        monkeypatch.setattr(ann_plan, "FLAT_LIMIT", 1_000)
    if request.param in BUDGETS:
        monkeypatch.setattr(ann_plan, "default_memory_budget",
                            lambda: BUDGETS[request.param])
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(_rows(col, _clustered(3_000, 16), 0, 1.0))
    return store, col, request.param


def _top(vidx, q, k=5):
    scores, pos = vidx.search(q[None, :], k)
    return [str(vidx.ids[p]) for p in pos[0] if p >= 0], scores[0]


def test_new_changed_and_deleted_rows_without_a_rebuild(big_store, monkeypatch):
    store, col, kind = big_store
    first = ann.load_index(store, col)
    assert first.info.kind == KINDS[kind]
    assert first.info.rerank == (ann_plan.RERANK_DEPTH if kind in BUDGETS else 0)
    assert first.info.recall >= RECALL_TARGET and first.info.count == 3_000

    builds = []
    real = ann._build
    monkeypatch.setattr(ann, "_build", lambda *a, **k: builds.append(1) or real(*a, **k))
    rng = np.random.default_rng(5)
    new = rng.normal(size=(20, 16)).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    store.upsert_items(_rows(col, new, 10_000, 2.0))  # new rows
    old_row0 = np.asarray(first.vectors([0])[0])
    moved = -old_row0  # row 0 re-written with another vector
    store.upsert_items(_rows(col, moved[None, :], 0, 3.0))
    gone = str(first.ids[1])
    store.items().delete(f"id = '{gone}'")

    second = ann.load_index(store, col, previous=first)
    assert builds == []  # brought up to date, not rebuilt
    assert second.info.version == store.version()
    assert second.info.count == 3_000 + 20 - 1 and second.info.dead == 2
    for i, v in enumerate(new):  # new rows are found at once
        assert _top(second, v)[0][0] == f"{10_000 + i:024x}"
    ids, scores = _top(second, moved)
    assert ids[0] == f"{0:024x}" and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert f"{0:024x}" not in _top(second, old_row0)[0]  # its old vector is gone
    all_ids = second.search(np.asarray(old_row0)[None, :], 3_100)[1][0]
    assert gone not in {str(second.ids[p]) for p in all_ids if p >= 0}
    # filters keep excluding dead slots
    m = second.mask(kind="photo")
    assert m is not None and not m[1] and m.sum() == second.info.count

    # saved and reloaded: the same (the refreshed index is what a new process gets)
    third = ann.load_index(Store(store.dir), col)
    assert builds == [] and third.info.dead == 2 and third.info.count == 3_019
    assert _top(third, new[3])[0][0] == f"{10_003:024x}"
    # a loaded (for IVF: memory-mapped, read-only) index takes new rows too
    more = _clustered(4, 16, seed=11)
    store.upsert_items(_rows(col, more, 20_000, 4.0))
    fourth = ann.load_index(store, col, previous=third)
    assert builds == [] and fourth.info.count == 3_023
    assert _top(fourth, more[2])[0][0] == f"{20_002:024x}"


def test_many_deletions_trigger_a_rebuild(big_store, monkeypatch):
    store, col, _ = big_store
    first = ann.load_index(store, col)
    store.items().delete("path < '/a/001000.jpg'")  # a third of the rows
    second = ann.load_index(store, col, previous=first)
    assert second.info.dead == 0 and second.info.count == 2_000
    assert len(second) == 2_000


def test_status_shows_the_index_kind_and_recall(big_store, capsys):
    from loupe.search.cli.main import main as loupe

    store, col, kind = big_store
    ann.load_index(store, col)
    capsys.readouterr()
    assert loupe(["status", "--db", store.dir]) == 0
    out = capsys.readouterr().out
    if kind != "flat":
        assert KINDS[kind] in out and "recall@10" in out and "nprobe" in out
    if kind in BUDGETS:
        assert "re-scored" in out
    if kind == "flat":
        assert "SQfp16 with 3000 vectors" in out and "exact" in out


def test_refresh_reads_ids_and_new_rows_only(tmp_path):
    """The refresh never reads every vector (read_vectors): ids, then the new rows."""
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(_rows(col, _clustered(2_000, 16), 0, 1.0))
    first = ann.load_index(store, col)
    store.upsert_items(_rows(col, _clustered(5, 16, seed=9), 50_000, 2.0))
    calls = []
    real = store.read_vectors
    store.read_vectors = lambda c: calls.append(c) or real(c)  # type: ignore[method-assign]
    second = ann.load_index(store, col, previous=first)
    assert calls == [] and second.info.count == 2_005


def test_pq_candidates_rescored_with_whole_vectors_reach_the_target():
    """PQ codes alone miss the target on dense data; re-scoring the top candidates with
    the whole vectors (what the store keeps) reaches it, on queries tuning never saw."""
    vecs = _clustered(10_000, 32)
    plan = plan_index(len(vecs), 32, 10_000 * 16, flat_limit=1_000)
    assert plan.pq_bytes == 8 and plan.rerank == ann_plan.RERANK_DEPTH
    index = build(plan, vecs, seed=0)
    nprobe, recall = tune(index, plan, vecs, seed=0)
    assert recall >= RECALL_TARGET
    fresh = tuning_queries(vecs, count=300, seed=7)
    truth = exact_top(vecs, fresh, 10)
    codes_only = recall_at(index, fresh, truth)
    rescored = recall_at(index, fresh, truth, plan.rerank, vecs)
    assert rescored >= RECALL_TARGET and codes_only < RECALL_TARGET
    # codes too coarse for 100 candidates (2 bytes): deeper re-scoring is tuned in
    coarse = ann_plan.IndexPlan("IVF64,PQ2", nlist=64, pq_bytes=2, train_size=10_000)
    small = build(coarse, vecs, seed=0)
    at_100 = tune(small, coarse, vecs, seed=0)[1]
    nprobe, deeper, depth = ann_plan.tune_rerank(small, coarse, vecs, seed=0)
    assert at_100 < RECALL_TARGET <= deeper and depth > ann_plan.RERANK_DEPTH
    # the re-scored scores are the exact inner products
    scores, pos = ann_plan.rescore(fresh[:3], index.search(fresh[:3], 100)[1], 10,
                                   lambda p: vecs[p])
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", fresh[:3], vecs[pos]),
                               rtol=1e-5)


@pytest.mark.parametrize("exact_limit", [10, 4096])
def test_filtered_ivf_search_returns_the_exact_top_k_of_a_small_selection(
        tmp_path, monkeypatch, exact_limit):
    """A filter keeping 40 of 20,000 rows: the tuned nprobe alone would see few of them;
    the widened probe (or, under the limit, exact scoring) returns the exact top k."""
    monkeypatch.setattr(ann_plan, "FLAT_LIMIT", 1_000)
    monkeypatch.setattr(ann, "FILTER_EXACT_LIMIT", exact_limit)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = _clustered(20_000, 32 // 2)
    store.upsert_items(_rows(col, vecs, 0, 1.0))
    vidx = ann.load_index(store, col)
    assert vidx.info.kind.startswith("IVF") and vidx.info.nprobe < 64
    rng = np.random.default_rng(3)
    keep = np.zeros(len(vidx), bool)
    keep[rng.choice(len(vidx), 40, replace=False)] = True
    q = tuning_queries(vecs, count=20, seed=5)
    scores, pos = vidx.search(q, 10, keep)
    assert (pos >= 0).all() and keep[pos].all()
    kept = np.flatnonzero(keep)
    own = np.asarray([vidx.vectors([p])[0] for p in kept])
    for row in range(len(q)):
        want = kept[np.argsort(-(own @ q[row]), kind="stable")[:10]]
        assert set(pos[row]) == set(want)
    # fewer rows kept than asked for: all of them, then -1
    three = np.zeros(len(vidx), bool)
    three[kept[:3]] = True
    _, pos = vidx.search(q[:2], 10, three)
    assert (np.sort(pos[:, :3], axis=1) == np.sort(kept[:3])).all() and (pos[:, 3:] == -1).all()


class _FakeGpu:
    """Stands in for a faiss-gpu copy (CI has no GPU): a clone of the CPU index that
    counts its searches, so the dispatch and the dead-slot handling are checked."""

    def __init__(self, index):
        self.index = faiss.clone_index(index)
        self.calls = 0

    def search(self, q, k):
        self.calls += 1
        return self.index.search(q, k)


def test_unfiltered_searches_go_to_the_gpu_copy_and_agree(big_store, monkeypatch):
    store, col, kind = big_store
    monkeypatch.setattr(ann, "FILTER_EXACT_LIMIT", 0)  # this small index: probe as a big one
    vidx = ann.load_index(store, col)
    store.items().delete(f"id = '{vidx.ids[5]}'")  # a dead slot after the refresh
    vidx = ann.load_index(store, col, previous=vidx)
    assert vidx.alive is not None and not vidx.alive[5]
    q = tuning_queries(vidx.vectors(np.flatnonzero(vidx.alive)[:500]), count=30, seed=2)
    q = np.vstack([q, vidx.vectors([6])])
    monkeypatch.setenv("LOUPE_FAISS_GPU", "0")
    want = vidx.search(q, 10)
    monkeypatch.delenv("LOUPE_FAISS_GPU")
    made = []
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus",
                        lambda index: made.append(_FakeGpu(index)) or made[-1], raising=False)
    got = vidx.search(q, 10)
    assert len(made) == 1 and made[0].calls == 1
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    # the same hits (exactly tied scores may come in another order)
    assert [set(r) for r in got[1]] == [set(r) for r in want[1]]
    assert 5 not in got[1]  # the dead slot is never returned
    # filtered searches stay on the CPU index (FAISS GPU indexes take no selector)
    vidx.search(q, 10, vidx.mask(kind="photo"))
    assert made[0].calls == 1 and len(made) == 1


def _vector_files(store, col) -> dict[str, int]:
    d = os.path.join(store.dir, "faiss")
    return {n: os.path.getsize(os.path.join(d, n)) for n in sorted(os.listdir(d))
            if n.startswith(col) and ".vec" in n}


def test_pq_rescoring_reads_vector_files_beside_the_index(tmp_path, monkeypatch):
    """A PQ index keeps its whole vectors in position order in segment files beside it:
    re-scoring reads them, not the store. A refresh adds a segment, a rebuild replaces
    them, and a missing file means reading from the store again."""
    monkeypatch.setattr(ann_plan, "FLAT_LIMIT", 1_000)
    monkeypatch.setattr(ann_plan, "default_memory_budget", lambda: 100_000)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = _clustered(3_000, 16)
    store.upsert_items(_rows(col, vecs, 0, 1.0))
    first = ann.load_index(store, col)
    assert first.info.rerank and first.local is not None
    assert list(_vector_files(store, col).values()) == [3_000 * 16 * 4]
    np.testing.assert_array_equal(first.vectors([0, 2_999, 7]), vecs[[0, 2_999, 7]])

    def no_store(ids):
        raise AssertionError("read from the store")

    q = tuning_queries(vecs, count=20, seed=4)
    loaded = ann.load_index(Store(store.dir), col)
    assert loaded.local is not None and loaded.local.saved == 3_000  # memory-mapped
    want = loaded.search(q, 10)
    loaded.fetch = no_store
    got = loaded.search(q, 10)
    np.testing.assert_array_equal(got[1], want[1])
    from_store = store.vectors_of([str(loaded.ids[p]) for p in want[1][0]], col)
    np.testing.assert_array_equal(loaded.vectors(want[1][0]), from_store)

    new = _clustered(30, 16, seed=8)
    store.upsert_items(_rows(col, new, 10_000, 2.0))
    second = ann.load_index(store, col, previous=loaded)
    files = _vector_files(store, col)
    assert len(files) == 2 and sorted(files.values()) == [30 * 16 * 4, 3_000 * 16 * 4]
    third = ann.load_index(Store(store.dir), col)
    third.fetch = no_store
    assert third.local is not None and len(third.local.segments) == 2
    np.testing.assert_array_equal(third.vectors(np.arange(3_000, 3_030)), new)
    assert _top(third, new[4])[0][0] == f"{10_004:024x}"

    store.items().delete("path < '/a/001000.jpg'")  # a rebuild
    fourth = ann.load_index(store, col, previous=second)
    assert fourth.info.count == 2_030 and list(_vector_files(store, col).values()) == [
        2_030 * 16 * 4]

    for name in _vector_files(store, col):  # lost: searches read the store again
        os.remove(os.path.join(store.dir, "faiss", name))
    fifth = ann.load_index(Store(store.dir), col)
    assert fifth.local is None and fifth.rescores
    assert _top(fifth, new[4])[0][0] == f"{10_004:024x}"


def test_position_vectors_merge_past_the_segment_limit(tmp_path, monkeypatch):
    from loupe.search.ann import position_vectors as pv

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
    store.upsert_items(_rows(col, _clustered(300, 16), 0, 1.0))
    store.optimize()
    assert store.items().list_indices() == []  # small: a scan is quick
    assert store.index_ids(min_rows=200) and not store.index_ids(min_rows=200)
    assert [i.columns for i in store.items().list_indices()] == [["id"]]
    store.upsert_items(_rows(col, _clustered(5, 16, seed=2), 1_000, 2.0))
    store.optimize()  # new rows join the index
    got = store.vectors_of([f"{1_002:024x}", f"{7:024x}", "missing"], col)
    assert np.isnan(got[2]).all() and not np.isnan(got[:2]).any()


def _exact_top(vecs: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None):
    s = vecs.astype(np.float64) @ q.astype(np.float64).T  # (n, nq)
    if keep is not None:
        s[~keep] = -np.inf
    return [set(np.argsort(-s[:, j], kind="stable")[:k]) for j in range(len(q))]


def _assert_exact(vecs, q, pos, k, keep=None, tol=1e-6):
    """``pos`` holds, per query, k items none of which scores below the exact k-th best
    by more than float32 arithmetic can (near-ties may come either way)."""
    s = vecs.astype(np.float64) @ q.astype(np.float64).T
    if keep is not None:
        s[~keep] = -np.inf
    for j in range(len(q)):
        got = pos[j][pos[j] >= 0]
        kth = np.sort(s[:, j])[::-1][k - 1]
        assert len(got) == len(set(got)) == k
        worst = s[got, j].min()
        assert worst >= kth - tol * np.linalg.norm(q[j]), (j, kth - worst)


def test_exact_index_of_fp16_codes_returns_the_exact_top_k(tmp_path):
    """Vectors crowded within fp16's rounding error of each other: the codes alone rank
    them wrongly; the exact index (codes scanned deep enough, then re-scored) returns
    exactly the float64 brute-force top k, unfiltered, filtered and with dead slots,
    for queries and vectors of any norm."""
    rng = np.random.default_rng(0)
    base = _clustered(1_500, 16)
    centre = base[0]
    crowd = 3.0 * (centre + 2e-5 * rng.normal(size=(500, 16)).astype(np.float32))  # ties
    vecs = np.vstack([base, crowd, 3.0 * _clustered(200, 16, seed=4)]).astype(np.float32)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(_rows(col, vecs, 0, 1.0))
    vidx = ann.load_index(store, col)
    assert vidx.codes and vidx.info.kind == "SQfp16" and vidx.local is not None
    assert vidx.info.max_norm == pytest.approx(np.linalg.norm(vecs, axis=1).max(), rel=1e-6)
    order = np.asarray([int(i, 16) for i in vidx.ids])  # position -> row of vecs
    assert (order == np.arange(len(vecs))).all()
    queries = np.vstack([centre, 2.5 * centre, tuning_queries(base, count=20, seed=3),
                         -centre, 0.01 * centre]).astype(np.float32)
    codes_only = vidx.index.search(queries[:2], 10)[1]
    want = _exact_top(vecs, queries, 10)
    assert [set(r) for r in codes_only] != want[:2]  # fp16 alone gets the crowd wrong
    scores, pos = vidx.search(queries, 10)
    _assert_exact(vecs, queries, pos, 10)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vecs[pos]), rtol=1e-5)
    # a filter, and k larger than the crowd's share that passes it
    keep = np.zeros(len(vecs), bool)
    keep[1_500:2_000:3] = True
    keep[:50] = True
    _, pos = vidx.search(queries, 40, keep)
    _assert_exact(vecs, queries, pos, 40, keep)
    # dead slots (a deleted row) are never returned; new rows are found at once
    store.items().delete(f"id = '{vidx.ids[1_500]}'")
    store.upsert_items(_rows(col, centre[None, :] * 3.01, 90_000, 2.0))
    again = ann.load_index(store, col, previous=vidx)
    assert again.codes and again.info.dead == 1
    _, pos = again.search(queries[:1], 5)
    got = [str(again.ids[p]) for p in pos[0]]
    assert got[0] == f"{90_000:024x}" and str(vidx.ids[1_500]) not in got


def test_exact_index_without_its_vector_files_is_rebuilt(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = _clustered(500, 16)
    store.upsert_items(_rows(col, vecs, 0, 1.0))
    ann.load_index(store, col)
    for name in _vector_files(store, col):
        os.remove(os.path.join(store.dir, "faiss", name))
    vidx = ann.load_index(Store(store.dir), col)  # rebuilt from the store
    assert vidx.codes and vidx.local is not None and _vector_files(store, col)
    assert _top(vidx, vecs[7])[0][0] == f"{7:024x}"
