"""The JSON API through a real `loupe serve` on 127.0.0.1 (one per module), on a tiny
open_clip index built by the CLI: every route answers as the library does (search by
words, by an uploaded picture, arithmetic, filters, paging, more like this, records,
thumbnails, files with Range, tags, attribution, duplicates, status), grounding without
Kosmos-2 weights is a 503, the gate refuses and accepts as it should, errors are JSON
lines in the CLI's words, and the OpenAPI document is valid and lists every route. The
UI's own server answers the API too."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.exif import exif_jpeg
from helpers.media import solid
from helpers.served import free_port, serve_api, serve_ui

from loupe.search import CaptureFilter, Searcher, Store, read_server
from loupe.search.cli import main as loupe
from loupe.ui.api import models as m

pytestmark = pytest.mark.timeout(300)

COLOURS = {"red": (250, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 250),
           "yellow": (250, 250, 0), "purple": (128, 0, 128), "grey": (128, 128, 128)}
MAKE, MODEL, DATETIME_ORIGINAL = 0x010F, 0x0110, 0x9003


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_clip_dir):
    work = tmp_path_factory.mktemp("api")
    root = work / "archive"
    for name, rgb in COLOURS.items():
        solid(root / "colours" / f"{name}.png", rgb, size=(48, 40))
    (root / "copies").mkdir()
    shutil.copy(root / "colours" / "red.png", root / "copies" / "red-copy.png")
    exif_jpeg(root / "camera" / "canon.jpg", (30, 90, 200),
              {MAKE: "Canon", MODEL: "Canon EOS R5"}, {DATETIME_ORIGINAL: "2021:06:01 12:00:00"})
    db = str(work / "db")
    assert loupe(["index", str(root), "--db", db, "--model", tiny_clip_dir, "--workers", "0",
                  "--quiet", "--tags"]) == 0
    return work, root, db


@pytest.fixture(scope="module")
def served(indexed):
    work, _, db = indexed
    with serve_api(db, work, "--max-upload-mb", "1") as s:
        yield s


def call(served, method: str, path: str, body=None, headers: dict | None = None,
         key: str | None = "", raw: bytes | None = None):
    """(status, headers, body: JSON when JSON) of one request; ``key``: "" for the
    server's own, None for none."""
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key or served.key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    c = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    c.close()
    if payload and (r.getheader("content-type") or "").startswith("application/json"):
        payload = json.loads(payload)
    return r.status, {k.lower(): v for k, v in r.getheaders()}, payload


def search(served, **body) -> dict:
    status, _, answer = call(served, "POST", "/api/v1/search", body)
    assert status == 200, answer
    m.SearchResponse.model_validate(answer)  # what the document says it sends
    return answer


def error(answer) -> tuple[int, str]:
    assert set(answer) == {"error"} and set(answer["error"]) == {"status", "message"}
    message = answer["error"]["message"]
    assert message and "\n" not in message
    return answer["error"]["status"], message


def names(hits) -> list[str]:
    return [os.path.basename(h["path"]) for h in hits]


def picture(name: str, rgb) -> dict:
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (48, 40), rgb).save(buf, "PNG")
    return {"kind": "image", "name": name, "data": base64.b64encode(buf.getvalue()).decode()}


@pytest.fixture(scope="module")
def library(indexed):
    """The library's own searcher on the same index (what `loupe search` calls)."""
    return Searcher(Store(indexed[2]))


# -- search ------------------------------------------------------------------------------
def test_search_by_words_is_the_librarys_search(served, library):
    # q is the UI's box: split as a shell splits a command line ('"a red square"' is one
    # term, a red square three); terms are taken as given
    answer = search(served, q='"a red square"', k=5)
    want = [h.as_dict() for h in library.search(["a red square"], k=5)]
    assert answer["hits"] == want
    assert answer["k"] == 5 and answer["offset"] == 0 and answer["column"] == library.column
    same = search(served, terms=[{"kind": "text", "text": "a red square"}], k=5)
    assert same["hits"] == want
    words = search(served, q="a red square", k=5)
    assert words["hits"] == [h.as_dict() for h in library.search(["a", "red", "square"], k=5)]


def test_query_arithmetic_and_terms_are_the_clis(served, library):
    answer = search(served, q="red + 2:blue", terms=[{"kind": "text", "text": "green",
                                                      "weight": -1}], k=4)
    want = library.search(["red", "+", "2:blue", "-", "green"], k=4)
    assert answer["hits"] == [h.as_dict() for h in want]


def test_paging_is_a_slice_of_a_longer_k(served):
    full = search(served, q="colour", k=6, frames=True)["hits"]
    assert len(full) == 6
    page = search(served, q="colour", k=2, offset=2, frames=True)
    assert page["hits"] == full[2:4] and page["offset"] == 2


def test_search_by_an_uploaded_picture(served):
    answer = search(served, terms=[picture("query.png", COLOURS["red"])], k=3)
    assert set(names(answer["hits"][:2])) == {"red.png", "red-copy.png"}
    assert answer["hits"][0]["score"] > 0.99
    hidden = search(served, terms=[picture("query.png", COLOURS["red"])], k=3,
                    hide_duplicates=0.95)
    assert names(hidden["hits"]).count("red.png") + names(hidden["hits"]).count(
        "red-copy.png") == 1 and hidden["hidden"] >= 1


def test_filters_are_the_clis(served, indexed, library):
    _, root, _ = indexed
    only = search(served, q="square", k=10, folder=str(root / "colours"))
    assert names(only["hits"]) and all("/colours/" in h["path"] for h in only["hits"])
    canon = search(served, q="square", camera="canon", k=10)
    assert names(canon["hits"]) == ["canon.jpg"]
    assert canon["hits"][0]["camera_make"] == "Canon"
    taken = search(served, q="square", taken_since="2021-06-01", taken_until="2021-06-01")
    assert names(taken["hits"]) == ["canon.jpg"]
    assert search(served, q="square", taken_since="2022-01-01")["hits"] == []
    assert search(served, q="square", since="2000-01-01", until="2000-12-31")["hits"] == []
    best = search(served, q="square", k=10)["hits"]
    floor = best[2]["score"]
    assert search(served, q="square", k=10, min_score=floor)["hits"] == best[:3]
    assert search(served, q="square", kind="audio")["hits"] == []
    newest = search(served, q="square", k=10, sort="newest", or_modified=True)
    want = library.search(["square"], k=10, sort="newest",
                          capture=CaptureFilter.of(or_modified=True))
    assert newest["hits"] == [h.as_dict() for h in want]


def test_tag_filters_take_labels_as_where_does(served, indexed):
    _, _, db = indexed
    status, _, record = call(served, "GET", "/api/v1/items/" + search(
        served, q="red", k=1)["hits"][0]["id"])
    assert status == 200 and record["tags"], record
    label = record["tags"][0]["label"]
    by_label = search(served, q="square", k=10, where=[label])
    by_clause = search(served, q="square", k=10, where=[f"tag={label}"])
    assert by_label == {**by_clause, "seconds": by_label["seconds"],
                        "load_seconds": by_label["load_seconds"]}
    assert record["id"] in {h["id"] for h in by_label["hits"]}


@pytest.mark.parametrize("body, flags", [
    ({"since": "yesterday"}, ["--since", "yesterday"]),
    ({"taken_since": "June"}, ["--taken-since", "June"]),
    ({"near": "91,0"}, ["--near", "91,0"]),
    ({"hide_duplicates": 2.0}, ["--hide-duplicates", "2"]),
    ({"where": ["colour=red"]}, ["--where", "colour=red"]),
    ({"k": 0}, ["-k", "0"]),
    ({"within": -1, "near": "Lisbon"}, ["--near", "Lisbon", "--within", "-1"]),
])
def test_bad_flags_are_told_in_the_clis_words(served, indexed, capsys, body, flags):
    _, _, db = indexed
    status, _, answer = call(served, "POST", "/api/v1/search", {"q": "red", **body})
    code, message = error(answer)
    assert status == code == 400
    capsys.readouterr()
    assert loupe(["search", "red", "--db", db, *flags]) == 1
    assert capsys.readouterr().err.strip() == f"loupe: error: {message}"


def test_bad_bodies_are_json_errors(served):
    cases = [
        ({"q": "red", "k": "many"}, 422, "k: "),
        ({"q": "red", "colour": "red"}, 422, "colour: "),
        ({"terms": [{"kind": "image", "name": "a.png"}]}, 422, "terms.0."),
        ({"terms": [{"kind": "image", "name": "a.png", "data": "%%%"}]}, 422,
         "terms.0.data: not base64"),
        ({"q": "red", "sort": "random"}, 422, "sort: "),
        ({}, 400, "empty query"),
        ({"terms": [{"kind": "image", "name": "notes.png",
                     "data": base64.b64encode(b"just words").decode()}]}, 400,
         "notes.png is not a picture Loupe takes"),
        ({"q": "beach.jpg"}, 400, "the query box takes words only"),
        ({"q": "red", "k": 5, "offset": 10_000}, 400, "at most 10,000 hits"),
    ]
    for body, want, start in cases:
        status, _, answer = call(served, "POST", "/api/v1/search", body)
        code, message = error(answer)
        assert status == code == want and message.startswith(start), (body, answer)
    status, _, answer = call(served, "POST", "/api/v1/search", raw=b"{not json")
    assert status == 400 and error(answer)[1].startswith("the request body is not JSON")
    big = {"terms": [{"kind": "image", "name": "big.png", "data": "A" * (2 * 2**20)}]}
    status, _, answer = call(served, "POST", "/api/v1/search", big)
    assert status == 413 and "too large" in error(answer)[1]


# -- items -------------------------------------------------------------------------------
def _id(served, name: str) -> str:
    hits = search(served, q="square", k=20, frames=True)["hits"]
    return next(h["id"] for h in hits if os.path.basename(h["path"]) == name)


def test_an_items_record(served, indexed):
    _, root, _ = indexed
    item = _id(served, "canon.jpg")
    status, _, record = call(served, "GET", f"/api/v1/items/{item}")
    assert status == 200
    m.ItemRecord.model_validate(record)
    st = os.stat(root / "camera" / "canon.jpg")
    assert record["path"] == str(root / "camera" / "canon.jpg") and record["kind"] == "photo"
    assert record["size"] == st.st_size and record["mtime"] == st.st_mtime_ns / 1e9
    assert record["camera_model"] == "Canon EOS R5" and record["taken_local"].startswith(
        "2021-06-01T12:00")
    assert record["width"] == 64 and record["tags"]
    for bad in ("nothing", "../../etc"):
        status, _, answer = call(served, "GET", f"/api/v1/items/{bad}")
        assert status == 404 and error(answer)[0] == 404


def test_thumbnails_are_jpegs(served):
    item = _id(served, "blue.png")
    status, headers, data = call(served, "GET", f"/api/v1/items/{item}/thumbnail?side=32")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and max(im.size) == 32
    status, _, answer = call(served, "GET", f"/api/v1/items/{item}/thumbnail?side=99999")
    assert status == 422 and error(answer)[1].startswith("side: ")
    status, _, answer = call(served, "GET", "/api/v1/items/nothing/thumbnail")
    assert status == 404


def test_files_with_range_and_only_while_they_are_the_indexed_ones(served, indexed):
    _, root, _ = indexed
    path = root / "colours" / "green.png"
    item = _id(served, "green.png")
    data = path.read_bytes()
    status, headers, body = call(served, "GET", f"/api/v1/items/{item}/file")
    assert status == 200 and body == data and headers["content-type"] == "image/png"
    status, headers, body = call(served, "GET", f"/api/v1/items/{item}/file",
                                 headers={"Range": "bytes=0-3"})
    assert status == 206 and body == data[:4]
    assert headers["content-range"] == f"bytes 0-3/{len(data)}"
    status, headers, answer = call(served, "GET", f"/api/v1/items/{item}/file",
                                   headers={"Range": f"bytes={len(data) + 10}-"})
    assert status == 416 and error(answer)[0] == 416
    assert headers["content-range"] == f"bytes */{len(data)}"
    status, headers, body = call(served, "HEAD", f"/api/v1/items/{item}/file")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(data))
    st = os.stat(path)
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        status, _, answer = call(served, "GET", f"/api/v1/items/{item}/file")
        assert status == 409 and "changed since it was indexed" in error(answer)[1]
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    moved = path.with_name("away.bin")
    try:
        path.rename(moved)
        status, _, answer = call(served, "GET", f"/api/v1/items/{item}/file")
        assert status == 410 and "no longer there" in error(answer)[1]
    finally:
        moved.rename(path)
    assert call(served, "GET", f"/api/v1/items/{item}/file")[0] == 200


def test_more_like_this_pages_and_leaves_the_item_out(served, library):
    item = _id(served, "red.png")
    status, _, answer = call(served, "GET", f"/api/v1/items/{item}/similar?k=4")
    assert status == 200
    m.SearchResponse.model_validate(answer)
    assert item not in {h["id"] for h in answer["hits"]}
    assert names(answer["hits"])[0] == "red-copy.png"
    assert answer["hits"] == [h.as_dict() for h in library.more_like(item, 4).hits]
    _, _, page = call(served, "GET", f"/api/v1/items/{item}/similar?k=2&offset=2")
    assert page["hits"] == answer["hits"][2:4]
    status, _, bad = call(served, "GET", f"/api/v1/items/{item}/similar?k=0")
    assert status == 400 and error(bad)[1] == "-k must be at least 1"


def test_tags_and_attribution_of_a_picture(served):
    item = _id(served, "purple.png")
    status, _, tags = call(served, "GET", f"/api/v1/items/{item}/tags?top=3")
    assert status == 200, tags
    m.Tags.model_validate(tags)
    assert len(tags["tags"]) == 3 and tags["vocabulary"] == "everyday" and tags["stored"]
    shares = sum(t["share"] for t in tags["tags"]) + tags["other"]
    assert abs(shares - 100) < 0.01
    status, _, other = call(served, "GET", f"/api/v1/items/{item}/tags?vocabulary=art-movements")
    assert status == 200 and other["vocabulary"] == "art-movements"
    status, _, answer = call(served, "GET", f"/api/v1/items/{item}/tags?vocabulary=/etc/passwd")
    assert status == 400 and error(answer)[1].startswith("unknown vocabulary")
    status, _, style = call(served, "GET", f"/api/v1/items/{item}/attribution?top=2")
    assert status == 200, style
    m.Attribution.model_validate(style)
    assert len(style["artists"]) == 2 and len(style["movements"]) == 2
    assert style["references"] == []  # no collection registered


def test_duplicates_find_the_copy(served):
    status, _, report = call(served, "GET", "/api/v1/duplicates?threshold=0.99&limit=5")
    assert status == 200
    m.Duplicates.model_validate(report)
    assert report["exact_total"] == 1
    assert sorted(names(report["exact"][0]["items"])) == ["red-copy.png", "red.png"]
    status, _, answer = call(served, "GET", "/api/v1/duplicates?threshold=2")
    assert status == 400 and error(answer)[1] == (
        "duplicate threshold must be > 0 and <= 1 (cosine), not 2.0")


def test_grounding_without_kosmos2_weights_is_a_503(served):
    item = _id(served, "yellow.png")
    status, _, answer = call(served, "POST", f"/api/v1/items/{item}/grounding", {})
    code, message = error(answer)
    assert status == code == 503 and "Kosmos-2 weights" in message
    status, _, answer = call(served, "POST", "/api/v1/items/nothing/grounding",
                             {"prompt": "what"})
    assert status == 404


def test_status(served, indexed):
    _, _, db = indexed
    status, _, st = call(served, "GET", "/api/v1/status")
    assert status == 200
    m.Status.model_validate(st)
    assert st["db"] == db and st["server"] == "serve" and st["watch"] is None
    assert st["counts"] == {"photo": len(COLOURS) + 2} and st["items"] == len(COLOURS) + 2
    assert st["folders"] >= 3 and st["models"][0]["dim"] == 32
    assert st["version"] == Store(db).version()


# -- the gate ----------------------------------------------------------------------------
def test_without_the_key_nothing_is_answered(served):
    for path in ("/api/v1/status", "/api/v1/openapi.json", "/loupe/file/abc"):
        status, _, answer = call(served, "GET", path, key=None)
        assert status == 401, path
        if path.startswith("/api/"):
            assert error(answer)[0] == 401 and "API key" in error(answer)[1]
    status, _, answer = call(served, "GET", "/api/v1/status", key="a-wrong-key")
    assert status == 401 and "Wrong key" in error(answer)[1]
    status, _, answer = call(served, "POST", "/api/v1/search", {"q": "red"},
                             headers={"Origin": "http://evil.example"})
    assert status == 403 and error(answer)[1].startswith("Refused: pages from")
    status, _, answer = call(served, "GET", "/api/v1/status",
                             headers={"Host": f"rebound.example:{served.port}"})
    assert status == 403
    assert call(served, "GET", "/api/v1/status")[0] == 200


def test_unknown_routes_and_methods_are_json(served):
    status, _, answer = call(served, "GET", "/api/v1/nothing")
    assert status == 404 and error(answer)[1].startswith("no such route")
    status, headers, answer = call(served, "GET", "/api/v1/search")
    assert status == 405 and "POST" in error(answer)[1] and headers["allow"] == "POST"


def test_the_openapi_document_is_valid_and_lists_every_route(served):
    from openapi_spec_validator import validate

    status, _, doc = call(served, "GET", "/api/v1/openapi.json")
    assert status == 200
    validate(doc)
    routes = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == {
        ("/api/v1/status", "get"), ("/api/v1/search", "post"),
        ("/api/v1/items/{item_id}", "get"), ("/api/v1/items/{item_id}/thumbnail", "get"),
        ("/api/v1/items/{item_id}/file", "get"), ("/api/v1/items/{item_id}/file", "head"),
        ("/api/v1/items/{item_id}/similar", "get"),
        ("/api/v1/items/{item_id}/grounding", "post"),
        ("/api/v1/items/{item_id}/tags", "get"), ("/api/v1/items/{item_id}/attribution", "get"),
        ("/api/v1/duplicates", "get"), ("/api/v1/openapi.json", "get")}
    for name in ("SearchRequest", "SearchResponse", "ItemRecord", "Status", "Grounding",
                 "Tags", "Attribution", "Duplicates", "Error"):
        assert name in doc["components"]["schemas"], name
    # every path the document names answers (no route it lists is missing)
    for path, method in routes:
        real = path.replace("{item_id}", "nothing")
        got = call(served, method.upper(), real, {} if method == "post" else None)[0]
        assert got not in (405,) and not (got == 404 and "{item_id}" not in path), (path, got)


def test_the_ui_server_answers_the_api_with_its_key(indexed, served):
    work, _, db = indexed
    key = "api-key-" + "y" * 35
    with serve_ui(db, work, env=dict(os.environ, LOUPE_API_KEY=key)) as ui:
        ui.key = key
        answer = search(ui, q="a red square", k=3)
        assert answer["hits"] == search(served, q="a red square", k=3)["hits"]
        status, _, st = call(ui, "GET", "/api/v1/status")
        assert status == 200 and st["server"] == "ui"
        status, _, answer = call(ui, "GET", "/api/v1/status", key=None)
        assert status == 401 and error(answer)[0] == 401


def test_the_pages_and_the_api_share_one_search_service(indexed):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from loupe.ui.api import ApiSettings, api_routes
    from loupe.ui.resources import search_service
    from loupe.ui.services import shared_search

    _, _, db = indexed
    client = TestClient(Starlette(routes=api_routes(ApiSettings(db, "ui"))))
    assert client.post("/api/v1/search", json={"q": "red", "k": 1}).status_code == 200
    assert search_service(db) is shared_search(db)  # the page's is the API's


@contextmanager
def _loupe_ui(indexed, tmp_path):
    """`loupe ui` (the command, in its own process group) on a copy of the module's index,
    once its API answers: (process, its server file, a handle for call()). Whatever is
    left of its group is killed afterwards."""
    work, _, db = indexed
    mine = str(tmp_path / "db")  # a copy: the module's server keeps its own file
    shutil.copytree(db, mine, ignore=shutil.ignore_patterns(".server.json"))
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(work / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "loupe.search.cli", "ui", "--db", mine,
                             "--port", str(port), "--no-browser"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            info = read_server(mine)
            if info is not None:
                ui = type("UI", (), {"port": port, "key": info.token})
                try:
                    if call(ui, "GET", "/api/v1/status")[0] == 200:
                        break
                except OSError:
                    pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.3)
        yield proc, info, ui
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        proc.wait()


def test_loupe_ui_announces_its_api_in_the_server_file(indexed, tmp_path):
    mine = str(tmp_path / "db")
    with _loupe_ui(indexed, tmp_path) as (proc, info, ui):
        assert info.kind == "ui" and info.url == f"http://127.0.0.1:{ui.port}"
        assert info.pid == proc.pid and info.token
        status, _, st = call(ui, "GET", "/api/v1/status")
        assert st["server"] == "ui" and st["db"] == mine
        assert call(ui, "GET", "/api/v1/status", key="wrong")[0] == 401
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: `loupe ui` and its server
        proc.wait(30)
    assert read_server(mine) is None and not os.path.exists(os.path.join(mine, ".server.json"))


def _one_red_photo_indexed(tmp_path, model: str) -> tuple[Path, str]:
    root, db = tmp_path / "archive", str(tmp_path / "db")
    solid(root / "red.png", COLOURS["red"])
    assert loupe(["index", str(root), "--db", db, "--model", model, "--workers", "0",
                  "--quiet"]) == 0
    return root, db


def _watching_picks_up_a_new_photo(server, root: Path, kind: str) -> None:
    """The server says it watches ``root``, and a photo added there becomes searchable."""
    status, _, st = call(server, "GET", "/api/v1/status")
    assert status == 200 and st["server"] == kind and st["watch"] is not None
    assert [r["path"] for r in st["watch"]["roots"]] == [str(root)]
    solid(root / "blue.png", COLOURS["blue"])
    deadline = time.monotonic() + 60
    while call(server, "GET", "/api/v1/status")[2]["items"] < 2:
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.3)
    assert "blue.png" in names(search(server, q="square", k=5)["hits"])
    assert call(server, "GET", "/api/v1/status")[2]["watch"]["runs"] >= 1


def test_serve_watch_keeps_the_index_up_to_date_and_says_so(tmp_path, tiny_clip_dir):
    root, db = _one_red_photo_indexed(tmp_path, tiny_clip_dir)
    with serve_api(db, tmp_path, "--watch", "--poll", "0.5") as s:
        _watching_picks_up_a_new_photo(s, root, "serve")


def test_ui_watch_runs_the_watcher_in_the_server_and_reports_it(tmp_path, tiny_clip_dir):
    root, db = _one_red_photo_indexed(tmp_path, tiny_clip_dir)
    key = "api-key-" + "w" * 35
    with serve_ui(db, tmp_path, env=dict(os.environ, LOUPE_API_KEY=key), watch=True,
                  poll=0.5) as ui:
        ui.key = key
        _watching_picks_up_a_new_photo(ui, root, "ui")


def test_serving_beyond_loopback_needs_a_password(indexed, capsys):
    _, _, db = indexed
    capsys.readouterr()
    assert loupe(["serve", "--db", db, "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "--password-file" in err and "Traceback" not in err


def test_sigterm_stops_the_server_and_takes_its_file_away(served, indexed):
    _, _, db = indexed
    info = read_server(db)
    assert info.kind == "serve" and info.url == served.url and info.pid == served.proc.pid
    assert oct(os.stat(os.path.join(db, ".server.json")).st_mode & 0o777) == "0o600"
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0
    assert not os.path.exists(os.path.join(db, ".server.json"))
    line = served.log.read_text()
    assert f"at {served.url}/api/v1" in line and ".server.json" in line


def test_poll_goes_with_watch_for_the_servers_too(indexed, capsys):
    _, _, db = indexed
    for command in ("serve", "ui"):
        capsys.readouterr()
        assert loupe([command, "--db", db, "--poll", "2", "--no-browser"]
                     if command == "ui" else [command, "--db", db, "--poll", "2"]) == 1
        assert capsys.readouterr().err.strip() == "loupe: error: --poll goes with --watch"


def test_stopping_loupe_ui_with_sigterm_stops_its_server_too(indexed, tmp_path):
    """`kill PID` of `loupe ui` alone (not its process group) leaves no server behind."""
    mine = str(tmp_path / "db")
    with _loupe_ui(indexed, tmp_path) as (proc, _, ui):
        proc.send_signal(signal.SIGTERM)  # this process only
        assert proc.wait(30) == 0
        assert read_server(mine) is None
        with pytest.raises(OSError):  # nobody listens there any more
            call(ui, "GET", "/api/v1/status")
