"""ANN by size: the planned index kind, IVF tuned to the recall target on held-out
queries, and the search each planned kind gets (filtered IVF, exact fp16 codes).

The helpers here (``clustered``, ``SPEC``, ``item_rows``, ``top_ids``) build stores of
synthetic vectors for test_ann_refresh.py, test_position_vectors.py and the index
contract (tests/contracts/test_index_contract.py)."""

from __future__ import annotations

import numpy as np
import pytest

from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.search.ann import load_index
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
from loupe.search.ann.strategies import CodesExact, SmallSelectionExact
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


def clustered(n: int, dim: int, k: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors of ``dim`` around ``k`` seeded random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    v = centres[rng.integers(0, k, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivf_is_tuned_to_the_recall_target_on_held_out_queries():
    vecs = clustered(20_000, 32)
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
    vecs = clustered(5_000, 16)
    plan = plan_index(len(vecs), 16, GIB, flat_limit=100)
    q = tuning_queries(vecs, seed=3)
    a, b = build(plan, vecs, seed=1), build(plan, vecs, seed=1)
    for idx in (a, b):
        ann_plan.set_search_params(idx, 4)
    np.testing.assert_array_equal(a.search(q, 10)[1], b.search(q, 10)[1])


SPEC = EncoderSpec(backend="bench", model="synthetic", weights="none", weights_id="s1",
                   dim=16, preprocess=ImagePreprocess(size=(8, 8)))


def item_rows(col: str, vecs: np.ndarray, start: int, at: float) -> list[dict]:
    """Photo rows numbered from ``start`` (id: the number in hex; path /a/NNNNNN.jpg)
    with ``vecs`` in ``col``, indexed at ``at``."""
    return [{"id": f"{start + i:024x}", "path": f"/a/{start + i:06d}.jpg", "kind": "photo",
             "indexed_at": at, col: v.tolist()} for i, v in enumerate(vecs)]


def top_ids(vidx, q: np.ndarray, k: int = 5) -> tuple[list[str], np.ndarray]:
    """The ids and scores of ``vidx``'s top k for one query."""
    scores, pos = vidx.search(q[None, :], k)
    return [str(vidx.catalog.ids[p]) for p in pos[0] if p >= 0], scores[0]


def test_pq_candidates_rescored_with_whole_vectors_reach_the_target():
    """PQ codes alone miss the target on dense data; re-scoring the top candidates with
    the whole vectors (what the store keeps) reaches it, on queries tuning never saw."""
    vecs = clustered(10_000, 32)
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
        tmp_path, exact_limit):
    """A filter keeping 40 of 20,000 rows: the tuned nprobe alone would see few of them;
    the widened probe (or, under the limit, exact scoring) returns the exact top k."""
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    vecs = clustered(20_000, 32 // 2)
    store.upsert_items(item_rows(col, vecs, 0, 1.0))
    vidx = load_index(store, col, plan=plan_index(len(vecs), 16, flat_limit=1_000))
    assert vidx.info.kind.startswith("IVF") and vidx.info.nprobe < 64
    assert isinstance(vidx.strategy, SmallSelectionExact)
    vidx.strategy.limit = exact_limit
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


def exact_top_sets(vecs: np.ndarray, q: np.ndarray, k: int,
                   keep: np.ndarray | None = None) -> list[set]:
    """Per query, the positions of the float64 brute-force top k (``keep``: among those)."""
    s = vecs.astype(np.float64) @ q.astype(np.float64).T  # (n, nq)
    if keep is not None:
        s[~keep] = -np.inf
    return [set(np.argsort(-s[:, j], kind="stable")[:k]) for j in range(len(q))]


def assert_exact(vecs: np.ndarray, q: np.ndarray, pos: np.ndarray, k: int,
                 keep: np.ndarray | None = None, tol: float = 1e-6) -> None:
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
    base = clustered(1_500, 16)
    centre = base[0]
    crowd = 3.0 * (centre + 2e-5 * rng.normal(size=(500, 16)).astype(np.float32))  # ties
    vecs = np.vstack([base, crowd, 3.0 * clustered(200, 16, seed=4)]).astype(np.float32)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(item_rows(col, vecs, 0, 1.0))
    vidx = load_index(store, col)
    assert vidx.codes and vidx.info.kind == "SQfp16" and vidx.local is not None
    assert isinstance(vidx.strategy, CodesExact)
    assert vidx.info.max_norm == pytest.approx(np.linalg.norm(vecs, axis=1).max(), rel=1e-6)
    order = np.asarray([int(i, 16) for i in vidx.catalog.ids])  # position -> row of vecs
    assert (order == np.arange(len(vecs))).all()
    queries = np.vstack([centre, 2.5 * centre, tuning_queries(base, count=20, seed=3),
                         -centre, 0.01 * centre]).astype(np.float32)
    codes_only = vidx.index.search(queries[:2], 10)[1]
    want = exact_top_sets(vecs, queries, 10)
    assert [set(r) for r in codes_only] != want[:2]  # fp16 alone gets the crowd wrong
    scores, pos = vidx.search(queries, 10)
    assert_exact(vecs, queries, pos, 10)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vecs[pos]), rtol=1e-5)
    # a filter, and k larger than the crowd's share that passes it
    keep = np.zeros(len(vecs), bool)
    keep[1_500:2_000:3] = True
    keep[:50] = True
    _, pos = vidx.search(queries, 40, keep)
    assert_exact(vecs, queries, pos, 40, keep)
    # dead slots (a deleted row) are never returned; new rows are found at once
    store.items().delete(f"id = '{vidx.catalog.ids[1_500]}'")
    store.upsert_items(item_rows(col, centre[None, :] * 3.01, 90_000, 2.0))
    again = load_index(store, col, previous=vidx)
    assert again.codes and again.info.dead == 1
    _, pos = again.search(queries[:1], 5)
    got = [str(again.catalog.ids[p]) for p in pos[0]]
    assert got[0] == f"{90_000:024x}" and str(vidx.catalog.ids[1_500]) not in got
