"""`loupe search` through a running server (search/client.py, search/cli/search.py).

First the client against a small stand-in server (what it sends, how it reads every
answer, when it gives up and searches here), then the contract itself with a real
`loupe serve` on 127.0.0.1 over a tiny-model index: for words, arithmetic, a picture,
every filter, both outputs and the errors, stdout and the exit code through the server
equal those with --no-server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.exif import LENS_MODEL, MAKE, MODEL, TAKEN, exif_jpeg, gps
from helpers.media import solid
from helpers.served import free_port, stop
from helpers.signs import sign_photo

from loupe.indexer import LoupeError
from loupe.search import Term, client
from loupe.search.cli import main
from loupe.search.server_file import ServerInfo, announced, read_server, write_server

LOUPE = [sys.executable, "-m", "loupe.search.cli"]
HEAVY = ("numpy", "torch", "lancedb", "pyarrow", "PIL", "faiss", "open_clip")


def _hit(path: str, score: float, **more) -> dict:
    """A hit as Hit.as_dict() writes it (keys in its order)."""
    hit = {"id": f"id-{os.path.basename(path)}", "path": path, "kind": "photo",
           "score": score, "timestamp": None, "end": None, "moments": [], "taken_at": None,
           "taken_local": None, "lat": None, "lon": None, "alt": None, "camera_make": None,
           "camera_model": None, "lens": None, "place": None}
    hit.update(more)
    return hit


STUB_HITS = [
    _hit("/photos/a cat.jpg", 0.3125, taken_local="2021-06-15T14:00:00", place="Lisbon, PT"),
    _hit("/photos/clip.mp4", 0.25, kind="frame", timestamp=1.5,
         moments=[{"id": "m1", "timestamp": 1.5, "score": 0.25, "kind": "frame", "end": None},
                  {"id": "m2", "timestamp": 62.25, "score": 0.2, "kind": "frame",
                   "end": None}]),
    _hit("/photos/naïve\nname.png", -0.0625, taken_at=1623765600.0),
]


class Stub:
    """A stand-in for a server's /api/v1/search: records what it is sent, answers what a
    test sets (status, JSON or raw bytes, chunked or not)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.answer: object = {"hits": STUB_HITS, "column": "c", "seconds": 0.004,
                               "load_seconds": 0.0, "hidden": 2, "offset": 0, "k": 10}
        self.raw: bytes | None = None
        self.chunked = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                stub.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "body": json.loads(self.rfile.read(n) or b"null")})
                body = stub.raw if stub.raw is not None else json.dumps(stub.answer).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                if stub.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), 7):
                        part = body[i:i + 7]
                        self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub(tmp_path) -> Iterator[tuple[Stub, str]]:
    """A stand-in server and the index folder whose server file names it."""
    s = Stub()
    db = tmp_path / "db"
    db.mkdir()
    with announced(str(db), s.url, "the-key", "serve"):
        yield s, str(db)
    s.close()


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -- the light parser -------------------------------------------------------------------
def test_the_light_parser_is_the_one_query_uses_and_agrees_on_limits():
    from loupe.indexer import QUERY_MAX_PIXELS
    from loupe.search import query, query_parse

    assert query.parse_query is query_parse.parse_query and query.Term is query_parse.Term
    assert query.QueryLimits is query_parse.QueryLimits
    assert query_parse.QueryLimits().pixels == QUERY_MAX_PIXELS


def test_search_through_a_server_imports_nothing_heavy(stub):
    """The whole command, in a fresh interpreter, answered by the stand-in: numpy, torch,
    LanceDB, Pillow are never imported (the path a warm query takes)."""
    s, db = stub
    code = ("import sys; from loupe.search.cli import main; rc = main(sys.argv[1:]); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), rc)")
    p = subprocess.run([sys.executable, "-c", code, "search", "a", "+", "2:b", "--db", db],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[] 0"
    assert "through the server at " + s.url in p.stderr
    assert len(s.requests) == 1


# -- what the client sends ---------------------------------------------------------------
def test_the_request_carries_every_flag_and_the_files(stub, tmp_path, capsys, monkeypatch):
    s, db = stub
    pic = solid(tmp_path / "pics" / "beach.png", (10, 120, 200))
    monkeypatch.chdir(tmp_path)
    rc, out, err = _cli(capsys, "search", "2:dog", "+", "pics/beach.png", "-", "0.5:people",
                        "text:beach.png", "--db", db, "-k", "7", "--kind", "video",
                        "--frames", "--folder", "pics", "--since", "2020-01-01",
                        "--until", "2020-12-31", "--taken-since", "2019-06-01T14:00",
                        "--taken-until", "2021", "--or-modified", "--near", "Lisbon",
                        "--within", "3.5", "--camera", "canon", "--lens", "50mm",
                        "--sort", "newest", "--min-score", "0.1", "--where", "tag=dog",
                        "--where", "cat", "--hide-duplicates")
    assert rc == 0, err
    (req,) = s.requests
    assert req["path"] == "/api/v1/search"
    assert req["headers"]["Authorization"] == "Bearer the-key"
    assert req["headers"]["Host"] == s.url.removeprefix("http://")
    body = req["body"]
    assert body.pop("terms") == [
        {"kind": "text", "text": "dog", "weight": 2.0},
        {"kind": "image", "data": base64.b64encode(pic.read_bytes()).decode(),
         "name": "pics/beach.png", "weight": 1.0},
        {"kind": "text", "text": "people", "weight": -0.5},
        {"kind": "text", "text": "beach.png", "weight": 1.0},
    ]
    assert body == {"k": 7, "kind": "video", "frames": True,
                    "folder": str(tmp_path / "pics"), "since": "2020-01-01",
                    "until": "2020-12-31", "taken_since": "2019-06-01T14:00",
                    "taken_until": "2021", "or_modified": True, "near": "Lisbon",
                    "within": 3.5, "camera": "canon", "lens": "50mm", "sort": "newest",
                    "min_score": 0.1, "where": ["tag=dog", "cat"], "hide_duplicates": 0.95}


def test_a_sound_goes_as_audio(stub, tmp_path, capsys):
    from helpers.media import sine, write_wav

    s, db = stub
    wav = write_wav(tmp_path / "bell.wav", sine(440, 0.2))
    rc, _, err = _cli(capsys, "search", "--audio", str(wav), "--db", db)
    assert rc == 0, err
    assert s.requests[0]["body"]["terms"] == [
        {"kind": "audio", "data": base64.b64encode(wav.read_bytes()).decode(),
         "name": str(wav), "weight": 1.0}]


def test_the_answer_is_printed_as_a_local_search_prints_hits(stub, capsys):
    """The stand-in's hits, text and JSON: the printer a local search uses (one line per
    hit with its moments, when and where taken; JSON exactly the hits)."""
    s, db = stub
    rc, out, err = _cli(capsys, "search", "cat", "--db", db)
    assert rc == 0
    assert out.splitlines() == [
        "  1  0.3125  /photos/a cat.jpg  [2021-06-15 14:00:00, Lisbon, PT]",
        "  2  0.2500  /photos/clip.mp4  at 1.50s, 1:02.2",
        "  3  -0.0625  '/photos/naïve\\nname.png'  [2021-06-15 14:00:00 UTC]",
    ]
    assert err.startswith("(3 results, 2 near duplicates hidden in ")
    assert err.rstrip().endswith(f"ms through the server at {s.url})")
    rc, out, err = _cli(capsys, "search", "cat", "--db", db, "--json")
    assert rc == 0 and err == ""
    assert out == json.dumps(STUB_HITS, indent=2, ensure_ascii=False) + "\n"
    s.answer = {**s.answer, "hits": [], "hidden": 0}
    assert _cli(capsys, "search", "cat", "--db", db)[1] == "no results\n"


@pytest.mark.parametrize("argv", [["--no-server"], ["--model", "x"], ["--pretrained", "y"],
                                  ["--device", "cpu"], ["--precision", "fp32"],
                                  ["-k", "10001"]])
def test_flags_that_mean_here_skip_the_server(stub, argv, capsys):
    s, db = stub
    rc, _, err = _cli(capsys, "search", "cat", "--db", db, *argv)
    assert s.requests == []
    assert rc == 1 and "through the server" not in err  # (no index there to search here)


def test_the_cli_knows_how_many_hits_a_server_sends():
    from loupe.search.cli import search
    from loupe.ui.api.common import MAX_HITS

    assert search.SERVED_HITS == MAX_HITS


def test_a_bad_query_fails_before_any_server_is_asked(stub, capsys):
    s, db = stub
    for argv, message in ((["dog", "-"], "query ends with an operator"),
                          (["./no-such.jpg"], "query image not found: ./no-such.jpg"),
                          (["cat", "-k", "0"], "-k must be at least 1")):
        rc, out, err = _cli(capsys, "search", *argv, "--db", db)
        assert (rc, out) == (1, "") and err.startswith(f"loupe: error: {message}"), err
        assert err.count("\n") == 1
    assert s.requests == []


# -- how the client reads answers ----------------------------------------------------------
def _info(url: str, token: str | None = "k") -> ServerInfo:
    return ServerInfo(url, os.getpid(), socket.gethostname(), "serve", token, time.time())


def test_call_reads_plain_and_chunked_answers():
    s = Stub()
    try:
        assert client.call(_info(s.url), "POST", "/x", {"a": 1}) == s.answer
        s.chunked = True
        assert client.call(_info(s.url), "POST", "/x", {"a": 1}) == s.answer
        assert [r["body"] for r in s.requests] == [{"a": 1}, {"a": 1}]
        assert s.requests[-1]["headers"]["Authorization"] == "Bearer k"
        client.call(_info(s.url, token=None), "POST", "/x", {})
        assert "Authorization" not in s.requests[-1]["headers"]
    finally:
        s.close()


@pytest.mark.parametrize("status, said", [(400, True), (404, True), (409, True),
                                          (410, True), (401, False), (403, False),
                                          (413, False), (422, False), (429, False),
                                          (500, False), (503, False)])
def test_errors_are_said_only_when_they_are_about_the_request(status, said):
    s = Stub()
    s.status = status
    s.answer = {"error": {"status": status, "message": "--since wants a day like 2024-06-30"}}
    try:
        if said:
            with pytest.raises(LoupeError, match="^--since wants a day like"):
                client.call(_info(s.url), "POST", "/x", {})
        else:
            with pytest.raises(client.NoAnswer, match=f"HTTP {status}"):
                client.call(_info(s.url), "POST", "/x", {})
    finally:
        s.close()


@pytest.mark.parametrize("raw", [b"<html>not found</html>", b"", b"[1, 2]"])
def test_an_answer_that_is_not_the_api_is_no_answer(raw):
    s = Stub()
    s.status, s.raw = 404, raw
    try:
        with pytest.raises(client.NoAnswer):
            client.call(_info(s.url), "POST", "/x", {})
    finally:
        s.close()


def test_nobody_listening_or_not_http_is_no_answer():
    with pytest.raises(client.NoAnswer, match="did not answer"):
        client.call(_info(f"http://127.0.0.1:{free_port()}"), "POST", "/x", {})
    with socket.socket() as listener:  # accepts, says something that is not HTTP
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def babble():
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            conn.close()

        threading.Thread(target=babble, daemon=True).start()
        port = listener.getsockname()[1]
        with pytest.raises(client.NoAnswer, match="not an HTTP answer"):
            client.call(_info(f"http://127.0.0.1:{port}"), "POST", "/x", {})


def test_which_server_files_are_used(tmp_path, monkeypatch):
    db = str(tmp_path)
    assert client.find_server(db) is None  # none
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_server(db, ServerInfo("http://127.0.0.1:1", dead.pid, socket.gethostname(),
                                "serve", "k", time.time()))
    assert client.find_server(db) is None  # its process is gone
    elsewhere = ServerInfo("http://127.0.0.1:8765", 1, "another-machine", "serve", "k",
                           time.time())
    write_server(db, elsewhere)
    assert client.find_server(db) is None  # loopback of another machine
    reachable = ServerInfo("http://loupe.example:8765", 1, "another-machine", "serve", "k",
                           time.time())
    write_server(db, reachable)
    assert client.find_server(db) == reachable


def test_fallbacks_are_quiet_unless_debugging(tmp_path, capsys, monkeypatch):
    db = str(tmp_path)
    write_server(db, _info(f"http://127.0.0.1:{free_port()}"))
    assert client.search(db, [Term(1.0, "text", "cat")], k=1) is None
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("LOUPE_DEBUG", "1")
    assert client.search(db, [Term(1.0, "text", "cat")], k=1) is None
    err = capsys.readouterr().err
    assert err.startswith("loupe: note: the server at http://127.0.0.1:") and \
        err.endswith("searching here\n") and err.count("\n") == 1


def test_a_refused_query_file_is_searched_here(stub, tmp_path):
    """The server checks uploads by name and first bytes; what it says about one is not
    what a search here says, so the client searches here then."""
    s, db = stub
    pic = solid(tmp_path / "x.png", (1, 2, 3))
    s.status = 400
    s.answer = {"error": {"status": 400, "message": f"{pic} is not a picture Loupe takes"}}
    assert client.search(db, [Term(1.0, "image", str(pic))], k=1) is None
    s.answer = {"error": {"status": 400, "message": "--since wants a day like 2024-06-30"}}
    with pytest.raises(LoupeError, match="--since"):
        client.search(db, [Term(1.0, "image", str(pic))], k=1)


# -- the contract, with a real `loupe serve` -----------------------------------------------
@contextmanager
def serving(db: Path, work: Path, timeout: float = 120, ui: bool = False
            ) -> Iterator[ServerInfo]:
    """`loupe serve` (or with ``ui``, `loupe ui`) on 127.0.0.1 and a free port for ``db``
    until the block ends, once its API answers; its output goes to ``work/*.log``."""
    log_path = work / f"{'ui' if ui else 'serve'}-{db.name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    command = (["ui", "--port", str(free_port()), "--no-browser"] if ui else
               ["serve", "--port", "0"])
    proc = subprocess.Popen([*LOUPE, command[0], "--db", str(db), *command[1:]],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            info = read_server(str(db))
            if info is not None and info.pid == proc.pid:
                try:
                    client.call(info, "GET", "/api/v1/status", read_timeout=10)
                    break
                except (client.NoAnswer, LoupeError):
                    pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("loupe serve did not start:\n" + log_path.read_text())
            time.sleep(0.2)
        yield info
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_clip_dir, corpus):
    """Two tiny-model indexes, each with its server: a tagged one of photos (some with
    EXIF capture time, place, camera and lens), a video and a broken picture, and an
    untagged one of two photos."""
    from helpers.exif import tagged_video

    base = tmp_path_factory.mktemp("served")
    photos = base / "photos"
    photos.mkdir()
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "moon.png"):
        shutil.copy(corpus / "photos" / name, photos / name)
    (base / "sounds").mkdir()
    shutil.copy(corpus / "sounds" / "bell.oga", base / "sounds" / "bell.oga")
    exif_jpeg(photos / "trip" / "lisbon.jpg", (200, 40, 40), {MAKE: "Canon", MODEL: "EOS 5D"},
              {TAKEN: "2021:06:15 14:00:00", LENS_MODEL: "EF 50mm f/1.8"},
              gps((38, 43, 0), "N", (9, 8, 0), "W"))
    exif_jpeg(photos / "trip" / "paris.jpg", (40, 40, 200), {MAKE: "Apple", MODEL: "iPhone 12"},
              {TAKEN: "2019:03:02 09:30:00"}, gps((48, 51, 0), "N", (2, 21, 0), "E"))
    tagged_video(photos / "clip.mp4", {"creation_time": "2020-05-01T10:00:00Z"},
                 color=(20, 200, 20), frames=20, rate=10)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x01" * 64)
    sign_photo(photos / "sign.png", "HOTEL LISBOA", xy=(30, 200))  # read by --ocr
    labels = base / "labels.txt"
    labels.write_text("# template: a photo of {}\nred\ngreen\nblue\ncat\nrocket\nmoon\n")
    small = base / "small"
    small.mkdir()
    for name in ("horse.png", "coins.png"):
        shutil.copy(corpus / "photos" / name, small / name)
    dbs = base / "db", base / "db-small"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        assert main(["index", str(photos), "--db", str(dbs[0]), "--model", tiny_clip_dir,
                     "--workers", "0", "--quiet", "--tags", str(labels), "--ocr"]) == 0
        assert main(["index", str(small), "--db", str(dbs[1]), "--model", tiny_clip_dir,
                     "--workers", "0", "--quiet"]) == 0
    with serving(dbs[0], base) as big, serving(dbs[1], base) as little:
        yield {"base": base, "photos": photos, "db": dbs[0], "small": dbs[1],
               "servers": {str(dbs[0]): big, str(dbs[1]): little}}


def _through_server(archive, db: Path, argv: list[str], env: dict | None = None):
    p = subprocess.run([*LOUPE, "search", *argv, "--db", str(db)], capture_output=True,
                       text=True, timeout=120, cwd=archive["base"],
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr


def _here(archive, db: Path, argv: list[str], capsys, monkeypatch):
    monkeypatch.chdir(archive["base"])
    return _cli(capsys, "search", *argv, "--db", str(db), "--no-server")


def _a_tag(archive) -> str:
    from loupe.search.explain import tag_labels
    from loupe.search.store import Store

    return tag_labels(Store(str(archive["db"])))[0]


EMPTY = {"until past", "unknown tag"}  # what finds nothing (the others must find something)
QUERIES = {
    "words": ["a cat"],
    "words -k 3": ["a cat", "-k", "3"],
    "arithmetic": ["2:a rocket", "+", "moon", "-", "0.5:people"],
    "minus first": ["-", "dog", "cat"],
    "a picture": ["photos/rocket.jpg"],
    "picture minus words": ["1.5:photos/chelsea.png", "-", "text:cat", "-k", "4"],
    "forced text": ["text:photos/rocket.jpg"],
    "kind photo": ["sky", "--kind", "photo"],
    "kind video": ["green", "--kind", "video"],
    "frames": ["green", "--frames", "-k", "20"],
    "folder": ["sky", "--folder", "photos/trip"],
    "since/until": ["sky", "--since", "2000-01-01", "--until", "2100-12-31"],
    "until past": ["sky", "--until", "2001-01-01"],
    "taken since": ["sky", "--taken-since", "2020-01-01"],
    "taken until": ["sky", "--taken-until", "2020-01-01T00:00"],
    "near town": ["sky", "--near", "Lisbon"],
    "near lat,lon": ["sky", "--near", "48.85,2.35", "--within", "30"],
    "camera": ["sky", "--camera", "canon"],
    "lens": ["sky", "--lens", "50MM"],
    "sort newest": ["sky", "--sort", "newest"],
    "sort oldest or modified": ["sky", "--sort", "oldest", "--or-modified",
                                "--min-score", "-1"],
    "min score": ["sky", "--min-score", "-0.05"],
    "hide duplicates": ["sky", "--hide-duplicates", "-k", "3"],
    "hide duplicates at": ["sky", "--hide-duplicates", "0.2", "-k", "3"],
    "k 1": ["moon", "-k", "1"],
    "unknown tag": ["sky", "--where", "tag=unicorn"],
    "text shown": ['ocr:"hotel lisboa"'],
    "text shown, fuzzy": ["ocr:lisbon"],
    "words and text shown": ["a hotel", "+", "ocr:hotel", "--kind", "photo"],
    "words without a text": ["sky", "-", "ocr:hotel"],
}
ERRORS = {  # each said in one line (--json changes nothing: stdout stays empty)
    "bad day": ["sky", "--since", "2024-13-45"],
    "since after until": ["sky", "--since", "2024-02-01", "--until", "2024-01-01"],
    "bad taken day": ["sky", "--taken-since", "yesterday"],
    "unknown town": ["sky", "--near", "Nowhere-Atlantis"],
    "bad duplicate threshold": ["sky", "--hide-duplicates", "1.5"],
    "bad where": ["sky", "--where", "colour=red"],
    "missing file": ["photos/nope.jpg"],
    "broken picture": ["image:photos/broken.jpg"],
    "a sound with a picture model": ["--audio", "sounds/bell.oga"],
    "a video as a sound": ["--audio", "photos/clip.mp4"],
    "ends with an operator": ["sky", "+"],
}


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("name", list(QUERIES))
def test_through_the_server_equals_without(archive, name, as_json, capsys, monkeypatch):
    argv = [*QUERIES[name], *(["--json"] if as_json else [])]
    served = _through_server(archive, archive["db"], argv)
    here = _here(archive, archive["db"], argv, capsys, monkeypatch)
    assert served[:2] == here[:2], (served, here)
    assert here[0] == 0, here
    assert as_json or "through the server at " in served[2]
    empty = "[]\n" if as_json else "no results\n"
    assert (here[1] == empty) == (name in EMPTY), here[1]


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_through_the_server_equal_those_without(archive, name, capsys, monkeypatch):
    served = _through_server(archive, archive["db"], ERRORS[name])
    here = _here(archive, archive["db"], ERRORS[name], capsys, monkeypatch)
    assert served == here, (served, here)
    assert here[0] == 1 and here[1] == "" and here[2].startswith("loupe: error: ")
    assert here[2].count("\n") == 1


def test_where_a_tag_through_the_server(archive, capsys, monkeypatch):
    tag = _a_tag(archive)
    for argv in (["sky", "--where", f"tag={tag}"], ["sky", "--where", f"tag={tag}", "--json"]):
        served = _through_server(archive, archive["db"], argv)
        assert served[:2] == _here(archive, archive["db"], argv, capsys, monkeypatch)[:2]
        assert served[0] == 0 and served[1] != "no results\n"


def test_where_on_an_untagged_index_through_the_server(archive, capsys, monkeypatch):
    argv = ["horse", "--where", "tag=red"]
    served = _through_server(archive, archive["small"], argv)
    here = _here(archive, archive["small"], argv, capsys, monkeypatch)
    assert served == here and here[0] == 1 and here[2].count("\n") == 1
    assert "through the server" in _through_server(archive, archive["small"], ["horse"])[2]


def test_text_shown_on_an_index_without_ocr_through_the_server(archive, capsys,
                                                               monkeypatch):
    served = _through_server(archive, archive["small"], ["ocr:hotel"])
    here = _here(archive, archive["small"], ["ocr:hotel"], capsys, monkeypatch)
    assert served == here and here[0] == 1 and here[2].count("\n") == 1
    assert "--ocr" in here[2]


def test_each_index_is_answered_by_its_own_server(archive):
    for db in (archive["db"], archive["small"]):
        rc, out, err = _through_server(archive, db, ["a cat", "-k", "100", "--json"])
        assert rc == 0
        assert f"through the server at {archive['servers'][str(db)].url}" not in err  # (JSON)
        rc, out, err = _through_server(archive, db, ["a cat", "-k", "100"])
        assert err.rstrip().endswith(f"through the server at "
                                     f"{archive['servers'][str(db)].url})")
    small = {h["path"] for h in json.loads(_through_server(
        archive, archive["small"], ["a cat", "-k", "100", "--json"])[1])}
    assert {os.path.basename(p) for p in small} == {"horse.png", "coins.png"}


def test_a_stale_or_wrong_server_file_falls_back_and_answers(archive, tmp_path, capsys,
                                                            monkeypatch):
    """A server file whose process is gone, whose port nobody listens on, or whose key
    the server refuses: the search is done here, with the same answer, quietly (run
    in this process: a search here in a fresh one would load torch six times)."""
    db = tmp_path / "db"
    shutil.copytree(archive["small"], db)
    here = _here(archive, db, ["horse", "-k", "2"], capsys, monkeypatch)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = archive["servers"][str(archive["small"])]
    for info, why in (
            (ServerInfo(live.url, dead.pid, live.host, "serve", live.token, time.time()),
             None),  # (read_server ignores it: nothing to say)
            (ServerInfo(f"http://127.0.0.1:{free_port()}", os.getpid(), live.host, "serve",
                        live.token, time.time()), "did not answer (Connection refused)"),
            (ServerInfo(live.url, live.pid, live.host, "serve", "not-the-key", time.time()),
             "refused its key (HTTP 401)")):
        write_server(str(db), info)
        rc, out, err = _cli(capsys, "search", "horse", "-k", "2", "--db", str(db))
        assert (rc, out) == here[:2] and "through the server" not in err
        assert "loupe: note:" not in err
        monkeypatch.setenv("LOUPE_DEBUG", "1")
        rc, out, err = _cli(capsys, "search", "horse", "-k", "2", "--db", str(db))
        monkeypatch.delenv("LOUPE_DEBUG")
        assert (rc, out) == here[:2]
        notes = [line for line in err.splitlines() if line.startswith("loupe: note:")]
        assert notes == ([f"loupe: note: the server at {info.url} {why}; searching here"]
                         if why else []), err


@pytest.fixture(scope="module")
def sounds(tmp_path_factory, corpus):
    """A tiny ImageBind index of two sounds and a photo, with its server."""
    from helpers.tiny_models import make_tiny_imagebind_dir

    base = tmp_path_factory.mktemp("served-sound")
    model = make_tiny_imagebind_dir(str(base / "tiny-imagebind"))
    media = base / "media"
    media.mkdir()
    for name in ("bell.oga", "complete.oga"):
        shutil.copy(corpus / "sounds" / name, media / name)
    shutil.copy(corpus / "photos" / "coffee.png", media / "coffee.png")
    db = base / "db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        assert main(["index", str(media), "--db", str(db), "--model", model, "--workers", "0",
                     "--quiet"]) == 0
    with serving(db, base):
        yield {"base": base, "db": db}


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--audio", "media/bell.oga"], ["media/complete.oga"],
                                  ["a bell", "-", "0.5:media/bell.oga", "--kind", "audio"],
                                  ["media/bell.oga", "--frames", "-k", "20"],
                                  ["media/coffee.png", "+", "--audio", "media/bell.oga"]])
def test_a_sound_through_the_server_equals_without(sounds, argv, capsys, monkeypatch):
    for out in ([], ["--json"]):
        served = _through_server(sounds, sounds["db"], [*argv, *out])
        here = _here(sounds, sounds["db"], [*argv, *out], capsys, monkeypatch)
        assert served[:2] == here[:2] and here[0] == 0, (served, here)
        assert out or "through the server at " in served[2]


@pytest.mark.slow
def test_through_the_uis_server_equals_without(archive, tmp_path, capsys, monkeypatch):
    """`loupe ui` announces its server too: the CLI is answered by the UI's API."""
    db = tmp_path / "db"
    shutil.copytree(archive["small"], db)
    with serving(db, tmp_path, ui=True) as info:
        assert info.kind == "ui"
        for argv in (["horse"], ["horse", "--json"], ["photos/rocket.jpg", "-k", "1"],
                     ["horse", "--since", "2024-13-45"]):
            served = _through_server(archive, db, argv)
            here = _here(archive, db, argv, capsys, monkeypatch)
            assert served[:2] == here[:2], (served, here)
            assert served[0] or "--json" in argv or f"through the server at {info.url}" in \
                served[2]
