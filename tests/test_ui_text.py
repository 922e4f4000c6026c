"""Text shown in pictures (``ocr:`` terms) in the web UI and the JSON API, with the real
bundled PP-OCRv4 models: words rendered big onto corpus photos and a video's title card
are found by the API (hits carry the matched lines, their boxes and times) and by the
page's query box (quotes kept: ``ocr:"hotel lisboa"`` is one term), the page draws the
boxes where the text is (checked pixel by pixel on the pictures it sends), a video hit
opens at the moment the text is on screen, and the selected hit's panel lists the text
read in it. An index that does not read text says how to make it read it, and shows no
text panel.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.media import REPO
from helpers.toys import ToyEncoder
from PIL import Image, ImageDraw, ImageFont
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.store import Store
from loupe.ui import core, routes
from loupe.ui.api import ApiSettings, api_routes
from loupe.ui.api import models as m

pytest.importorskip("rapidocr_onnxruntime")
pytestmark = pytest.mark.timeout(600)

APP = str(REPO / "ui" / "app.py")
TIMEOUT = 120
MAGENTA = np.array(core.TEXT_BOX_COLOUR)
# name: (corpus photo, words rendered, where)
SIGNS = {"sign.png": ("coffee.png", "HOTEL LISBOA", (60, 40)),
         "bar.png": ("chelsea.png", "BAR", (40, 200))}
CARD = (2.0, 4.0)  # the video's title card is on screen from 2 s to 4 s


def _font():
    return ImageFont.load_default(size=48)


def _write(im: Image.Image, words: str, at: tuple[int, int], ink=(0, 0, 0),
           paper=(255, 255, 255)) -> tuple[int, int, int, int]:
    """Render ``words`` big on a plain panel; the words' own box (l, t, r, b)."""
    d = ImageDraw.Draw(im)
    box = d.textbbox(at, words, font=_font())
    d.rectangle((box[0] - 12, box[1] - 12, box[2] + 12, box[3] + 12), fill=paper)
    d.text(at, words, font=_font(), fill=ink)
    return box


def _video(path: Path, corpus: Path) -> tuple[int, int, int, int]:
    """6 s at 10 fps, 480x270: a photo, the title card CINEMA PARIS (white on black,
    2 s to 4 s), another photo. The card's words' box."""
    import av

    size = (480, 270)
    first = Image.open(corpus / "photos" / "coffee.png").convert("RGB").resize(size)
    last = Image.open(corpus / "photos" / "chelsea.png").convert("RGB").resize(size)
    card = Image.new("RGB", size, (0, 0, 0))
    box = _write(card, "CINEMA PARIS", (90, 110), ink=(255, 255, 255), paper=(0, 0, 0))
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        s.bit_rate = 2_000_000
        for i in range(60):
            t = i / 10
            im = card if CARD[0] <= t < CARD[1] else (first if t < CARD[0] else last)
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")))
        c.mux(s.encode(None))
    return box


def _pictures(root: Path, corpus: Path) -> dict[str, tuple[int, int, int, int]]:
    """The archive's pictures; {name: the words' box}."""
    root.mkdir(parents=True, exist_ok=True)
    boxes = {}
    for name, (base, words, at) in SIGNS.items():
        im = Image.open(corpus / "photos" / base).convert("RGB")
        boxes[name] = _write(im, words, at)
        im.save(root / name)
    Image.open(corpus / "photos" / "grass.png").convert("RGB").save(root / "plain.png")
    boxes["card.mp4"] = _video(root / "card.mp4", corpus)
    return boxes


def _index(root: Path, db: Path, ocr: bool) -> str:
    store = Store(str(db), create=True)
    if ocr:
        from loupe.search.text import set_ocr

        set_ocr(store, True)
    index_paths([str(root)], store, [ToyEncoder()], IndexOptions(workers=0, progress=False))
    return str(db)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus):
    """(root, the db that reads text, the words' boxes)."""
    root = tmp_path_factory.mktemp("archive")
    boxes = _pictures(root, corpus)
    db = _index(root, tmp_path_factory.mktemp("db") / "db", ocr=True)
    return root, db, boxes


@pytest.fixture(scope="module")
def unread(tmp_path_factory, corpus) -> str:
    """The same kind of archive, indexed without --ocr."""
    root = tmp_path_factory.mktemp("unread")
    _pictures(root, corpus)
    return _index(root, tmp_path_factory.mktemp("db") / "db", ocr=False)


def _inside(box8, words_box, slack: float = 8) -> bool:
    """The line's four corners lie around the rendered words' box."""
    xs, ys = box8[0::2], box8[1::2]
    left, top, right, bottom = words_box
    return (abs(min(xs) - left) <= slack and abs(max(xs) - right) <= slack
            and abs(min(ys) - top) <= slack and abs(max(ys) - bottom) <= slack)


def _name(hit: dict) -> str:
    return Path(hit["path"]).name


# -- the query box ------------------------------------------------------------------------
def test_the_box_keeps_quoted_text_together():
    terms = core.text_terms('ocr:"hotel lisboa" + 2:sunset - ocr:bar')
    assert [(t.weight, t.kind, t.value) for t in terms] == [
        (1.0, core.OCR, "hotel lisboa"), (2.0, "text", "sunset"), (-1.0, core.OCR, "bar")]
    assert [(t.kind, t.value) for t in core.text_terms("ocr:bar")] == [(core.OCR, "bar")]


def test_boxes_are_drawn_where_the_text_is_at_any_size():
    im = Image.new("RGB", (600, 400), (40, 40, 40))
    line = {"text": "X", "score": 1.0, "box": [100, 50, 300, 50, 300, 90, 100, 90],
            "timestamp": None, "item": "a"}
    for out in (core.draw_text_boxes(im, [line]),
                core.draw_text_boxes(im.resize((300, 200)), [line], (600, 400))):
        s = out.width / 600
        px = np.asarray(out)
        assert (px[round(70 * s), round(100 * s)] == MAGENTA).all()  # the left edge
        assert (px[round(50 * s), round(200 * s)] == MAGENTA).all()  # the top edge
        assert (px[round(70 * s), round(200 * s)] == (40, 40, 40)).all()  # inside: untouched
        assert (px[round(200 * s), round(200 * s)] == (40, 40, 40)).all()
    assert core.draw_text_boxes(im, []).tobytes() == im.tobytes()


# -- the API ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(archive):
    return TestClient(Starlette(routes=api_routes(ApiSettings(archive[1], "serve"))))


def _search(client, **body) -> dict:
    r = client.post("/api/v1/search", json=body)
    assert r.status_code == 200, r.text
    m.SearchResponse.model_validate(r.json())  # what the document says it sends
    return r.json()


def test_an_ocr_query_through_the_api_returns_the_lines_and_their_boxes(api, archive):
    _, _, boxes = archive
    for body in ({"q": 'ocr:"hotel lisboa"'}, {"terms": [{"kind": "ocr", "text": "Hotel Lisboa"}]},
                 {"q": 'ocr:"hotel lisbon"'}):  # one wrong letter in a long word
        hits = _search(api, k=5, **body)["hits"]
        assert [_name(h) for h in hits] == ["sign.png"], body
        hit = hits[0]
        assert 0 < hit["text_score"] <= 1
        (line,) = hit["text"]
        assert line["item"] == hit["id"] and line["timestamp"] is None
        assert 0.5 <= line["score"] <= 1 and len(line["box"]) == 8
        assert _inside(line["box"], boxes["sign.png"])
    # words rank, the ocr: term filters: the plain picture and the other sign are left out
    hits = _search(api, q="a photo + ocr:bar", k=10)["hits"]
    assert [_name(h) for h in hits] == ["bar.png"] and hits[0]["text"][0]["text"] == "BAR"
    hits = _search(api, q="a photo", terms=[{"kind": "ocr", "text": "bar", "weight": -1}],
                   k=10)["hits"]
    names = [_name(h) for h in hits]
    assert "bar.png" not in names and {"sign.png", "plain.png"} <= set(names)
    assert all(h["text"] is None for h in hits)  # an exclusion matches no line to show
    # a search without ocr: terms carries none
    hit = _search(api, q="a photo", k=1)["hits"][0]
    assert hit["text"] is None and hit["text_score"] is None


def test_a_video_hit_is_found_at_the_moment_the_text_is_on_screen(api, archive):
    _, _, boxes = archive
    (hit,) = _search(api, q='ocr:"cinema paris"', k=5)["hits"]
    assert _name(hit) == "card.mp4" and hit["kind"] == "frame"
    assert CARD[0] <= hit["timestamp"] < CARD[1]
    assert hit["moments"] and all(CARD[0] <= mo["timestamp"] < CARD[1]
                                  for mo in hit["moments"])
    assert hit["text"] and all(CARD[0] <= ln["timestamp"] < CARD[1] and
                               _inside(ln["box"], boxes["card.mp4"]) for ln in hit["text"])
    assert hit["id"] in {ln["item"] for ln in hit["text"]}


def test_bad_ocr_terms_and_an_index_without_ocr_are_told(api, unread):
    r = api.post("/api/v1/search", json={"terms": [{"kind": "ocr", "text": "  "}]})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = api.post("/api/v1/search", json={"terms": [{"kind": "ocr", "txt": "bar"}]})
    assert r.status_code == 422
    plain = TestClient(Starlette(routes=api_routes(ApiSettings(unread, "serve"))))
    r = plain.post("/api/v1/search", json={"q": "ocr:bar"})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "--ocr" in message and "\n" not in message


def test_ocr_terms_count_against_the_query_limits(api):
    """Text shown is looked up in the full-text index: an API client cannot make that
    unbounded work (QueryLimits: 32 terms, 1,000 characters of text)."""
    r = api.post("/api/v1/search", json={"terms": [{"kind": "ocr", "text": "abc " * 300}]})
    assert r.status_code == 400 and "too long" in r.json()["error"]["message"]
    r = api.post("/api/v1/search", json={"terms": [{"kind": "ocr", "text": f"bar{i}"}
                                                   for i in range(40)]})
    assert r.status_code == 400 and "too many terms" in r.json()["error"]["message"]
    r = api.post("/api/v1/search", json={"terms": [{"kind": "ocr", "text": "bar",
                                                    "weight": 2}]})
    assert r.status_code == 400 and "takes no weight" in r.json()["error"]["message"]


def test_the_openapi_document_describes_ocr_terms_and_text_lines(api):
    from openapi_spec_validator import validate

    doc = api.get("/api/v1/openapi.json").json()
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["OcrTerm"]["properties"]["kind"]["const"] == "ocr"
    assert {"text", "score", "box", "timestamp", "item"} <= set(
        schemas["TextLine"]["properties"])
    hit = schemas["Hit"]["properties"]
    assert "text" in hit and "text_score" in hit
    terms = schemas["SearchRequest"]["properties"]["terms"]["items"]
    assert "#/components/schemas/OcrTerm" in str(terms)


# -- the page -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def gated(monkeypatch):
    monkeypatch.setenv("LOUPE_UI_GATED", "1")


@pytest.fixture
def shown(monkeypatch) -> dict[str, bytes]:
    """{url: bytes} of every picture the page sends (Streamlit's media store)."""
    seen: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.get_url

    def spy(self, file_id):
        url = real(self, file_id)
        seen[url] = self.get_file(file_id).content
        return url

    monkeypatch.setattr(MemoryMediaFileStorage, "get_url", spy)
    return seen


def _page(db: str, monkeypatch) -> AppTest:
    monkeypatch.setattr(sys, "argv", [APP, "--db", db])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    return at


def _query(at: AppTest, text: str) -> AppTest:
    at.text_input(key="query").input(text).run()
    assert not at.exception, at.exception
    return at


def _pictures_shown(at: AppTest, shown: dict[str, bytes]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(shown[url])).convert("RGB")
            for im in at.image for url in im.value if url in shown]


def _on_box(picture: Image.Image, box8, scale: float) -> tuple[float, float]:
    """(share of magenta pixels along the box's top and bottom edges, share inside)."""
    px = np.asarray(picture).astype(int)
    xs, ys = [v * scale for v in box8[0::2]], [v * scale for v in box8[1::2]]
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)

    def magenta(y, x, near=2):  # within a few rows (lines are drawn inside the box)
        rows = px[max(0, round(y) - near):round(y) + near + 1, round(x)]
        return bool((np.abs(rows - MAGENTA) < 60).all(axis=-1).any())

    cols = np.linspace(left + 4 * scale, right - 4 * scale, 20)
    edge = [magenta(y, x) for x in cols for y in (top, bottom)]
    inside = [magenta((top + bottom) / 2, x, near=0) for x in cols]
    return float(np.mean(edge)), float(np.mean(inside))


def test_the_page_finds_the_sign_and_draws_its_box(archive, monkeypatch, shown):
    _, db, boxes = archive
    at = _query(_page(db, monkeypatch), 'ocr:"hotel lisboa"')
    assert not at.error, [e.value for e in at.error]
    hits = at.session_state["results"]
    assert [_name(h) for h in hits] == ["sign.png"]
    line = hits[0]["text"][0]
    assert any("HOTEL" in c.value and "reads" in c.value for c in at.caption)
    assert any("text match" in c.value for c in at.caption)  # ranked by the text alone
    # the tile: the thumbnail with the box on it
    (tile,) = [p for p in _pictures_shown(at, shown) if p.width < 600]
    edge, inside = _on_box(tile, line["box"], tile.width / 600)
    assert edge > 0.8 and inside < 0.2, (edge, inside)
    # selected: the picture at full size, with the box where the words were rendered
    at.button(key=f"sel-0-{hits[0]['id']}").click().run()
    assert not at.exception and not at.error
    (big,) = [p for p in _pictures_shown(at, shown) if p.size == (600, 400)]
    edge, inside = _on_box(big, line["box"], 1.0)
    assert edge > 0.8 and inside < 0.2, (edge, inside)
    left, top, right, bottom = boxes["sign.png"]
    px = np.asarray(big).astype(int)
    assert (np.abs(px[top - 30, (left + right) // 2] - MAGENTA) > 60).any()  # not above it
    # the panel lists what was read, with its confidence
    panel = [md.value for md in at.markdown if "Text read in it" in md.value]
    assert panel and "HOTEL" in panel[0] and "%" in panel[0]
    # the boxes can be hidden
    shown.clear()
    at.toggle(key="show_text_boxes").set_value(False).run()
    (big,) = [p for p in _pictures_shown(at, shown) if p.size == (600, 400)]
    assert _on_box(big, line["box"], 1.0)[0] < 0.2


def test_words_and_text_together_on_the_page(archive, monkeypatch):
    _, db, _ = archive
    at = _query(_page(db, monkeypatch), "a photo + ocr:bar")
    assert [_name(h) for h in at.session_state["results"]] == ["bar.png"]
    at = _query(at, "a photo - ocr:bar")
    names = [_name(h) for h in at.session_state["results"]]
    assert "bar.png" not in names and "sign.png" in names


def test_a_video_hit_opens_at_the_title_card(archive, monkeypatch, shown):
    _, db, boxes = archive
    at = _query(_page(db, monkeypatch), 'ocr:"cinema paris"')
    (hit,) = at.session_state["results"]
    at.button(key=f"sel-0-{hit['id']}").click().run()
    assert not at.exception and not at.error
    videos = at.get("video")
    assert videos and videos[0].proto.url == routes.file_url(hit["id"], None)
    assert videos[0].proto.start_time == int(hit["timestamp"])
    assert CARD[0] <= videos[0].proto.start_time < CARD[1]
    (frame,) = [p for p in _pictures_shown(at, shown) if p.size == (480, 270)]
    line = next(ln for ln in hit["text"] if ln["item"] == hit["id"])
    edge, inside = _on_box(frame, line["box"], 1.0)
    assert edge > 0.8 and inside < 0.2, (edge, inside)
    panel = [md.value for md in at.markdown if "Text read in it" in md.value]
    assert panel and "CINEMA" in panel[0]


def test_a_picture_found_by_words_lists_its_text_without_boxes(archive, monkeypatch, shown):
    _, db, _ = archive
    at = _query(_page(db, monkeypatch), "a photo")
    hit = next(h for h in at.session_state["results"] if _name(h) == "bar.png")
    at.button(key=f"sel-{at.session_state['results'].index(hit)}-{hit['id']}").click().run()
    assert not at.exception and not at.error
    panel = [md.value for md in at.markdown if "Text read in it" in md.value]
    assert panel and "BAR" in panel[0]
    assert not [t for t in at.toggle if t.key == "show_text_boxes"]  # nothing matched to draw
    plain = next(h for h in at.session_state["results"] if _name(h) == "plain.png")
    at.query_params["item"] = plain["id"]
    at.run()
    assert any("Text read in it:** none" in md.value for md in at.markdown)


def test_an_index_without_ocr_says_how_and_shows_no_text_panel(unread, monkeypatch):
    at = _query(_page(unread, monkeypatch), "ocr:bar")
    assert at.error and "--ocr" in at.error[0].value
    assert at.session_state["results"] == []
    at = _query(at, "a photo")
    hit = at.session_state["results"][0]
    at.button(key=f"sel-0-{hit['id']}").click().run()
    assert not at.exception and not at.error
    assert not [md for md in at.markdown if "Text read in it" in md.value]
