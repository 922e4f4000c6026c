"""Text shown in pictures: read by the real PP-OCRv4 models bundled in
rapidocr-onnxruntime, stored, indexed (SQLite FTS5 trigram) and searched with ``ocr:``."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3

import numpy as np
import pytest
from helpers.signs import bounds, draw_sign, iou, photo, sign_photo, title_card_video
from helpers.toys import ToyEncoder
from PIL import Image, ImageOps

from loupe.indexer.errors import LoupeError
from loupe.indexer.ocr import load_reader
from loupe.indexer.ocr.update import update_texts
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search import Searcher, parse_query
from loupe.search.query_parse import OCR, modalities
from loupe.search.store import Store
from loupe.search.text.index import TextIndex
from loupe.search.text.normalise import allowed_edits, normalise, pieces, squash
from loupe.search.text.table import (
    DEFAULT_MIN_SCORE,
    index_path,
    ocr_config,
    set_ocr,
    text_rows,
    texts_of,
    upsert_texts,
)


@pytest.fixture(scope="module")
def reader():
    return load_reader()


def _words(q: str) -> list:
    return parse_query([q], is_file=lambda p: False)


def _search(db, *tokens: str, **kw):
    return Searcher(Store(str(db))).search(
        parse_query(list(tokens), is_file=lambda p: False), **kw)


# -- reading ---------------------------------------------------------------------------

def test_the_bundled_models_read_a_sign_on_a_real_photo_with_its_box(reader):
    im = photo("chelsea.png", (480, 320))
    drawn = draw_sign(im, "HOTEL LISBOA", (30, 200), 48)
    lines = reader.read(im)
    assert [x.text for x in lines] == ["HOTEL LISBOA"]
    assert lines[0].score > 0.9
    # The box lands on the text: it overlaps what was drawn, and the pixels inside it
    # are the white letters (outside it, almost none are).
    assert iou(bounds(lines[0].box), drawn) > 0.6
    left, top, right, bottom = (int(v) for v in bounds(lines[0].box))
    white = (np.asarray(im) > 245).all(axis=2)
    drawn_white = white[drawn[1]:drawn[3], drawn[0]:drawn[2]].sum()
    assert white[top:bottom, left:right].sum() > 0.9 * drawn_white


def test_boxes_are_in_full_size_upright_pixels(reader, tmp_path):
    # A camera JPEG stored sideways (EXIF orientation 6) at twice the size the reader
    # reads at: boxes come back in the upright, full-size picture's pixels.
    upright = photo("astronaut.png", (2400, 1600))
    drawn = draw_sign(upright, "GRAND CAFE", (300, 1000), 200)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    assert ImageOps.exif_transpose(Image.open(path)).size == upright.size
    store = Store(str(tmp_path / "db"), create=True)
    set_ocr(store, True)
    index_paths([str(path)], store, ToyEncoder(), IndexOptions(workers=0, progress=False))
    (lines,) = texts_of(store, [text_rows(store, ["id"])["id"][0].as_py()]).values()
    (cafe,) = [x for x in lines if x.text == "GRAND CAFE"]  # (the photo shows an R too)
    assert iou(bounds(cafe.box), drawn) > 0.6


def test_a_picture_without_text_has_no_lines_or_none_above_the_floor(reader):
    # The detector is the gate: nothing found, nothing recognised.
    assert reader.read(photo("astronaut.png")) == []
    assert reader.read(Image.new("RGB", (300, 200), "gray")) == []
    # Texture the detector takes for text reads as unsure scraps, below the floor
    # (DEFAULT_MIN_SCORE) that keeps lines out of search.
    assert all(x.score < DEFAULT_MIN_SCORE for x in reader.read(photo("coffee.png")))


def test_the_corpus_text_page_is_read(reader, corpus):
    text = " ".join(x.text for x in reader.read(Image.open(corpus / "photos" / "page.png")))
    assert "segmentation" in squash(text)
    assert "markers" in normalise(text)


# -- normalising and the fuzzy bound ---------------------------------------------------

def test_normalising_folds_case_accents_spaces_and_hyphens():
    assert normalise("Café  DU-Monde!") == "cafe du monde"
    assert squash("Hôtel Lisboa") == squash("HOTEL\nLIS-\nBOA") == "hotellisboa"
    assert squash("Region-basedsegmentation") == "regionbasedsegmentation"
    assert [allowed_edits(n) for n in (3, 5, 6, 11, 12, 30)] == [0, 0, 1, 1, 2, 2]
    assert pieces("lisboa", 1) == ["lis", "boa"]
    assert all(len(p) >= 3 for n in range(6, 40) for p in pieces("x" * n, allowed_edits(n)))


# -- an index that reads text ------------------------------------------------------------

@pytest.fixture(scope="module")
def ocr_db(tmp_path_factory):
    """Photos with signs, photos without text, and a video with a title card between two
    shots, indexed with OCR by the toy encoder (colour vectors)."""
    root = tmp_path_factory.mktemp("signs")
    media = root / "media"
    (media / "street").mkdir(parents=True)
    boxes = {
        "hotel": sign_photo(media / "hotel.png", "HOTEL LISBOA", xy=(30, 200)),
        "redbar": sign_photo(media / "street" / "redbar.png", "BAR", base=(200, 20, 20),
                             xy=(40, 60), size=(320, 240)),
        "bluebar": sign_photo(media / "street" / "bluebar.png", "BAR", base=(20, 20, 200),
                              xy=(40, 60), size=(320, 240)),
        "barcelona": sign_photo(media / "barcelona.png", "BARCELONA", base=(20, 200, 20),
                                xy=(20, 60), size=(400, 240)),
    }
    Image.new("RGB", (320, 240), (200, 20, 20)).save(media / "street" / "red.png")
    photo("coffee.png", (400, 300)).save(media / "coffee.png")
    title_card_video(media / "film.mp4", [(photo("astronaut.png"), 3.0), ("THE END", 4.0),
                                          (photo("chelsea.png"), 3.0)])
    db = root / "db"
    store = Store(str(db), create=True)
    set_ocr(store, True)
    report = index_paths([str(media)], store, ToyEncoder(), IndexOptions(workers=0,
                                                                          progress=False))
    return db, media, report, boxes


def test_a_sign_is_found_by_its_words_and_nothing_else_is(ocr_db):
    db, media, _, boxes = ocr_db
    (hit,) = _search(db, 'ocr:"hotel lisboa"')
    assert hit.path == str(media / "hotel.png")
    assert [x["text"] for x in hit.text] == ["HOTEL LISBOA"]
    assert iou(bounds(hit.text[0]["box"]), boxes["hotel"]) > 0.6
    assert hit.text_score == hit.score and 0.9 < hit.score <= 1
    assert _search(db, "ocr:lisboa")[0].path == str(media / "hotel.png")  # one word of it
    assert _search(db, "ocr:HÔTEL")[0].path == str(media / "hotel.png")  # case, accents
    assert _search(db, "ocr:zebra") == []


def test_one_wrong_letter_still_finds_a_long_word_but_a_short_one_must_be_exact(ocr_db):
    db, media, _, _ = ocr_db
    (hit,) = _search(db, "ocr:lisbon")  # one letter off: within the bound for 6 letters
    assert hit.path == str(media / "hotel.png")
    exact = _search(db, "ocr:lisboa")[0]
    assert hit.score < exact.score  # a fuzzy match ranks below an exact one
    assert [h.path for h in _search(db, "ocr:barcelena")] == [str(media / "barcelona.png")]
    assert _search(db, "ocr:lisbxx") == []  # two letters off: beyond the bound
    assert _search(db, "ocr:baz") == []  # three letters: exact only
    assert TextIndex(Store(str(db))).match("lisbon", fuzzy=False) == []


def test_pictures_without_text_are_never_returned(ocr_db):
    db, media, report, _ = ocr_db
    found = {h.path for q in ("ocr:bar", "ocr:hotel", 'ocr:"the end"') for h in
             _search(db, q, k=50)}
    assert str(media / "coffee.png") not in found
    assert str(media / "street" / "red.png") not in found
    assert report.texts_read >= 6 and report.texts_with_text == 5  # 4 signs, 1 title card


def test_a_whole_word_ranks_above_the_same_letters_inside_a_longer_one(ocr_db):
    db, media, _, _ = ocr_db
    paths = [os.path.basename(h.path) for h in _search(db, "ocr:bar", k=10)]
    assert set(paths) == {"redbar.png", "bluebar.png", "barcelona.png"}
    assert paths[-1] == "barcelona.png"


def test_a_title_card_is_found_at_its_time_and_read_once(ocr_db):
    db, media, report, _ = ocr_db
    (hit,) = _search(db, 'ocr:"the end"')
    assert hit.path == str(media / "film.mp4") and hit.kind == "frame"
    # On screen from 3 s to 7 s, frames sampled every second: the hit opens at 3 s, and
    # the card's four frames are one moment (they share one reading).
    assert hit.timestamp == pytest.approx(3.0, abs=0.15)
    assert [m.timestamp for m in hit.moments] == [hit.timestamp]
    assert hit.text[0]["timestamp"] == hit.timestamp and hit.text[0]["text"] == "THE END"
    assert report.texts_shared >= 5  # the card's frames and the still shots' after the first
    rows = text_rows(Store(str(db)), ["id", "timestamp", "read_from", "lines"]).to_pylist()
    card = [r for r in rows if r["lines"] and r["lines"][0]["text"] == "THE END"]
    assert len(card) == 4 and len({r["read_from"] for r in card}) == 1
    frames = _search(db, 'ocr:"the end"', group=False, k=10)
    assert sorted(round(h.timestamp) for h in frames) == [3, 4, 5, 6]  # --frames: each


def test_a_sign_the_camera_pans_across_is_one_moment_with_each_frames_own_box(tmp_path):
    # One shot, the sign sliding 40 px a second: every frame is read (the picture
    # changed) but the text did not, so they are one reading: one moment, at the start.
    import av

    base = photo("coffee.png", (480, 320))
    path = tmp_path / "pan.mp4"
    boxes = []
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 480, 320, "yuv420p"
        for i in range(40):
            im = base.copy()
            box = draw_sign(im, "PHARMACY", (20 + 4 * i, 120), 48)
            if i % 10 == 0:
                boxes.append(box)
            for p in s.encode(av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    store = Store(str(tmp_path / "db"), create=True)
    set_ocr(store, True)
    report = index_paths([str(path)], store, ToyEncoder(), IndexOptions(workers=0,
                                                                        progress=False))
    assert report.texts_read == 4 and report.texts_shared == 0
    rows = sorted(text_rows(store).to_pylist(), key=lambda r: r["timestamp"])
    assert len({r["read_from"] for r in rows}) == 1
    for r, drawn in zip(rows, boxes, strict=True):  # each frame keeps its own box
        (line,) = [x for x in r["lines"] if squash(x["text"]) == "pharmacy"]
        assert iou(bounds(line["box"]), drawn) > 0.6
    (hit,) = _search(tmp_path / "db", "ocr:pharmacy")
    assert [round(m.timestamp) for m in hit.moments] == [0]


def test_text_terms_combine_with_the_query_arithmetic_and_filters(ocr_db):
    db, media, _, _ = ocr_db
    # "red" ranks the pictures showing "bar": the red one first; the red picture
    # without text is left out.
    hits = _search(db, "red", "+", "ocr:bar")
    assert [os.path.basename(h.path) for h in hits] == ["redbar.png", "barcelona.png",
                                                        "bluebar.png"]
    assert str(media / "street" / "red.png") not in {h.path for h in hits}
    assert all(h.text and h.text[0]["query"] == "bar" for h in hits)
    # - ocr: leaves out what shows the text
    assert str(media / "street" / "redbar.png") not in {
        h.path for h in _search(db, "red", "-", "ocr:bar", k=20)}
    # two texts must both be shown
    assert _search(db, "ocr:bar", "+", "ocr:hotel") == []
    # filters apply
    assert {os.path.basename(h.path) for h in _search(db, "ocr:bar",
                                                      folder=str(media / "street"))} == {
        "redbar.png", "bluebar.png"}
    assert _search(db, 'ocr:"the end"', kind="photo") == []


def test_an_index_without_ocr_says_how_to_add_it(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    index_paths([str(tmp_path / "a.png")], store, ToyEncoder(), IndexOptions(workers=0,
                                                                             progress=False))
    with pytest.raises(LoupeError, match=r"index with --ocr \(`loupe index DIR --ocr`\)"):
        _search(tmp_path / "db", "ocr:hello")


def test_query_syntax():
    (t,) = _words('ocr:"hotel lisboa"')
    assert (t.kind, t.value, t.weight) == (OCR, "hotel lisboa", 1.0)
    terms = parse_query(["a night street", "+", "ocr:bar", "-", "ocr:'closed'"],
                        is_file=lambda p: False)
    assert [(t.kind, t.value, t.weight) for t in terms] == [
        ("text", "a night street", 1.0), (OCR, "bar", 1.0), (OCR, "closed", -1.0)]
    assert modalities(terms) == {"text"}
    assert modalities(_words("ocr:bar")) == set()
    with pytest.raises(LoupeError, match="takes no weight"):
        _words("2:ocr:bar")


# -- kept up to date, nothing lost -----------------------------------------------------

def test_later_runs_read_only_what_is_new_and_forget_what_is_gone(tmp_path):
    media = tmp_path / "m"
    media.mkdir()
    sign_photo(media / "a.png", "OPEN", base=(200, 200, 30), size=(320, 240), xy=(40, 60))
    store = Store(str(tmp_path / "db"), create=True)
    set_ocr(store, True)
    opts = IndexOptions(workers=0, progress=False)
    assert index_paths([str(media)], store, ToyEncoder(), opts).texts_read == 1
    assert index_paths([str(media)], store, ToyEncoder(), opts).texts_read == 0  # unchanged
    sign_photo(media / "b.png", "CLOSED", base=(30, 200, 200), size=(320, 240), xy=(40, 60))
    assert index_paths([str(media)], store, ToyEncoder(), opts).texts_read == 1  # only b
    assert [os.path.basename(h.path) for h in _search(tmp_path / "db", "ocr:closed")] == [
        "b.png"]
    # a changed file is read again; a deleted one's text is gone
    sign_photo(media / "a.png", "SHUT", base=(200, 200, 30), size=(320, 240), xy=(40, 60))
    os.remove(media / "b.png")
    assert index_paths([str(media)], store, ToyEncoder(), opts).texts_read == 1
    assert _search(tmp_path / "db", "ocr:closed") == []
    assert _search(tmp_path / "db", "ocr:open") == []
    assert [os.path.basename(h.path) for h in _search(tmp_path / "db", "ocr:shut")] == ["a.png"]
    assert len(text_rows(store)) == 1
    # turned off: everything read is dropped
    set_ocr(store, False)
    assert ocr_config(store) is None and not os.path.exists(index_path(store))
    with pytest.raises(LoupeError, match="--ocr"):
        _search(tmp_path / "db", "ocr:shut")


def test_the_text_index_is_rebuilt_from_the_table_when_out_of_step(ocr_db, tmp_path):
    db = tmp_path / "copy"
    shutil.copytree(ocr_db[0], db)
    store = Store(str(db))
    # deleted: rebuilt on the next search
    os.remove(index_path(store))
    assert _search(db, 'ocr:"hotel lisboa"')
    # a reading committed to the table without the index (a run killed between the two)
    row = text_rows(store).to_pylist()[0]
    row.update(lines=[{"text": "MIDNIGHT KEBAB", "score": 0.99, "box": [0, 0, 9, 0, 9, 9, 0, 9]}],
               read_from=row["id"])
    upsert_texts(store, [row])
    assert [h.id for h in _search(db, "ocr:kebab")] == [row["id"]]
    # a damaged file: rebuilt too
    with open(index_path(store), "wb") as f:
        f.write(b"not a database")
    assert [h.id for h in _search(db, "ocr:kebab")] == [row["id"]]


def test_a_killed_ocr_pass_keeps_what_it_read_and_the_next_run_reads_the_rest(tmp_path):
    media = tmp_path / "m"
    media.mkdir()
    for i, word in enumerate(["ALPHA", "BRAVO", "CHARLIE"]):
        sign_photo(media / f"{i}.png", word, base=(40 * i, 90, 160), size=(320, 240), xy=(30, 60))
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(media)], store, ToyEncoder(), IndexOptions(workers=0, progress=False))
    set_ocr(store, True)
    real = load_reader()
    calls = {"n": 0}

    class Dying:
        def read(self, image, size=None):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real.read(image, size)

    import loupe.indexer.ocr.update as update

    old = update.COMMIT_ITEMS
    update.COMMIT_ITEMS = 1
    try:
        with pytest.raises(KeyboardInterrupt):
            update_texts(store, lambda: Dying())
    finally:
        update.COMMIT_ITEMS = old
    assert len(text_rows(store)) == 2  # the two read before the kill were committed
    assert update_texts(store).read == 1  # the rest, not all again
    assert {squash(x.text) for ls in texts_of(store, text_rows(store, ["id"])["id"].to_pylist())
            .values() for x in ls} == {"alpha", "bravo", "charlie"}


def test_lines_below_the_confidence_floor_are_kept_but_not_searched(tmp_path):
    store = Store(str(tmp_path / "db"), create=True)
    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    set_ocr(store, True, min_score=0.8)
    index_paths([str(tmp_path / "a.png")], store, ToyEncoder(), IndexOptions(workers=0,
                                                                             progress=False))
    row = text_rows(store).to_pylist()[0]
    row["lines"] = [{"text": "FAINT WORDS", "score": 0.6, "box": [0] * 8},
                    {"text": "CLEAR WORDS", "score": 0.95, "box": [0] * 8}]
    upsert_texts(store, [row])
    assert _search(tmp_path / "db", "ocr:faint") == []
    assert [h.id for h in _search(tmp_path / "db", "ocr:clear")] == [row["id"]]
    assert [x.text for x in texts_of(store, [row["id"]])[row["id"]]] == [
        "FAINT WORDS", "CLEAR WORDS"]  # the panel lists both


def test_fuzzy_matching_misses_nothing_within_the_bound(tmp_path):
    # Random words with random edits within the bound are always found (the pieces
    # argument), next to many distractors; beyond the bound, exact text is not required
    # to be absent, so only "within" is checked.
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    store = Store(str(tmp_path / "db"), create=True)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    set_ocr(store, True)
    index_paths([str(tmp_path / "a.png")], store, ToyEncoder(), IndexOptions(workers=0,
                                                                             progress=False))
    base = text_rows(store).to_pylist()[0]
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(6, 16))) for _ in range(60)]
    rows = []
    for i, w in enumerate(words):
        rows.append({**base, "id": f"{i:024x}", "read_from": f"{i:024x}", "path": f"/x/{i}.png",
                     "lines": [{"text": f"zz {w} qq", "score": 0.9, "box": [0] * 8}]})
    upsert_texts(store, rows)
    index = TextIndex(store)
    for i, w in enumerate(words):
        q = list(w)
        for _ in range(allowed_edits(len(w))):
            at = rng.randrange(len(q))
            op = rng.choice("sid")
            if op == "s":
                q[at] = rng.choice(letters)
            elif op == "i":
                q.insert(at, rng.choice(letters))
            elif len(q) > 6:
                del q[at]
        query = "".join(q)
        if allowed_edits(len(query)) < allowed_edits(len(w)):
            continue  # the query got shorter than the word's bound
        assert f"{i:024x}" in {m.reading for m in index.match(query)}, (w, query)


def test_a_common_word_finds_every_picture_showing_it(tmp_path):
    # More matches than one read of the documents takes (500): none is dropped, and
    # each keeps its own items and times.
    store = Store(str(tmp_path / "db"), create=True)
    set_ocr(store, True)
    rows = [{"id": f"{i:024x}", "path": f"/x/{i // 3}.mp4", "timestamp": float(i % 3),
             "fingerprint": "f", "model": "m", "read_from": f"{i - i % 3:024x}",
             "problem": None, "read_at": 0.0,
             "lines": [{"text": f"OPEN {i} DAYS" if i % 3 == 0 else "x", "score": 0.9,
                        "box": [0] * 8}]} for i in range(3600)]
    upsert_texts(store, rows)
    found = TextIndex(store).match("open")
    assert len(found) == 1200
    assert all(len(m.items) == 3 and m.timestamps == [0.0, 1.0, 2.0] for m in found)
    assert {m.items[0] for m in found} == {f"{i:024x}" for i in range(0, 3600, 3)}


def test_the_index_file_is_sqlite_fts5_with_one_document_per_reading(ocr_db):
    store = Store(str(ocr_db[0]))
    con = sqlite3.connect(index_path(store))
    docs = con.execute("SELECT count(*) FROM docs").fetchone()[0]
    items = [r[0].split("|") for r in con.execute("SELECT items FROM docs")]
    con.close()
    assert docs == 5  # four signs and one title card (its four frames in one document)
    assert sorted(len(x) for x in items) == [1, 1, 1, 1, 4]


# -- the command line ------------------------------------------------------------------

def test_loupe_index_ocr_and_search_json_carry_the_matched_lines(tmp_path, tiny_clip_dir,
                                                                 capsys):
    from loupe.search.cli import main as loupe

    media = tmp_path / "m"
    media.mkdir()
    drawn = sign_photo(media / "hotel.png", "HOTEL LISBOA", xy=(30, 200))
    title_card_video(media / "film.mp4", [(photo("chelsea.png"), 2.0), ("OPENING", 3.0)])
    db = str(tmp_path / "db")
    assert loupe(["index", str(media), "--db", db, "--model", tiny_clip_dir, "--workers", "0",
                  "--quiet", "--ocr"]) == 0
    out = capsys.readouterr().out
    assert "read text in" in out and "with text" in out
    assert loupe(["search", 'ocr:"hotel lisboa"', "--db", db, "--json", "--no-server"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["path"] == str(media / "hotel.png") and hit["text"][0]["text"] == "HOTEL LISBOA"
    assert iou(bounds(hit["text"][0]["box"]), drawn) > 0.6
    assert loupe(["search", "ocr:opening", "--db", db, "--json", "--no-server"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["timestamp"] == pytest.approx(2.0, abs=0.15)
    assert hit["text"][0]["timestamp"] == hit["timestamp"]
    # words + text shown: the model ranks, the text filters; the line says what it shows
    assert loupe(["search", "a hotel", "+", "ocr:hotel", "--db", db, "--no-server"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "hotel.png" in line and 'shows "HOTEL LISBOA"' in line
    # turned off, a text query says how to turn it on again
    assert loupe(["index", str(media), "--db", db, "--quiet", "--no-ocr"]) == 0
    capsys.readouterr()
    assert loupe(["search", "ocr:hotel", "--db", db, "--no-server"]) != 0
    assert "--ocr" in capsys.readouterr().err
