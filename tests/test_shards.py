"""Shards of one index: replicas that each keep the files of one shard, and the entry
point that merges their answers. The merged top k equals one index's top k."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.s3 import replicas
from helpers.toys import ToyEncoder
from PIL import Image

from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search import Searcher, merge_hits, parse_query, parse_shard, shard_of
from loupe.search.store import Store

QUERIES = [["red"], ["green", "+", "blue"], ["black"], ["2:white", "-", "red"], ["blue"]]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """40 pictures of random colours and three short videos, indexed by the toy encoder
    into tables kept apart from the indexer's folder (as on object storage)."""
    from helpers.signs import title_card_video

    base = tmp_path_factory.mktemp("shards")
    media = base / "media"
    media.mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        Image.new("RGB", (24, 24), colour).save(media / f"p{i:02d}.png")
    for n in range(3):  # a new colour every second: no two frames score the same
        shots = [(Image.new("RGB", (64, 48), tuple(int(c) for c in rng.integers(0, 256, 3))),
                  1.0) for _ in range(5)]
        title_card_video(media / f"v{n}.mp4", shots, size=(64, 48))
    db, tables = base / "db", base / "tables"
    store = Store(str(db), create=True, tables_uri=str(tables))
    index_paths([str(media)], store, ToyEncoder(), IndexOptions(workers=0, progress=False))
    return base, db, tables


def _shards(archive, n: int) -> list[Store]:
    base, _, tables = archive
    return [Store(str(base / f"shard{n}-{i}"), tables_uri=str(tables), shard=(i, n))
            for i in range(n)]


def _as_dicts(hits) -> list[dict]:
    return [h.as_dict() for h in hits]


def _same_ranking(got: list[dict], want: list[dict]) -> None:
    """The same hits in the same order, but for the order among equal scores (frames of a
    still shot score the same; one index orders them by position, the merge by id), and
    which of the equals the k-th place cut off."""
    assert np.allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5)
    last = want[-1]["score"] if want else 0.0

    def groups(hits):
        out: dict[float, set] = {}
        for h in hits:
            if h["score"] > last + 1e-5:
                out.setdefault(round(h["score"], 4), set()).add(h["id"])
        return out

    assert groups(got) == groups(want)


@pytest.mark.parametrize("n", [2, 3])
def test_shards_partition_the_files_and_merge_to_the_whole_indexs_answer(archive, n):
    _, db, _ = archive
    whole = Searcher(Store(str(db)))
    parts = [Searcher(s) for s in _shards(archive, n)]
    ids = [set(p.index.catalog.ids.tolist()) for p in parts]
    assert sum(len(x) for x in ids) == len(whole.index)  # every item in one shard only
    assert set().union(*ids) == set(whole.index.catalog.ids.tolist())
    for p, s in zip(parts, _shards(archive, n), strict=True):  # by file: frames together
        assert {shard_of(x, n) for x in p.index.catalog.paths.tolist()} == {s.meta.shard[0]}
    for tokens in QUERIES:
        terms = parse_query(tokens, is_file=lambda p: False)
        for k, kw in ((5, {}), (12, {}), (8, {"kind": "frame"}), (10, {"group": False})):
            want = _as_dicts(whole.search(terms, k=k, **kw))
            got = merge_hits([_as_dicts(p.search(terms, k=k, **kw)) for p in parts], k)
            _same_ranking(got, want)
            assert [h["moments"] for h in got] == [h["moments"] for h in want]


def test_a_shard_keeps_its_vectors_only(archive):
    _, db, _ = archive
    whole = len(Searcher(Store(str(db))).index)
    sizes = [len(Searcher(s).index) for s in _shards(archive, 2)]
    assert sum(sizes) == whole and max(sizes) < whole


def test_shard_names_and_mistakes():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(LoupeError, match="I/N"):
            parse_shard(bad)
    assert shard_of("/a/b.jpg", 7) == shard_of("/a/b.jpg", 7)  # stable, not hash()
    with pytest.raises(LoupeError, match="same item"):
        merge_hits([[{"id": "x", "score": 1.0}], [{"id": "x", "score": 1.0}]], 5)


def test_a_folder_serves_one_shard_only(archive):
    base, _, tables = archive
    Store(str(base / "only"), tables_uri=str(tables), shard=(0, 2))
    with pytest.raises(LoupeError, match="folder of its own"):
        Store(str(base / "only"), tables_uri=str(tables), shard=(1, 2))


def test_shard_replicas_behind_one_entry_point_answer_as_one_index(tmp_path, tiny_clip_dir,
                                                                   corpus):
    """`loupe serve --shard I/2` twice and `loupe serve --shards` in front: `loupe search`
    through the entry point prints what a search of the whole index prints."""
    import shutil

    media = tmp_path / "photos"
    media.mkdir()
    for p in sorted((corpus / "photos").glob("*.png"))[:10]:
        shutil.copy(p, media / p.name)
    db, tables = tmp_path / "db", tmp_path / "tables"
    env = {**os.environ, "LOUPE_API_KEY": "a-shared-key-for-the-shards", "LOUPE_DB": str(db)}
    loupe = [sys.executable, "-m", "loupe.search.cli"]
    subprocess.run([*loupe, "index", str(media), "--db", str(db), "--tables-uri", str(tables),
                    "--model", tiny_clip_dir, "--workers", "0", "--quiet"], env=env,
                   check=True, capture_output=True)
    folders = [tmp_path / "shard0", tmp_path / "shard1"]
    with replicas(folders, str(tables), env, tmp_path,
                  each=[["--shard", "0/2"], ["--shard", "1/2"]]) as shards:
        urls = ",".join(s.url for s in shards)
        with replicas([tmp_path / "entry"], None, env, tmp_path, "--shards", urls):
            for argv in (["a cat", "-k", "6"], ["a rocket", "-k", "3"], ["a cat", "-k", "20"]):
                merged = subprocess.run([*loupe, "search", *argv, "--json", "--db",
                                         str(tmp_path / "entry")], env=env, text=True,
                                        capture_output=True, timeout=120)
                whole = subprocess.run([*loupe, "search", *argv, "--json", "--db", str(db),
                                        "--no-server"], env=env, text=True,
                                       capture_output=True, timeout=120)
                assert merged.returncode == 0, merged.stderr
                got, want = json.loads(merged.stdout), json.loads(whole.stdout)
                assert len(got) == len(want)
                _same_ranking(got, want)
            # what cannot be merged exactly is refused, in one line
            out = subprocess.run([*loupe, "search", "a cat", "--sort", "newest", "--db",
                                  str(tmp_path / "entry")], env=env, text=True,
                                 capture_output=True, timeout=120)
            assert out.returncode == 1 and "relevance order only" in out.stderr
            assert out.stderr.count("\n") == 1
