"""Indexes kept in step with the store without full rebuilds, saved and loaded, and the
unfiltered searches a GPU copy answers, for every planned kind (the kind injected as a
plan: no limits patched)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from test_ann_plan import GIB, SPEC, clustered, item_rows, top_ids

from loupe.search.ann import persist
from loupe.search.ann import plan as ann_plan
from loupe.search.ann.plan import RECALL_TARGET, plan_index, tuning_queries
from loupe.search.ann.strategies import SmallSelectionExact
from loupe.search.store import Store

KINDS = {"flat": "SQfp16", "ivf": "IVF256,Flat", "sq": "IVF256,SQfp16",
         "pq": "OPQ4_16,IVF256,PQ4"}
BUDGETS = {"sq": 150_000, "pq": 100_000}  # bytes: fp16 codes fit / only PQ codes fit


@pytest.fixture(params=list(KINDS))
def big_store(request, tmp_path):
    """3,000 clustered 16-d rows and the plan to index them with: the default one for
    "flat"; planned with a lower exact-search limit for "ivf", so they get IVF, and also
    a smaller memory budget for "sq" and "pq", so they get fp16 codes or product-quantised
    codes (both re-scored)."""
    kind = request.param
    plan = None
    if kind != "flat":
        plan = plan_index(3_000, 16, BUDGETS.get(kind, GIB), flat_limit=1_000)
    store = Store(str(tmp_path / "db"), create=True)
    col = store.register_encoder(SPEC)
    store.upsert_items(item_rows(col, clustered(3_000, 16), 0, 1.0))
    return store, col, kind, plan


def test_new_changed_and_deleted_rows_without_a_rebuild(big_store, monkeypatch):
    store, col, kind, plan = big_store
    first = persist.load_index(store, col, plan=plan)
    assert first.info.kind == KINDS[kind]
    assert first.info.rerank == (ann_plan.RERANK_DEPTH if kind in BUDGETS else 0)
    assert first.info.recall >= RECALL_TARGET and first.info.count == 3_000

    builds = []
    real = persist.build_vector_index
    monkeypatch.setattr(persist, "build_vector_index",
                        lambda *a, **k: builds.append(1) or real(*a, **k))
    rng = np.random.default_rng(5)
    new = rng.normal(size=(20, 16)).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    store.upsert_items(item_rows(col, new, 10_000, 2.0))  # new rows
    old_row0 = np.asarray(first.vectors([0])[0])
    moved = -old_row0  # row 0 re-written with another vector
    store.upsert_items(item_rows(col, moved[None, :], 0, 3.0))
    gone = str(first.catalog.ids[1])
    store.items().delete(f"id = '{gone}'")

    second = persist.load_index(store, col, previous=first, plan=plan)
    assert builds == []  # brought up to date, not rebuilt
    assert second.info.version == store.version()
    assert second.info.count == 3_000 + 20 - 1 and second.info.dead == 2
    for i, v in enumerate(new):  # new rows are found at once
        assert top_ids(second, v)[0][0] == f"{10_000 + i:024x}"
    ids, scores = top_ids(second, moved)
    assert ids[0] == f"{0:024x}" and scores[0] == pytest.approx(1.0, abs=1e-4)
    assert f"{0:024x}" not in top_ids(second, old_row0)[0]  # its old vector is gone
    all_ids = second.search(np.asarray(old_row0)[None, :], 3_100)[1][0]
    assert gone not in {str(second.catalog.ids[p]) for p in all_ids if p >= 0}
    # filters keep excluding dead slots
    m = second.catalog.mask(kind="photo")
    assert m is not None and not m[1] and m.sum() == second.info.count

    # saved and reloaded: the same (the refreshed index is what a new process gets)
    third = persist.load_index(Store(store.dir), col, plan=plan)
    assert builds == [] and third.info.dead == 2 and third.info.count == 3_019
    assert top_ids(third, new[3])[0][0] == f"{10_003:024x}"
    # a loaded (for IVF: memory-mapped, read-only) index takes new rows too
    more = clustered(4, 16, seed=11)
    store.upsert_items(item_rows(col, more, 20_000, 4.0))
    fourth = persist.load_index(store, col, previous=third, plan=plan)
    assert builds == [] and fourth.info.count == 3_023
    assert top_ids(fourth, more[2])[0][0] == f"{20_002:024x}"


def test_many_deletions_trigger_a_rebuild(big_store):
    store, col, _, plan = big_store
    first = persist.load_index(store, col, plan=plan)
    store.items().delete("path < '/a/001000.jpg'")  # a third of the rows
    second = persist.load_index(store, col, previous=first, plan=plan)
    assert second.info.dead == 0 and second.info.count == 2_000
    assert len(second) == 2_000


def test_status_shows_the_index_kind_and_recall(big_store, capsys):
    from loupe.search.cli import main as loupe

    store, col, kind, plan = big_store
    persist.load_index(store, col, plan=plan)
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
    store.upsert_items(item_rows(col, clustered(2_000, 16), 0, 1.0))
    first = persist.load_index(store, col)
    store.upsert_items(item_rows(col, clustered(5, 16, seed=9), 50_000, 2.0))
    calls = []
    real = store.read_vectors
    store.read_vectors = lambda c: calls.append(c) or real(c)  # type: ignore[method-assign]
    second = persist.load_index(store, col, previous=first)
    assert calls == [] and second.info.count == 2_005


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
    store, col, kind, plan = big_store
    vidx = persist.load_index(store, col, plan=plan)
    store.items().delete(f"id = '{vidx.catalog.ids[5]}'")  # a dead slot after the refresh
    vidx = persist.load_index(store, col, previous=vidx, plan=plan)
    if isinstance(vidx.strategy, SmallSelectionExact):
        vidx.strategy.limit = 0  # this small index: probe as a big one
    alive = vidx.catalog.alive
    assert alive is not None and not alive[5]
    q = tuning_queries(vidx.vectors(np.flatnonzero(alive)[:500]), count=30, seed=2)
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
    vidx.search(q, 10, vidx.catalog.mask(kind="photo"))
    assert made[0].calls == 1 and len(made) == 1
