"""The atlas (search/explain/atlas.py, atlas_select.py): a 2-D map of the index, cached
per store version; and its page in the UI (ui/views/atlas.py, driven by AppTest)."""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
from helpers.media import REPO, solid
from helpers.toys import ToyEncoder
from PIL import Image

from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.explain import atlas as A
from loupe.search.explain import atlas_select as S
from loupe.search.store import Store, item_id

OPTS = IndexOptions(workers=0, progress=False)


def synthetic_store(db, vectors: np.ndarray, kinds: list[str] | None = None) -> Store:
    """A store whose items carry ``vectors`` (normalised here) in a toy model's column."""
    store = Store(str(db), create=True)
    n, dim = vectors.shape
    column = store.register_encoder(EncoderSpec(
        backend="toy", model=f"synthetic-{dim}", weights="none", weights_id="syn-v1",
        dim=dim, preprocess=ImagePreprocess(size=(8, 8))))
    v = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    kinds = kinds or ["photo"] * n
    rows = []
    for i in range(n):
        ts = None if kinds[i] == "photo" else float(i)
        path = f"/synthetic/{i // 100:02d}/item{i:05d}.jpg"
        rows.append({"id": item_id(path, kinds[i], ts), "path": path, "kind": kinds[i],
                     "size": 1, "mtime_ns": 0, "fingerprint": f"{i:032x}", "width": 8,
                     "height": 8, "timestamp": ts, "indexed_at": time.time(), column: v[i]})
    store.upsert_items(rows)
    return store


def clusters(n_per: int, k: int, dim: int, seed: int = 0, spread: float = 0.05):
    """k well separated clusters in ``dim`` dimensions; returns (vectors, labels)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 1.0
    labels = np.repeat(np.arange(k), n_per)
    vectors = centres[labels] + spread * rng.standard_normal((k * n_per, dim))
    return vectors, labels


# -- computing -------------------------------------------------------------------------
def test_pca_maps_two_clusters_to_separate_regions(tmp_path):
    vectors, labels = clusters(40, 2, 64)
    store = synthetic_store(tmp_path / "db", vectors)
    a = A.compute_atlas(store, method="pca")
    assert a.method == "pca" and len(a) == 80 and not a.sampled and a.total == 80
    assert a.x.dtype == np.float32 and a.x.min() >= 0 and a.x.max() <= 1
    assert a.y.min() >= 0 and a.y.max() <= 1
    lab = np.array([labels[int(p[-9:-4])] for p in a.paths])
    x0, x1 = a.x[lab == 0], a.x[lab == 1]
    # the first component is the direction between the clusters: a clean gap on x
    assert x0.max() < x1.min() or x1.max() < x0.min()
    gap = max(x1.min() - x0.max(), x0.min() - x1.max())
    assert gap > 0.5
    # "auto" on a small index is PCA, and PCA is deterministic (signs fixed)
    b = A.compute_atlas(store)
    assert b.method == "pca"
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


def test_pca_signs_do_not_depend_on_the_solver():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((50, 10))
    p = A.pca_2d(v)
    q = A.pca_2d(-v)  # the same cloud mirrored: each component's sign is fixed...
    np.testing.assert_allclose(np.abs(p), np.abs(q), atol=1e-9)
    w, vecs = np.linalg.eigh(np.cov((v - v.mean(0)).T))
    top = vecs[:, np.argsort(w)[::-1][:2]]
    big = np.argmax(np.abs(top), axis=0)
    top = top * np.sign(top[big, [0, 1]])  # ...to make the largest loading positive
    np.testing.assert_allclose(p, (v - v.mean(0)) @ top, atol=1e-9)


def test_umap_is_deterministic_and_keeps_clusters_apart(tmp_path):
    vectors, labels = clusters(100, 3, 32, spread=0.08)
    store = synthetic_store(tmp_path / "db", vectors)
    t = time.perf_counter()
    a = A.compute_atlas(store, method="umap", seed=3)
    first = time.perf_counter() - t
    t = time.perf_counter()
    b = A.compute_atlas(store, method="umap", seed=3)
    second = time.perf_counter() - t
    print(f"UMAP of 300 points: {first:.1f} s (numba compiles), then {second:.2f} s")
    assert a.method == "umap" and len(a) == 300
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert 0 <= a.x.min() and a.x.max() <= 1
    lab = np.array([labels[int(p[-9:-4])] for p in a.paths])
    xy = np.stack([a.x, a.y], axis=1)
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(axis=1)] == lab).mean() > 0.95  # map neighbours share a cluster
    # "auto" picks UMAP on an index this big; another seed gives another layout
    assert A.compute_atlas(store, seed=3).method == "umap"
    c = A.compute_atlas(store, method="umap", seed=4)
    assert not np.array_equal(a.x, c.x)


def test_umap_refuses_too_few_points(tmp_path):
    store = synthetic_store(tmp_path / "db", clusters(5, 2, 8)[0])
    with pytest.raises(LoupeError, match="UMAP needs more than"):
        A.compute_atlas(store, method="umap")
    assert A.compute_atlas(store).method == "pca"


def test_subsampling_above_max_points(tmp_path):
    vectors, _ = clusters(100, 3, 16)
    store = synthetic_store(tmp_path / "db", vectors)
    a = A.compute_atlas(store, method="pca", max_points=50, seed=7)
    assert len(a) == 50 and a.sampled and a.total == 300
    assert len(set(a.ids.tolist())) == 50
    b = A.compute_atlas(store, method="pca", max_points=50, seed=7)
    assert a.ids.tolist() == b.ids.tolist()  # the sample is seeded
    c = A.compute_atlas(store, method="pca", max_points=50, seed=8)
    assert a.ids.tolist() != c.ids.tolist()


def test_kinds_mapped_and_labels(tmp_path):
    kinds = ["photo"] * 4 + ["frame"] * 3 + ["audio"] * 2
    store = synthetic_store(tmp_path / "db", clusters(3, 3, 8)[0], kinds)
    a = A.compute_atlas(store)
    assert sorted(a.kinds.tolist()) == ["frame"] * 3 + ["photo"] * 4  # no sound by default
    assert np.isnan(a.timestamps[a.kinds == "photo"]).all()
    for p in np.flatnonzero(a.kinds == "frame"):  # frame i sits at i seconds
        i = int(a.timestamps[p])
        assert a.labels[p] == f"item{i:05d}.jpg · 0:{i:02d}"
    everything = A.compute_atlas(store, kinds=("photo", "frame", "audio"))
    assert len(everything) == 9
    with pytest.raises(LoupeError):
        A.compute_atlas(store, kinds=("video",))
    with pytest.raises(LoupeError):
        A.compute_atlas(store, method="tsne")


def test_an_index_without_items_maps_nothing(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    store.register_encoder(ToyEncoder().spec)
    a = A.load_atlas(store)
    assert len(a) == 0 and a.total == 0 and a.x.shape == (0,)
    assert S.atlas_positions(a, ["abc"]).size == 0 and S.mosaic_cells(a) == []


# -- the cache -------------------------------------------------------------------------
def _photos(root, colours) -> None:
    for name, rgb in colours.items():
        solid(root / f"{name}.png", rgb)


def test_cached_per_version_and_rebuilt_after_reindexing(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    _photos(root, {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)})
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, ToyEncoder(), OPTS)
    first = A.load_atlas(store, seed=1)
    assert not first.cached and first.version == store.version() and len(first) == 3
    files = list((tmp_path / "db" / "atlas").iterdir())
    assert [f.suffix for f in files] == [".arrow"]  # no temp file left behind

    calls = []
    real = A.compute_atlas
    monkeypatch.setattr(A, "compute_atlas", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = A.load_atlas(Store(store.dir), seed=1)  # another process would see the same
    assert calls == [] and again.cached
    np.testing.assert_array_equal(first.x, again.x)
    assert again.ids.tolist() == first.ids.tolist()
    assert again.labels.tolist() == first.labels.tolist()
    # other parameters are another atlas
    A.load_atlas(store, seed=2)
    assert len(calls) == 1

    _photos(root, {"white": (255, 255, 255)})
    index_paths([str(root)], store, ToyEncoder(), OPTS)
    assert store.version() != first.version
    assert A.cached_atlas(store, seed=1) is None  # stale
    fresh = A.load_atlas(store, seed=1)
    assert len(calls) == 2 and not fresh.cached and fresh.version == store.version()
    assert sorted(p.rsplit("/", 1)[-1] for p in fresh.paths) == [
        "blue.png", "green.png", "red.png", "white.png"]
    assert A.load_atlas(store, seed=1).cached and len(calls) == 2


def test_a_read_only_index_still_gets_its_map(tmp_path, monkeypatch):
    store = synthetic_store(tmp_path / "db", clusters(5, 2, 8)[0])

    def refuse(path, data):
        raise PermissionError(13, "read-only", path)

    monkeypatch.setattr(A, "write_atomic", refuse)
    a = A.load_atlas(store)
    assert len(a) == 10 and not a.cached
    assert A.cached_atlas(store) is None


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    store = synthetic_store(tmp_path / "db", clusters(5, 2, 8)[0])
    A.load_atlas(store)
    (path,) = (tmp_path / "db" / "atlas").iterdir()
    path.write_bytes(b"not arrow")
    a = A.load_atlas(store)
    assert not a.cached and len(a) == 10
    assert A.load_atlas(store).cached


# -- reading the map -------------------------------------------------------------------
def _toy_atlas(x, y) -> A.Atlas:
    n = len(x)
    ids = np.asarray([f"id{i}" for i in range(n)], dtype=object)
    return A.Atlas(column="c", version=1, method="pca", requested="pca", seed=0,
                   mapped_kinds=("photo",), ids=ids, paths=ids, kinds=np.full(n, "photo", object),
                   timestamps=np.full(n, np.nan), labels=ids,
                   x=np.asarray(x, np.float32), y=np.asarray(y, np.float32), total=n)


def test_region_lasso_positions_and_selection():
    rng = np.random.default_rng(0)
    a = _toy_atlas(rng.random(2000), rng.random(2000))
    box = S.region(a, 0.6, 0.2, 0.1, 0.5)  # corners in any order
    expect = np.flatnonzero((a.x >= 0.2) & (a.x <= 0.6) & (a.y >= 0.1) & (a.y <= 0.5))
    np.testing.assert_array_equal(box, expect)
    # a lasso drawn along the same rectangle picks the same points (none on its edges)
    square = S.lasso(a, [0.2, 0.6, 0.6, 0.2], [0.1, 0.1, 0.5, 0.5])
    np.testing.assert_array_equal(square, expect)
    # a triangle: below the diagonal of the unit square
    tri = S.lasso(a, [0, 1, 1], [0, 0, 1])
    np.testing.assert_array_equal(tri, np.flatnonzero(a.y < a.x))
    assert S.lasso(a, [0, 1], [0, 1]).size == 0  # not a polygon
    pos = S.atlas_positions(a, ["id5", "nope", "id2", "id5"])
    assert pos.tolist() == [5, 2]
    sel = S.selected_positions(a, points=[{"customdata": 7}, {"customdata": [3]},
                                          {"customdata": 10**9}, {"x": 1}],
                               boxes=[{"x": [0.2, 0.6], "y": [0.1, 0.5]}])
    np.testing.assert_array_equal(sel, np.union1d(expect, [3, 7]))
    assert S.selected_positions(a).size == 0


def test_mosaic_shows_thumbnails_where_their_points_are(tmp_path):
    root = tmp_path / "photos"
    _photos(root, {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
                   "black": (0, 0, 0)})
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, ToyEncoder(), OPTS)
    a = A.load_atlas(store)
    cells, tile = 8, 16
    picks = S.mosaic_cells(a, cells)
    assert len({(cx, cy) for cx, cy, _ in picks}) == len(picks) == 4  # one per point here
    data = S.mosaic(store, a, cells=cells, tile=tile)
    im = Image.open(io.BytesIO(data)).convert("RGB")
    assert im.size == (cells * tile, cells * tile)
    colours = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "black": (0, 0, 0)}
    for cx, cy, p in picks:
        name = a.paths[p].rsplit("/", 1)[-1][:-4]
        centre = im.getpixel((cx * tile + tile // 2, (cells - 1 - cy) * tile + tile // 2))
        assert max(abs(c - e) for c, e in zip(centre, colours[name], strict=True)) < 40
    assert S.mosaic(store, a, cells=cells, tile=tile) == data  # cached beside the atlas
    assert any(f.name.startswith("mosaic-") for f in (tmp_path / "db" / "atlas").iterdir())


# -- the page --------------------------------------------------------------------------
APP = str(REPO / "ui" / "app.py")


def test_atlas_page_maps_the_index_and_marks_the_search_hits(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "photos"
    _photos(root, {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
                   "dark": (10, 10, 10)})
    db = tmp_path / "db"
    index_paths([str(root)], Store(str(db), create=True), ToyEncoder(), OPTS)
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(db)])
    monkeypatch.setenv("LOUPE_UI_GATED", "1")  # as served by server.py
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="query").input("red").run()
    assert at.session_state["results"][0]["path"].endswith("red.png")
    at.switch_page("page_atlas.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    info = at.session_state["atlas_info"]
    assert info["points"] == 4 and info["method"] == "pca" and info["hits"] == 4
    assert at.get("plotly_chart")
    assert any("4 items" in c.value and "hits of your search" in c.value for c in at.caption)
    # pictures under the map
    at.toggle(key="atlas_pictures").set_value(True).run()
    assert not at.exception and at.session_state["atlas_info"]["pictures"]
    # no kinds: a clear message, no map
    at.button_group(key="atlas_kinds").set_value([]).run()
    assert not at.exception and any("at least one kind" in i.value for i in at.info)


def test_atlas_page_on_an_empty_index(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    db = tmp_path / "db"
    store = Store(str(db), create=True)
    store.register_encoder(ToyEncoder().spec)
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(db)])
    monkeypatch.setenv("LOUPE_UI_GATED", "1")  # as served by server.py
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("page_atlas.py").run()
    assert not at.exception
    assert any("Nothing to map" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_atlas_cli_writes_the_map_and_reuses_the_cache(tmp_path, capsys):
    import csv
    import json

    from loupe.search.cli import main as loupe

    root = tmp_path / "photos"
    _photos(root, {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)})
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, ToyEncoder(), OPTS)
    out, pic = tmp_path / "map.csv", tmp_path / "map.jpg"
    assert loupe(["atlas", "--db", store.dir, "--method", "pca", "--out", str(out),
                  "--picture", str(pic)]) == 0
    assert "3 points, PCA, computed" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == ["blue.png", "green.png",
                                                                   "red.png"]
    assert all(0 <= float(r["x"]) <= 1 and 0 <= float(r["y"]) <= 1 for r in rows)
    assert Image.open(pic).size == (24 * 48, 24 * 48)
    assert loupe(["atlas", "--db", store.dir, "--method", "pca", "--out",
                  str(tmp_path / "map.json")]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert [r["id"] for r in json.loads((tmp_path / "map.json").read_text())] == \
        [r["id"] for r in rows]
    assert loupe(["atlas", "--db", store.dir, "--out", str(tmp_path / "map.txt")]) == 1
