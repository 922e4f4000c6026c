"""Style attribution: the kNN vote over reference collections on synthetic clusters,
collections registered from folders (toy encoder: answers known), zero-shot style
shares, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.media import solid
from helpers.toys import ToyEncoder

from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.cli import main as loupe
from loupe.search.explain.attribution import (
    ReferenceSet,
    add_collection,
    attribute,
    collections,
    knn_shares,
    reference_rows,
    reference_set,
    remove_collection,
)
from loupe.search.explain.grounding.cache import Target
from loupe.search.store import Store


def _clusters(seed=0, per=30, dim=32, spread=0.25):
    """Three artists' works: unit vectors around three random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim))
    names, vecs = [], []
    for name, c in zip(("Ada", "Ben", "Cy"), centres, strict=True):
        v = c + spread * np.linalg.norm(c) * rng.normal(size=(per, dim)) / np.sqrt(dim)
        vecs.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        names += [name] * per
    refs = ReferenceSet(np.array(names, object),
                        np.array([f"/refs/{n}/{i}.jpg" for i, n in enumerate(names)], object),
                        np.concatenate(vecs).astype(np.float32))
    return refs, centres / np.linalg.norm(centres, axis=1, keepdims=True)


def test_knn_vote_on_synthetic_clusters():
    refs, centres = _clusters()
    for who, centre in zip(("Ada", "Ben", "Cy"), centres, strict=True):
        shares, evidence = knn_shares(centre, refs, k=10, temperature=0.05)
        assert shares[0].label == who and shares[0].share > 90
        assert sum(s.share for s in shares) == pytest.approx(100.0)
        assert len(evidence) == 10
        assert all(e.collection == who for e in evidence)
        sims = [e.similarity for e in evidence]
        assert sims == sorted(sims, reverse=True)
        assert sum(e.weight for e in evidence) == pytest.approx(100.0)
    # Halfway between Ada and Ben: both get a real share, Cy none to speak of.
    mid = centres[0] + centres[1]
    shares, _ = knn_shares(mid / np.linalg.norm(mid), refs, k=20, temperature=0.05)
    got = {s.label: s.share for s in shares}
    assert got.get("Ada", 0) > 15 and got.get("Ben", 0) > 15 and got.get("Cy", 0) < 5


def test_temperature_moves_between_nearest_work_and_plain_count():
    names = np.array(["A", "B", "B", "B"], object)
    vecs = np.array([[1, 0], [0.9, np.sqrt(1 - 0.81)], [0.8, 0.6], [0.7, np.sqrt(0.51)]],
                    np.float32)
    refs = ReferenceSet(names, np.array(["a", "b1", "b2", "b3"], object), vecs)
    q = np.array([1.0, 0.0], np.float32)
    sharp, _ = knn_shares(q, refs, k=4, temperature=0.001)
    assert sharp[0].label == "A" and sharp[0].share > 99.9
    flat, _ = knn_shares(q, refs, k=4, temperature=1000.0)
    got = {s.label: s.share for s in flat}
    assert got["B"] == pytest.approx(75.0, abs=0.1) and got["A"] == pytest.approx(25.0, abs=0.1)
    with pytest.raises(LoupeError):
        knn_shares(q, refs, k=0)
    with pytest.raises(LoupeError):
        knn_shares(q, refs, temperature=0)


@pytest.fixture
def indexed(tmp_path, toy):
    solid(tmp_path / "archive" / "orange.png", (255, 90, 0))
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(tmp_path / "archive")], store, toy, IndexOptions(workers=0, progress=False))
    refs = tmp_path / "refs"
    for i, rgb in enumerate([(255, 0, 0), (230, 20, 10), (200, 40, 0)]):
        solid(refs / "red-school" / f"r{i}.png", rgb)
    for i, rgb in enumerate([(0, 0, 255), (20, 30, 230)]):
        solid(refs / "blue-school" / f"b{i}.png", rgb)
    return store, refs


def test_collections_from_folders(indexed, toy, tmp_path):
    store, refs = indexed
    (refs / "red-school" / "notes.txt").write_text("not a picture")
    (refs / "red-school" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    r = add_collection(store, "Red school", [str(refs / "red-school")], lambda c: toy)
    assert (r.added, r.unchanged) == (3, 0) and [p for p, _ in r.skipped][0].endswith("broken.png")
    add_collection(store, "Blue school", [str(refs / "blue-school")], lambda c: toy)
    assert collections(store) == {"Blue school": 2, "Red school": 3}
    again = add_collection(store, "Red school", [str(refs / "red-school")], lambda c: toy)
    assert (again.added, again.unchanged) == (0, 3)
    (refs / "red-school" / "r2.png").unlink()
    assert add_collection(store, "Red school", [str(refs / "red-school")],
                          lambda c: toy).removed == 1
    assert collections(store)["Red school"] == 2

    column = next(iter(store.meta.encoders))
    target = Target(str(tmp_path / "archive" / "orange.png"))
    vec = toy.embed_images([_open(target.path)])
    (a,) = attribute(vec, [target], toy, store, column, top=3, k=4, temperature=0.05)
    assert a.references[0].label == "Red school" and a.references[0].share > 90
    assert sum(s.share for s in a.references) == pytest.approx(100.0)
    assert [e.collection for e in a.evidence[:2]] == ["Red school", "Red school"]
    assert a.evidence[0].path.endswith(("r0.png", "r1.png"))
    assert sum(t.share for t in a.artists) + a.artists_other == pytest.approx(100.0)
    assert sum(t.share for t in a.movements) + a.movements_other == pytest.approx(100.0)
    assert len(a.artists) == 3

    assert remove_collection(store, "Blue school") == 2
    with pytest.raises(LoupeError, match="no collection"):
        remove_collection(store, "Blue school")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoupeError, match="no pictures"):
        add_collection(store, "Empty", [str(tmp_path / "empty")], lambda c: toy)


def _open(path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def test_a_model_added_later_embeds_the_references(indexed, toy):
    store, refs = indexed
    add_collection(store, "Red school", [str(refs / "red-school")], lambda c: toy)
    other = ToyEncoder(size=4)  # another spec: another column
    other.spec = type(toy.spec)(**{**toy.spec.__dict__, "weights_id": "toy-v2"})
    store.register_encoder(other.spec)
    refs_other = reference_set(store, other.spec.column, other)
    assert len(refs_other.vectors) == 3 and set(refs_other.collections) == {"Red school"}
    assert reference_rows(store).num_rows == 6  # kept for next time


def test_attribute_cli(indexed, toy, capsys):
    store, refs = indexed
    assert loupe(["collection", "add", "Red school", str(refs / "red-school"),
                  "--db", store.dir]) == 0
    assert loupe(["collection", "add", "Blue school", str(refs / "blue-school"),
                  "--db", store.dir]) == 0
    capsys.readouterr()
    assert loupe(["collection", "list", "--db", store.dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Blue school": 2, "Red school": 3}
    orange = str(store.dir).replace("/db", "/archive/orange.png")
    assert loupe(["attribute", orange, "--db", store.dir, "-k", "5", "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["references"][0]["label"] == "Red school"
    assert len(res["evidence"]) == 5
    assert loupe(["attribute", orange, "--db", store.dir]) == 0
    out = capsys.readouterr().out
    assert "artists (zero-shot)" in out and "evidence:" in out and "Red school" in out
    assert loupe(["attribute", orange, "--db", store.dir, "--temperature", "0"]) == 1


def test_tag_and_attribute_need_a_model_without_an_index(tmp_path, capsys):
    solid(tmp_path / "x.png", (1, 2, 3))
    assert loupe(["tag", str(tmp_path / "x.png"), "--db", str(tmp_path / "none")]) == 1
    assert "pass --model" in capsys.readouterr().err
