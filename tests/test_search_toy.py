"""Index + search logic with the toy encoder: rankings worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.media import solid
from helpers.toys import ToyEncoder

from loupe.indexer.decode.results import DecodeSettings
from loupe.indexer.decode.worker import process_file_with
from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.engine import Searcher
from loupe.search.store import Store

OPTS = dict(workers=0, progress=False)


@pytest.fixture
def colours(tmp_path):
    root = tmp_path / "photos"
    solid(root / "red.png", (255, 0, 0))
    solid(root / "green.jpg", (0, 255, 0))
    solid(root / "blue.png", (0, 0, 255))
    solid(root / "sub" / "dark-red.png", (120, 0, 0))
    solid(root / "sub" / "white.png", (255, 255, 255))
    return root


def _index(root, tmp_path, toy, **kw):
    store = Store(str(tmp_path / "db"), create=True)
    report = index_paths([str(root)], store, toy, IndexOptions(**{**OPTS, **kw}))
    return store, report


def test_text_query_ranks_by_hand(colours, tmp_path, toy):
    store, report = _index(colours, tmp_path, toy)
    assert report.embedded == 5 and report.skipped == 0
    s = Searcher(store, toy)
    hits = s.search(["red"], k=5)
    names = [h.path.rsplit("/", 1)[1] for h in hits]
    # red (1,0,0,0) scores 1; dark red (0.47,0,0,0.53) normalised scores 0.66;
    # white (1,1,1,0)/sqrt3 scores 0.577; green and blue score 0.
    assert names[:3] == ["red.png", "dark-red.png", "white.png"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(0.4706 / np.hypot(0.4706, 0.5294), abs=2e-3)
    assert hits[2].score == pytest.approx(1 / np.sqrt(3), abs=1e-3)
    assert {h.kind for h in hits} == {"photo"}


def test_search_equals_brute_force(corpus, tmp_path, toy):
    store, _ = _index(corpus / "photos", tmp_path, toy)
    s = Searcher(store, toy)
    settings = DecodeSettings((toy.preprocess,))
    vecs, paths = [], []
    for p in sorted((corpus / "photos").iterdir()):
        r = process_file_with(str(p), p.stat().st_size, p.stat().st_mtime_ns, settings)
        if r.pixels is not None:
            vecs.append(toy.embed_pixels(r.pixels[0][None])[0])
            paths.append(str(p))
    vecs = np.array(vecs)
    for query in (["green"], ["blue", "+", "2:white"], ["red", "-", "black"]):
        q = 0
        hits = s.search(query, k=len(paths))
        sign, total = 1.0, np.zeros(4)
        for tok in query:
            if tok in "+-":
                sign = -1.0 if tok == "-" else 1.0
                continue
            w, word = (float(tok.split(":")[0]), tok.split(":")[1]) if ":" in tok else (1.0, tok)
            total += sign * w * toy.embed_texts([word])[0]
            sign = 1.0
        q = total / np.linalg.norm(total)
        expected = vecs @ q
        order = np.argsort(-expected, kind="stable")
        assert len(hits) == len(paths)
        got = {h.path: h.score for h in hits}
        for i in order:
            assert got[paths[i]] == pytest.approx(expected[i], abs=1e-5)
        # ranks agree wherever the brute-force scores are not tied
        ranked = [h.path for h in hits]
        for a, b in zip(order, order[1:], strict=False):
            if expected[a] - expected[b] > 1e-4:
                assert ranked.index(paths[a]) < ranked.index(paths[b])


def test_image_query_finds_itself_and_mixes(colours, tmp_path, toy):
    store, _ = _index(colours, tmp_path, toy)
    s = Searcher(store, toy)
    hits = s.search([str(colours / "blue.png")], k=1)
    assert hits[0].path.endswith("blue.png") and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # blue image minus "blue" plus "green": green wins
    hits = s.search([str(colours / "blue.png"), "-", "blue", "+", "green"], k=1)
    assert hits[0].path.endswith("green.jpg")


def test_filters_folder_and_kind(colours, tmp_path, toy):
    store, _ = _index(colours, tmp_path, toy)
    s = Searcher(store, toy)
    hits = s.search(["red"], k=10, folder=str(colours / "sub"))
    assert [h.path.rsplit("/", 1)[1] for h in hits] == ["dark-red.png", "white.png"]
    assert s.search(["red"], k=10, kind="video") == []
    assert len(s.search(["red"], k=10, kind="photo")) == 5
    # a folder whose name merely starts like another is not inside it
    assert s.search(["red"], k=10, folder=str(colours / "su")) == []


def test_query_encoder_must_match_index(colours, tmp_path, toy):
    store, _ = _index(colours, tmp_path, toy)
    other = ToyEncoder(size=16)  # different preprocessing -> different vectors
    with pytest.raises(LoupeError, match="preprocessing differs"):
        Searcher(store, other)
    with pytest.raises(LoupeError, match="preprocessing differs"):
        index_paths([str(colours)], store, other, IndexOptions(**OPTS))


def test_index_reflects_store_version(colours, tmp_path, toy):
    store, _ = _index(colours, tmp_path, toy)
    s = Searcher(store, toy)
    assert len(s.search(["red"], k=10)) == 5
    # another "process" indexes more; the searcher notices the new version
    solid(colours / "more.png", (255, 0, 0))
    index_paths([str(colours)], Store(store.dir), toy, IndexOptions(**OPTS))
    assert len(s.search(["red"], k=10)) == 6


def test_date_filters_by_file_time(tmp_path, toy, capsys):
    import datetime as dt
    import json
    import os

    from loupe.search.cli import main as loupe_main
    from loupe.search.cli.common import date_range

    root = tmp_path / "dated"
    days = {"old.png": "2020-01-01", "mid.png": "2021-06-15", "new.png": "2023-03-03"}
    for name, day in days.items():
        solid(root / name, (250, 10, 10))
        t = dt.datetime.strptime(day, "%Y-%m-%d").replace(hour=12).timestamp()
        os.utime(root / name, (t, t))
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, toy, IndexOptions(**OPTS))
    s = Searcher(store, toy)

    def names(**kw):
        return sorted(h.path.rsplit("/", 1)[1] for h in s.search(["red"], k=10, **kw))

    assert names() == ["mid.png", "new.png", "old.png"]
    since, until = date_range("2021-06-15", "2021-06-15")  # one whole day
    assert names(since=since, until=until) == ["mid.png"]
    assert names(since=date_range("2021-01-01", None)[0]) == ["mid.png", "new.png"]
    assert names(until=date_range(None, "2021-06-14")[1]) == ["old.png"]
    assert loupe_main(["search", "red", "--db", store.dir, "--since", "2022-01-01",
                       "--json"]) == 0
    assert [h["path"].rsplit("/", 1)[1] for h in json.loads(capsys.readouterr().out)] == [
        "new.png"]
    assert loupe_main(["search", "red", "--db", store.dir, "--until", "30/12/2020"]) == 1
    assert "--until wants a day" in capsys.readouterr().err
