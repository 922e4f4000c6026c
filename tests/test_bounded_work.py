"""Bounded work per viewer (issue 16 item 3; /work/shared/AUDIT.md findings 4 and 5).

Query pictures are opened only as the formats a picture can be (by their magic bytes,
never PostScript, so Ghostscript never runs), refused by their header when over the
pixel limit; query sounds are cut to their first 60 s and embedded in bounded batches;
queries have at most 32 terms and 1,000 characters of words; an upload is decoded and
embedded outside the search lock, so that other sessions keep searching; heavy actions
are capped per process and answer "busy" instead of freezing the page.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import time
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.media import REPO, sine, solid, write_wav
from helpers.toys import SoundToyEncoder, ToyEncoder
from PIL import Image

from loupe.indexer.encoders.base import SOUND_BATCH
from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search import QueryLimits, Term, parse_query, query_vector
from loupe.search.store import Store
from loupe.ui import core
from loupe.ui.services import Busy, GroundingService, HeavyWork, SearchService

TESTS = str(Path(__file__).resolve().parent)
APP = str(REPO / "ui" / "app.py")

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
       b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n")
PS = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n%%EOF\n"
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def _png(color, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _run(script: str, *args: str, path_first: Path | None = None) -> str:
    """Run ``script`` in a fresh interpreter (Pillow's Ghostscript lookup is per process);
    ``path_first``: a folder put first on PATH."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, text=True,
                          capture_output=True, timeout=120, cwd=TESTS)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- pictures: formats ------------------------------------------------------------------
@pytest.fixture
def fake_gs(tmp_path) -> tuple[Path, Path]:
    """(a folder holding a fake `gs` that leaves a marker file when run, the marker)."""
    bin_dir, marker = tmp_path / "bin", tmp_path / "gs-was-run"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 0\n')
    gs.chmod(0o755)
    return bin_dir, marker


HOSTILE_QUERY = """
import io, sys
from pathlib import Path
sys.path.insert(0, ".")
from helpers.toys import ToyEncoder
from loupe.indexer.encoders.spec import ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.indexer.media.image import ImageDecodeError, decode_image, upright_image_file
from loupe.search import Term, query_vector
from loupe.ui import core

path, name = sys.argv[1], sys.argv[2]
data = Path(path).read_bytes()
try:  # the UI's upload
    with core.upload_terms([core.Upload("image", name, data)]) as terms:
        query_vector(terms, ToyEncoder())
    print("upload: accepted")
except LoupeError as e:
    print("upload:", e)
try:  # the library's query path (`loupe search x.jpg`, an API)
    query_vector([Term(1.0, "image", path)], ToyEncoder())
    print("query: accepted")
except LoupeError as e:
    print("query:", e)
for what, decode in (("index", lambda: decode_image(data, ImagePreprocess(size=(8, 8)))),
                     ("thumbnail", lambda: upright_image_file(path))):
    try:  # an indexed file swapped for PostScript reaches these
        decode()
        print(what + ": accepted")
    except ImageDecodeError as e:
        print(what + ":", e)
from PIL import Image
try:  # defence in depth: Pillow itself, asked directly, cannot run Ghostscript
    Image.open(io.BytesIO(data)).load()
    print("pillow: decoded")
except Exception as e:
    print("pillow:", type(e).__name__, e)
"""


@pytest.mark.parametrize("content, name", [(EPS, "holiday.jpg"), (PS, "scan.png"),
                                           (PDF, "page.png")], ids=["eps", "ps", "pdf"])
def test_postscript_or_pdf_named_as_a_picture_never_starts_ghostscript(
        tmp_path, fake_gs, content, name):
    bin_dir, marker = fake_gs
    path = tmp_path / name
    path.write_bytes(content)
    if content is not PDF:  # the check can fail: plain Pillow does run this `gs`
        _run("import sys\nfrom PIL import Image\ntry:\n    Image.open(sys.argv[1]).load()\n"
             "except Exception:\n    pass\n", str(path), path_first=bin_dir)
        assert marker.exists(), "the fake gs was not found: this test would prove nothing"
        marker.unlink()
    out = _run(HOSTILE_QUERY, str(path), name, path_first=bin_dir)
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert "is not a picture Loupe takes" in lines["upload"], out
    assert name in lines["upload"] and "JPEG, PNG, WebP, GIF, TIFF or BMP" in lines["upload"]
    assert "not a picture Loupe reads here" in lines["query"], out
    assert "not a picture Loupe reads here" in lines["index"], out
    assert "not a picture Loupe reads here" in lines["thumbnail"], out
    assert not lines["pillow"].startswith("decoded"), out
    assert not marker.exists(), f"Ghostscript was started: {marker.read_text()}"


def test_formats_the_query_path_takes_and_refuses(tmp_path):
    from loupe.indexer.encoders.spec import ImagePreprocess
    from loupe.indexer.media.image import decode_image

    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"):
        path = tmp_path / f"q.{fmt.lower()}"
        Image.new("RGB", (20, 10), (250, 0, 0)).save(path, fmt)
        vec = query_vector([Term(1.0, "image", str(path))], ToyEncoder())
        assert vec[0] > 0.95, fmt  # red
    # an indexed-only format: the indexer reads it, a query picture may not be it
    ppm = tmp_path / "q.ppm"
    Image.new("RGB", (20, 10), (250, 0, 0)).save(ppm, "PPM")
    assert decode_image(ppm.read_bytes(), ImagePreprocess(size=(8, 8))).width == 20
    with pytest.raises(LoupeError, match="PPM content.*takes BMP, GIF, JPEG, PNG, TIFF"):
        query_vector([Term(1.0, "image", str(ppm))], ToyEncoder())
    # Pillow's other decoders (TGA has no magic bytes: Pillow would take it) stay shut
    tga = tmp_path / "q.jpg"
    Image.new("RGB", (20, 10)).save(tga, "TGA")
    with pytest.raises(LoupeError, match="not a picture format"):
        query_vector([Term(1.0, "image", str(tga))], ToyEncoder())


# -- pictures: the pixel limit ----------------------------------------------------------
def bomb_png(path: Path, width: int, height: int) -> Path:
    """A 16-bit greyscale PNG of zeros: a file of some 100 KB that decodes to
    2 bytes a pixel (and more in the conversions after)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


BOMB_QUERY = """
import resource, sys
sys.path.insert(0, ".")
from helpers.toys import ToyEncoder
from loupe.indexer.errors import LoupeError
from loupe.search import query_vector
from loupe.ui import core

def upload(name, data):
    with core.upload_terms([core.Upload("image", name, data)]) as terms:
        return query_vector(terms, ToyEncoder())

upload("warm.png", open(sys.argv[2], "rb").read())  # every module and plugin loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    upload("bomb.png", open(sys.argv[1], "rb").read())
    print("decoded")
except LoupeError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)  # KiB
"""


def test_a_16bit_png_bomb_over_the_upload_limit_is_refused_before_decoding(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png", 8000, 8000)  # 64 MP: under the index's 200
    assert bomb.stat().st_size < 200_000
    small = tmp_path / "small.png"
    small.write_bytes(_png((1, 2, 3)))
    message, grown = _run(BOMB_QUERY, str(bomb), str(small)).strip().splitlines()
    assert "8000x8000 = 64,000,000 pixels is over the limit of 50,000,000" in message
    # A decode would hold 128 MB for the 16-bit pixels alone (1.6 GB measured before
    # the limit, with the float conversion).
    assert int(grown) < 40_000_000, f"peak memory grew by {int(grown):,} bytes"


def test_the_upload_pixel_limit_is_the_apps_argument():
    args = core.parse_args(["--db", "x", "--max-upload-pixels", "1000",
                            "--max-sound-seconds", "5"])
    assert args.query_limits == QueryLimits(pixels=1000, sound_seconds=5.0)
    assert core.parse_args(["--db", "x"]).query_limits == QueryLimits()


def test_a_query_picture_within_the_limit_is_decoded_and_one_over_it_is_not(tmp_path):
    path = tmp_path / "q.png"
    Image.new("RGB", (100, 50), (0, 0, 250)).save(path)
    terms = [Term(1.0, "image", str(path))]
    assert query_vector(terms, ToyEncoder(), QueryLimits(pixels=5000))[2] > 0.95
    with pytest.raises(LoupeError, match="100x50 = 5,000 pixels is over the limit of 4,999"):
        query_vector(terms, ToyEncoder(), QueryLimits(pixels=4999))


def test_decodes_at_once_leave_pillows_own_limit_as_it_was():
    from loupe.indexer.media import image

    before = Image.MAX_IMAGE_PIXELS
    first, second = image._pillow_limit_lifted(), image._pillow_limit_lifted()
    first.__enter__()
    second.__enter__()  # another session's upload decodes meanwhile
    assert Image.MAX_IMAGE_PIXELS is None
    first.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS is None  # the second still decodes under ours only
    second.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS == before


# -- sounds -----------------------------------------------------------------------------
class CountingSoundToy(SoundToyEncoder):
    """The sound toy, recording the size of every batch of windows it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def embed_audio(self, features: np.ndarray) -> np.ndarray:
        self.batches.append(len(features))
        return super().embed_audio(features)


@pytest.fixture(scope="module")
def long_sound(tmp_path_factory) -> Path:
    """A 20-minute 8 kHz 8-bit WAV (9.6 MB): 600 windows of 2 s."""
    path = tmp_path_factory.mktemp("sound") / "long.wav"
    rate = 8000
    t = np.arange(60 * rate) / rate
    minute = (128 + 60 * np.sin(2 * np.pi * 300 * t)).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        for _ in range(20):
            w.writeframes(minute)
    return path


def test_a_20_minute_query_sound_is_cut_to_its_first_minute(long_sound):
    enc = CountingSoundToy()
    vec = query_vector([Term(1.0, "audio", str(long_sound))], enc)
    assert sum(enc.batches) == 30, enc.batches  # windows starting in the first 60 s
    assert max(enc.batches) <= SOUND_BATCH
    assert vec[0] > 0.9  # a 300 Hz tone: the toy's low band, red
    # a longer bound: more windows, still in batches
    enc = CountingSoundToy()
    query_vector([Term(1.0, "audio", str(long_sound))], enc, QueryLimits(sound_seconds=70))
    assert enc.batches == [32, 3]
    assert SOUND_BATCH == 32


def test_loupe_search_audio_gets_the_same_bound(long_sound, tmp_path, monkeypatch, capsys):
    import json

    from loupe.search.cli import main

    root = tmp_path / "archive"
    write_wav(root / "hum.wav", sine(200, 3.0))
    solid(root / "red.png", (255, 0, 0))
    db = tmp_path / "db"
    index_paths([str(root)], Store(str(db), create=True), [SoundToyEncoder()],
                IndexOptions(workers=0, progress=False))
    batches: list[int] = []
    real = SoundToyEncoder.embed_audio

    def counting(self, features):
        batches.append(len(features))
        return real(self, features)

    monkeypatch.setattr(SoundToyEncoder, "embed_audio", counting)
    assert main(["search", "--db", str(db), "--audio", str(long_sound), "--kind", "photo",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]).name == "red.png"
    assert sum(batches) == 30 and max(batches) <= SOUND_BATCH


# -- words ------------------------------------------------------------------------------
class CountingToy(ToyEncoder):
    """The toy, recording the size of every batch of texts it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.text_batches: list[int] = []

    def embed_texts(self, texts):
        self.text_batches.append(len(texts))
        return super().embed_texts(texts)


def test_fifty_thousand_query_words_are_refused_in_one_line():
    words = " ".join(["w"] * 50_000)
    with pytest.raises(LoupeError) as e:
        core.text_terms(words)
    assert str(e.value) == "the query is 99,999 characters long: at most 1,000 are taken"
    # the library's parse (the CLI, an API) refuses them too, as soon as it shows
    seen: list[str] = []

    def is_file(token: str) -> bool:
        seen.append(token)
        return False

    with pytest.raises(LoupeError, match=r"^too many terms in the query: at most 32 are "):
        parse_query(["w"] * 50_000, is_file, QueryLimits(text_chars=10**9))
    assert len(seen) < 200  # the other 49,967 words were never looked at
    with pytest.raises(LoupeError, match="words are too long: at most 1,000 characters"):
        parse_query(["a" * 600, "b" * 600], is_file)
    assert len(parse_query(["w"] * 32, is_file)) == 32
    # terms given to the library directly are checked before anything is embedded
    enc = CountingToy()
    with pytest.raises(LoupeError, match="too many terms"):
        query_vector([Term(1.0, "text", f"w{i}") for i in range(33)], enc)
    assert enc.text_batches == []


def test_text_terms_are_embedded_in_bounded_batches():
    enc = CountingToy()
    terms = [Term(1.0, "text", f"word{i}") for i in range(70)]
    vec = query_vector(terms, enc, QueryLimits(terms=100))
    assert enc.text_batches == [32, 32, 6]
    one = ToyEncoder().embed_texts([t.value for t in terms]).astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(vec, one / np.linalg.norm(one), atol=1e-6)


# -- sessions ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_index(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("photos")
    for name, colour in {"red": (255, 0, 0), "green": (0, 255, 0),
                         "blue": (0, 0, 255)}.items():
        solid(root / f"{name}.png", colour)
    db = tmp_path_factory.mktemp("db") / "db"
    index_paths([str(root)], Store(str(db), create=True), ToyEncoder(),
                IndexOptions(workers=0, progress=False))
    return str(db)


def test_a_search_goes_on_while_another_sessions_upload_decodes(photo_index, monkeypatch):
    import loupe.indexer.media.image as image

    svc = SearchService(photo_index)
    assert Path(svc.query(core.text_terms("red"), k=1).hits[0].path).name == "red.png"
    decoding, release = threading.Event(), threading.Event()
    real = image.upright_image

    def slow_decode(*args, **kwargs):
        decoding.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(image, "upright_image", slow_decode)
    first: dict = {}
    second: dict = {}

    def upload_search() -> None:  # session 1: a picture upload, as run_search does it
        with core.upload_terms([core.Upload("image", "q.png", _png((0, 0, 250)))]) as terms:
            first["result"] = svc.query(terms, k=1)

    def word_search() -> None:  # session 2: words
        second["result"] = svc.query(core.text_terms("green"), k=1)

    one = threading.Thread(target=upload_search, daemon=True)
    one.start()
    try:
        assert decoding.wait(30)
        two = threading.Thread(target=word_search, daemon=True)
        two.start()
        two.join(30)
        assert not two.is_alive(), "the search waited for another session's upload"
        assert one.is_alive()  # ...which is still decoding
        assert Path(second["result"].hits[0].path).name == "green.png"
    finally:
        release.set()
    one.join(30)
    assert Path(first["result"].hits[0].path).name == "blue.png"


def test_heavy_actions_beyond_the_cap_are_told_busy():
    heavy = HeavyWork(slots=2, wait_s=0.2)
    held, go = threading.Barrier(3), threading.Event()

    def hold() -> None:  # two other sessions' heavy actions
        with heavy.slot("grounding"):
            held.wait()
            go.wait(30)

    others = [threading.Thread(target=hold, daemon=True) for _ in range(2)]
    for t in others:
        t.start()
    held.wait(30)
    try:
        t0 = time.monotonic()
        with pytest.raises(Busy, match="finding duplicates cannot start: try again in a "
                                       "moment"):
            with heavy.slot("finding duplicates"):
                pass
        assert time.monotonic() - t0 < 2  # told at once, not frozen
        assert isinstance(Busy("x"), LoupeError)  # the pages show it in one line
    finally:
        go.set()
    for t in others:
        t.join(30)
    with heavy.slot("finding duplicates"):  # the slots came back
        pass


def test_a_second_grounding_is_told_busy_instead_of_waiting(monkeypatch):
    import loupe.ui.services as services

    monkeypatch.setattr(services, "BUSY_WAIT_S", 0.2)
    grounding = GroundingService(None)
    assert grounding.lock.acquire()  # another viewer's grounding is running
    try:
        t0 = time.monotonic()
        with pytest.raises(Busy, match="try again in a moment"):
            grounding.ground("no-index", ["some-item"], None)
        assert time.monotonic() - t0 < 2
    finally:
        grounding.lock.release()


# -- the pages --------------------------------------------------------------------------
def test_the_search_page_bounds_the_box_and_says_the_sound_bound(photo_index, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LOUPE_UI_GATED", "1")
    monkeypatch.setattr(sys, "argv", [APP, "--db", photo_index, "--max-sound-seconds", "30"])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.text_input(key="query").max_chars == 1000
    assert any("Only the first 30 s of a sound are used" in c.value for c in at.caption)
    at.file_uploader(key="image_upload").set_value(("holiday.jpg", EPS, "image/jpeg")).run()
    assert not at.exception and at.error
    assert "holiday.jpg is not a picture Loupe takes" in at.error[0].value


def test_duplicates_and_the_atlas_say_busy_when_heavy_work_is_full(photo_index, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from loupe.ui.views import atlas as atlas_view
    from loupe.ui.views import index as index_view

    full = HeavyWork(slots=1, wait_s=0.1)
    monkeypatch.setattr(index_view, "heavy_work", lambda: full)
    monkeypatch.setattr(atlas_view, "heavy_work", lambda: full)
    monkeypatch.setenv("LOUPE_UI_GATED", "1")
    monkeypatch.setattr(sys, "argv", [APP, "--db", photo_index])
    at = AppTest.from_file(APP, default_timeout=60).run()
    with full.slot("another viewer's atlas"):
        at.switch_page("page_index.py").run()
        at.button(key="find_dups").click().run()
        assert not at.exception
        assert any("busy" in e.value and "try again" in e.value for e in at.error)
        assert "duplicates" not in at.session_state
        at.switch_page("page_atlas.py").run()
        assert not at.exception and not at.get("plotly_chart")
        assert any("busy" in e.value and "drawing the map" in e.value for e in at.error)
    at.run()  # a slot free again: the map is drawn
    assert not at.exception and not at.error and at.get("plotly_chart")
