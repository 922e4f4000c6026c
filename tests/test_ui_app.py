"""The Streamlit web UI (ui/app.py) driven headless with streamlit.testing.v1.AppTest.

One small index (solid colour photos, sine sounds, the corpus video, a broken file)
built with the toy encoders, and the tiny random Kosmos-2, are shared by the module.
The app gets its arguments as `loupe ui` passes them (``-- --db DIR --grounding-model
DIR`` lands in sys.argv).
"""

from __future__ import annotations

import datetime
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.media import REPO, sine, solid, write_wav
from helpers.toys import SoundToyEncoder, ToyEncoder
from PIL import Image
from streamlit.testing.v1 import AppTest

from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search import thumbs
from loupe.search.store import Store
from loupe.ui import core, routes

APP = str(REPO / "ui" / "app.py")
TIMEOUT = 60


@pytest.fixture(autouse=True)
def gated(monkeypatch):
    """As served by server.py, behind the gate (tests/test_ui_gate.py tests the gate)."""
    monkeypatch.setenv("LOUPE_UI_GATED", "1")


def test_the_page_started_directly_only_says_how_to_start_it(archive, monkeypatch):
    _, db = archive
    monkeypatch.delenv("LOUPE_UI_GATED")
    monkeypatch.setattr(sys, "argv", [APP, "--db", db])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert [e.value for e in at.error] and "loupe ui" in at.error[0].value
    assert not at.text_input and "results" not in at.session_state


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("archive")
    solid(root / "red.png", (255, 0, 0))
    noon = datetime.datetime(2020, 1, 1, 12).timestamp()
    os.utime(root / "red.png", (noon, noon))  # an old photo, for the date filter
    solid(root / "green.png", (0, 255, 0))
    solid(root / "blue.png", (0, 0, 255))
    solid(root / "more" / "dark.png", (10, 10, 10))
    write_wav(root / "sounds" / "low.wav", sine(200, 3.0))
    write_wav(root / "sounds" / "high.wav", sine(5000, 2.0))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "clip.mp4")
    db = tmp_path_factory.mktemp("db") / "db"
    store = Store(str(db), create=True)
    index_paths([str(root)], store, [ToyEncoder(), SoundToyEncoder()],
                IndexOptions(workers=0, progress=False))
    return root, str(db)


@pytest.fixture(scope="module")
def kosmos_dir(tmp_path_factory) -> str:
    from helpers.tiny_models import make_tiny_kosmos2_dir

    return make_tiny_kosmos2_dir(str(tmp_path_factory.mktemp("models") / "tiny-kosmos2"))


@pytest.fixture
def app(archive, kosmos_dir, monkeypatch):
    """An AppTest of ui/app.py on the shared index, as `loupe ui --db ...` starts it."""
    _, db = archive
    monkeypatch.setattr(sys, "argv", [APP, "--db", db, "--grounding-model", kosmos_dir])

    def make() -> AppTest:
        return AppTest.from_file(APP, default_timeout=TIMEOUT)

    return make


def _names(at: AppTest) -> list[str]:
    return [Path(h["path"]).name for h in at.session_state["results"]]


def _search(at: AppTest, text: str) -> AppTest:
    at.text_input(key="query").input(text).run()
    assert not at.exception, at.exception
    return at


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buf, "PNG")
    return buf.getvalue()


def _wav(samples) -> bytes:
    buf = io.BytesIO()
    import wave

    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_words_find_the_red_photo_and_show_a_grid(app):
    at = app().run()
    assert not at.exception and not at.error
    _search(at, "red")
    assert _names(at)[0] == "red.png"
    info = at.session_state["results_info"]
    assert info["seconds"] >= 0 and any("results for your query" in m.value
                                        for m in at.markdown)
    assert len(at.image) >= len(at.session_state["results"])  # a thumbnail per hit
    # filters: photos only, one folder, k
    at.button_group(key="kind").set_value("Photo").run()
    assert {h["kind"] for h in at.session_state["results"]} == {"photo"}
    assert any(" photos for your query" in m.value for m in at.markdown)
    folders = at.selectbox(key="folder").options
    assert folders[0] == "All folders"
    at.selectbox(key="folder").select_index(
        next(i for i, f in enumerate(folders) if f.endswith("more"))).run()
    assert _names(at) == ["dark.png"]


def test_query_arithmetic_and_bad_queries(app):
    at = _search(app().run(), "red - 2:black")
    assert _names(at)[0] == "red.png" and not at.error
    for bad in ["red +", 'red "unclosed', "image:/etc/passwd", "beach.jpg"]:
        _search(at, bad)
        assert at.error, bad
        assert at.session_state["results"] == []
        assert "Traceback" not in at.error[0].value
    assert "words only" in at.error[0].value  # the box never names a file to open


def test_video_moments_are_grouped_with_their_times(app):
    at = app().run()
    at.button_group(key="kind").set_value("Video").run()
    _search(at, "white")
    hits = at.session_state["results"]
    assert len(hits) == 1 and hits[0]["kind"] == "frame" and hits[0]["moments"]
    labels = {b.label for b in at.button if b.key and b.key.startswith("m-0-")}
    assert labels and all(":" in x for x in labels)  # m:ss
    at.toggle(key="every_frame").set_value(True).run()
    assert len(at.session_state["results"]) > 1


def test_picture_upload_finds_the_same_colour(app, tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    at = app().run()
    at.file_uploader(key="image_upload").set_value(
        ("query.png", _png((0, 0, 250)), "image/png")).run()
    assert not at.exception and not at.error
    assert _names(at)[0] == "blue.png"
    # mixed with words and weighted
    at.number_input(key="w_image").set_value(0.5).run()
    _search(at, "2:green")
    assert _names(at)[0] == "green.png"
    # a broken picture: a polite error naming the upload, not the temporary file
    at.file_uploader(key="image_upload").set_value(
        ("holiday.png", b"\x89PNG\r\n\x1a\n but not really", "image/png")).run()
    assert not at.exception and at.error and "holiday.png" in at.error[0].value
    assert "loupe-query" not in at.error[0].value
    assert list((tmp_path / "tmp").iterdir()) == []  # query files are gone


def test_sound_upload_and_recording(app):
    at = app().run()
    at.button_group(key="kind").set_value("Photo").run()
    at.file_uploader(key="sound_upload").set_value(
        ("hum.wav", _wav(sine(180, 1.5)), "audio/wav")).run()
    assert not at.exception and not at.error
    assert _names(at)[0] == "red.png"
    at.file_uploader(key="sound_upload").set_value(None).run()
    at.audio_input(key="recording").set_value(
        ("recording.wav", _wav(sine(6000, 1.0)), "audio/wav")).run()
    assert not at.exception and _names(at)[0] == "blue.png"
    # sound to sound: windows of sound files, playable from their start in the grid
    at.button_group(key="kind").set_value("Sound").run()
    # high.wav and the clip's high-pitched alarm embed identically here (the toy's
    # shares saturate): both lead, tied at the top score
    res = at.session_state["results"]
    assert "high.wav" in [Path(h["path"]).name for h in res if h["score"] == res[0]["score"]]
    assert "low.wav" not in _names(at)[:2]
    players = at.get("audio")
    assert players and all(p.proto.start_time >= 0 for p in players)
    # streamed by Loupe's file route (Streamlit never reads the file)
    assert all(p.proto.url.endswith(f"/loupe/file/{h['id']}")
               for p, h in zip(players, [h for h in res if h["kind"] == "audio"], strict=True))


def test_model_choice(app):
    at = app().run()
    models = at.selectbox(key="model")
    assert models.options[0].startswith("Automatic") and len(models.options) == 3
    _search(at, "red")
    auto = at.session_state["results_info"]["column"]
    sound = next(i for i, label in enumerate(models.options) if "toy-rgb-sound" in label)
    at.selectbox(key="model").select_index(sound).run()  # options are shown by description
    assert at.session_state["model"].startswith("vec_toy_sound")  # ...and are columns
    assert at.session_state["results_info"]["column"] == at.session_state["model"] != auto
    assert _names(at)[0] == "red.png"


def test_upload_helper_cleans_up_and_checks_types():
    with core.upload_terms([core.Upload("image", "a.png", _png((1, 2, 3)), 2.0)]) as terms:
        path = Path(terms[0].value)
        assert terms[0].weight == 2.0 and terms[0].kind == "image" and path.is_file()
        assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(LoupeError, match="not a picture"):
        with core.upload_terms([core.Upload("image", "evil.sh", b"#!", 1.0)]):
            pass


def test_selecting_a_hit_sets_the_url_and_shows_it(app):
    at = _search(app().run(), "red")
    first = at.session_state["results"][0]
    at.button(key=f"sel-0-{first['id']}").click().run()
    assert not at.exception and not at.error
    assert at.query_params["item"] == first["id"]
    assert at.session_state["selected"] == first["id"]
    assert at.code[0].value == first["path"]  # the dialog shows it
    # the URL alone opens it (shared link)
    again = app()
    again.query_params["item"] = first["id"]
    again.run()
    assert not again.error and again.code[0].value == first["path"]
    # more like this: the other photos, itself left out
    at.button(key="more").click().run()
    assert not at.exception and first["id"] not in [h["id"] for h in at.session_state["results"]]
    assert at.session_state["results_info"]["like"] == "red.png"
    assert "item" not in at.query_params and not at.code  # "more like this" closed it
    at.button(key=f"sel-0-{at.session_state['results'][0]['id']}").click().run()
    assert at.code
    at.button(key="close").click().run()
    assert "item" not in at.query_params and not at.code


def test_a_video_moment_plays_from_its_time(app):
    at = app().run()
    at.button_group(key="kind").set_value("Video").run()
    _search(at, "white")
    hit = at.session_state["results"][0]
    m = hit["moments"][0]
    at.button(key=f"m-0-{m['id']}").click().run()
    assert not at.exception and not at.error
    assert at.query_params["item"] == m["id"]
    videos = at.get("video")
    assert videos and videos[0].proto.start_time == int(m["timestamp"])
    assert videos[0].proto.url == routes.file_url(m["id"], None)  # streamed by the route


def test_a_changed_file_is_said_politely_instead_of_played(tmp_path, corpus, monkeypatch):
    root = tmp_path / "archive"
    write_wav(root / "low.wav", sine(200, 3.0))
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "clip.mp4")
    db = tmp_path / "db"
    index_paths([str(root)], Store(str(db), create=True), SoundToyEncoder(),
                IndexOptions(workers=0, progress=False))
    rows = Store(str(db)).item_rows(["id", "path", "kind"]).to_pylist()
    frame = next(r["id"] for r in rows if r["kind"] == "frame")
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(db)])

    def shown(item: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params["item"] = item
        at.run()
        assert not at.exception
        return at

    at = shown(frame)
    assert at.get("video") and not at.warning
    secret = tmp_path / "secret.mp4"  # a file elsewhere, linked in place of the video
    secret.write_bytes(b"TOP SECRET: ssh private key material\n")
    (root / "clip.mp4").unlink()
    (root / "clip.mp4").symlink_to(secret)
    at = shown(frame)
    assert not at.get("video")
    assert "changed since it was indexed" in " ".join(
        e.value for e in [*at.warning, *at.error])
    # a sound in the grid: its player is replaced by the line
    at = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "sound")
    at.button_group(key="kind").set_value("Sound").run()
    assert at.get("audio")
    (root / "low.wav").write_bytes(b"RIFF" + b"\0" * 100)
    at.run()
    assert not at.get("audio") and any("changed since it was indexed" in c.value
                                       for c in at.caption)


@pytest.mark.parametrize("crafted", ["../../etc/passwd", "0123456789abcdef01234567",
                                     "'; DROP TABLE items; --"])
def test_crafted_item_ids_are_refused_and_nothing_is_read(app, crafted, monkeypatch):
    opened = []
    for name in ("item_path", "item_picture", "thumbnail"):
        real = getattr(thumbs, name)

        def spy(store, item_id, *a, _real=real, **kw):
            opened.append(item_id)
            return _real(store, item_id, *a, **kw)

        monkeypatch.setattr(thumbs, name, spy)
    at = app()
    at.query_params["item"] = crafted
    at.run()
    assert not at.exception
    assert at.error and "not point to an item" in at.error[0].value
    assert crafted not in opened and "item" not in at.query_params
    assert at.session_state["selected"] is None
    # session state alone selects nothing (the URL decides)
    at = app()
    at.session_state["selected"] = crafted
    at.run()
    assert not at.exception and at.session_state["selected"] is None
    assert crafted not in opened


def test_grounding_draws_boxes_and_then_answers_from_the_cache(app):
    at = _search(app().run(), "green")
    first = at.session_state["results"][0]
    at.button(key=f"sel-0-{first['id']}").click().run()
    at.button(key="ground").click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    g = at.session_state["grounding"]
    assert g["item"] == first["id"] and g["results"][0]["cached"] is False
    picture = Image.open(io.BytesIO(g["results"][0]["picture"]))
    assert picture.size == (40, 30)  # the photo, with its boxes
    assert any("new answer" in m.value for m in at.markdown)
    assert at.toggle(key="show_boxes").value  # the picture shows the boxes
    at.button(key="ground").click().run()
    assert at.session_state["grounding"]["results"][0]["cached"] is True
    assert any("cached" in m.value for m in at.markdown)


def test_grounding_the_frames_around_a_moment(app):
    at = app().run()
    at.button_group(key="kind").set_value("Video").run()
    _search(at, "white")
    m = at.session_state["results"][0]["moments"][0]
    at.button(key=f"m-0-{m['id']}").click().run()
    at.slider(key="ground_span").set_value(1)
    at.button(key="ground_around").click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    g = at.session_state["grounding"]
    times = [r["timestamp"] for r in g["results"]]
    assert g["around"] and m["timestamp"] in times and len(times) >= 2
    assert all(abs(t - m["timestamp"]) <= 1.0 for t in times) and times == sorted(times)


def test_grounding_without_weights_is_a_polite_error(archive, monkeypatch, tmp_path):
    _, db = archive
    monkeypatch.setattr(sys, "argv", [APP, "--db", db, "--grounding-model",
                                      str(tmp_path / "no-such-model")])
    at = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "blue")
    at.button(key=f"sel-0-{at.session_state['results'][0]['id']}").click().run()
    at.button(key="ground").click().run()
    assert not at.exception
    assert at.error and "no such Kosmos-2 model folder" in at.error[0].value


def _status(db: str) -> dict:
    """The Index page's status as the UI's process-wide cache holds it (not per session)."""
    from loupe.ui.resources import search_service

    return search_service(db).summaries.status()


def test_index_page_shows_counts_models_and_skipped_files(app, archive, tmp_path):
    at = app().run()
    at.switch_page("page_index.py").run()
    assert not at.exception and not at.error
    assert "index_status" not in at.session_state
    status = _status(archive[1])
    assert status["counts"]["photo"] == 4 and status["counts"]["frame"] == 24
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Photos"] == "4" and metrics["Video moments"] == "24"
    assert metrics["Skipped files"] == "1"
    assert any("Skipped files (1)" in h.value for h in at.subheader)
    skipped = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(skipped["file"].str.endswith("broken.jpg")) == [True]
    models = next(d.value for d in at.dataframe if "weights licence" in d.value.columns)
    assert len(models) == 2 and "audio" in " ".join(models["embeds"])
    # index a folder: refused when it is not one
    at.text_input(key="index_folder").input(str(tmp_path / "nope"))
    at.button(key="index_go").click().run()
    assert "not a folder" in at.error[0].value


def test_indexing_a_folder_in_the_background_while_searching(tmp_path, monkeypatch):
    import threading

    import loupe.ui.services as run_mod  # the UI's indexing job calls index_paths from here
    from loupe.ui.resources import index_job, search_service
    from loupe.ui.services import IndexJob

    monkeypatch.setattr(IndexJob, "workers", 0)
    started, release = threading.Event(), threading.Event()
    real = run_mod.index_paths

    def held(*a, **kw):  # the run waits until the test has searched meanwhile
        started.set()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(run_mod, "index_paths", held)
    first, later = tmp_path / "first", tmp_path / "later"
    solid(first / "red.png", (255, 0, 0))
    solid(later / "blue.png", (0, 0, 255))
    solid(later / "green.png", (0, 255, 0))
    db = tmp_path / "db"
    index_paths([str(first)], Store(str(db), create=True), ToyEncoder(),
                IndexOptions(workers=0, progress=False))
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(db)])
    search = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "blue")
    assert _names(search) == ["red.png"]
    service = search_service(str(db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("page_index.py").run()
    at.text_input(key="index_folder").input(str(later))
    at.button(key="index_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    try:
        assert started.wait(30)
        assert at.get("progress") and at.button(key="index_go").disabled
        with pytest.raises(LoupeError, match="already indexing"):  # one run at a time
            index_job().start(str(db), str(later))
        _search(search, "green")  # searching works meanwhile
        assert _names(search) == ["red.png"] and not search.error
    finally:
        release.set()
    index_job().join(60)
    at.run()
    assert not at.exception
    assert any("Indexed" in s.value for s in at.success)
    assert _status(str(db))["counts"]["photo"] == 3
    assert any(m.label == "Photos" and m.value == "3" for m in at.metric)
    search.run()  # the results say the index has changed, and refresh on request
    search.button(key="refresh").click().run()
    assert _names(search)[0] == "green.png"  # the same process's searcher sees the new rows
    assert search_service(str(db)) is service  # and kept its loaded models


def test_an_index_without_models_says_to_run_loupe_index(tmp_path, monkeypatch):
    Store(str(tmp_path / "db"), create=True)
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(tmp_path / "db")])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and "loupe index" in at.info[0].value
    at.switch_page("page_index.py").run()
    assert not at.exception and any("loupe index" in i.value for i in at.info)
    # once `loupe index` has run, the same process searches it
    solid(tmp_path / "photos" / "red.png", (255, 0, 0))
    index_paths([str(tmp_path / "photos")], Store(str(tmp_path / "db")), ToyEncoder(),
                IndexOptions(workers=0, progress=False))
    at = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "red")
    assert _names(at) == ["red.png"]


def test_app_without_an_index_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [APP])
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "nothing-here"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.error and "loupe index" in at.error[0].value


def test_worker_processes_do_not_run_the_app(monkeypatch):
    """Spawned decode workers re-import the main module (Streamlit's is ui/app.py) as
    __mp_main__: the app must not run there."""
    import runpy

    import streamlit as st

    calls = []
    monkeypatch.setattr(st, "navigation", lambda *a, **k: calls.append(a))
    runpy.run_path(APP, run_name="__mp_main__")
    assert calls == []


def test_parse_args_ignores_foreign_arguments(monkeypatch, tmp_path):
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "env-db"))
    assert core.parse_args(["-q", "tests/x.py", "--durations", "3"]).db == str(
        tmp_path / "env-db")
    a = core.parse_args(["--db", str(tmp_path / "a"), "--grounding-model", "m"])
    assert (a.db, a.grounding_model) == (str(tmp_path / "a"), "m")


def test_indexing_from_the_page_is_off_when_exposed(archive, monkeypatch):
    """`loupe ui --host 0.0.0.0` passes --no-indexing: no folder form on the index page."""
    _, db = archive
    monkeypatch.setattr(sys, "argv", [APP, "--db", db, "--no-indexing"])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("page_index.py").run()
    assert not at.exception
    assert not [t for t in at.text_input if t.key == "index_folder"]
    assert any("Indexing from the web page is off" in i.value for i in at.info)


def test_date_range_filters_results(app):
    at = _search(app().run(), "red")
    assert _names(at)[0] == "red.png"
    day = datetime.date(2020, 1, 1)
    at.date_input(key="dates").set_value((day, day)).run()
    assert not at.exception
    assert _names(at) == ["red.png"]  # the only file from that day
    at.date_input(key="dates").set_value((datetime.date(2024, 1, 1),
                                          datetime.date.today())).run()
    assert "red.png" not in _names(at) and _names(at)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> str:
    """A tagged index (colour labels: answers known with the toy encoder), a copy of a
    photo, and two reference collections."""
    from loupe.search.explain.attribution import add_collection
    from loupe.search.explain.tags import enable_tagging

    root = tmp_path_factory.mktemp("tagged")
    solid(root / "red.png", (255, 0, 0))
    shutil.copy(root / "red.png", root / "red-copy.png")
    solid(root / "dark-red.png", (128, 0, 0))
    solid(root / "blue.png", (0, 0, 255))
    solid(root / "refs" / "reds" / "r.png", (240, 10, 0))
    solid(root / "refs" / "blues" / "b.png", (0, 10, 240))
    labels = root / "colours.txt"
    labels.write_text("# template: {}\nred\ngreen\nblue\nblack\n")
    db = str(tmp_path_factory.mktemp("db") / "db")
    store = Store(db, create=True)
    toy = ToyEncoder()
    store.register_encoder(toy.spec)
    enable_tagging(store, str(labels), top=2, min_share=10.0)
    index_paths([str(root / "red.png"), str(root / "red-copy.png"), str(root / "dark-red.png"),
                 str(root / "blue.png")], store, toy, IndexOptions(workers=0, progress=False))
    add_collection(store, "Red school", [str(root / "refs" / "reds")], lambda c: toy)
    add_collection(store, "Blue school", [str(root / "refs" / "blues")], lambda c: toy)
    return db


def test_tag_filter_and_hiding_near_duplicates(tagged, monkeypatch):
    monkeypatch.setattr(sys, "argv", [APP, "--db", tagged])
    at = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "red")
    assert sorted(_names(at)) == ["blue.png", "dark-red.png", "red-copy.png", "red.png"]
    assert at.multiselect(key="tags").options == ["black", "blue", "red"]
    at.multiselect(key="tags").select("black").run()
    assert _names(at) == ["dark-red.png"]  # (128,0,0): red and black nearly tie
    at.multiselect(key="tags").unselect("black").select("red").run()
    assert sorted(_names(at)) == ["dark-red.png", "red-copy.png", "red.png"]
    at.toggle(key="hide_dups").set_value(True).run()
    assert len([n for n in _names(at) if n in ("red.png", "red-copy.png")]) == 1
    assert at.session_state["results_info"]["hidden"] == 1
    assert any("1 near-duplicates hidden" in m.value for m in at.markdown)


def test_tags_and_style_of_the_selected_picture(tagged, monkeypatch):
    monkeypatch.setattr(sys, "argv", [APP, "--db", tagged])
    at = _search(AppTest.from_file(APP, default_timeout=TIMEOUT).run(), "blue")
    first = at.session_state["results"][0]
    assert Path(first["path"]).name == "blue.png"
    at.button(key=f"sel-0-{first['id']}").click().run()
    assert at.selectbox(key="explain_vocab").value.endswith("colours.txt")  # the index's
    at.button(key="explain").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    done = at.session_state["explained"]
    tags, style = done["tags"], done["style"]
    assert tags["tags"][0]["label"] == "blue"
    assert sum(t["share"] for t in tags["tags"]) + tags["other"] == pytest.approx(100)
    assert [r["label"] for r in style["references"]] == ["Blue school", "Red school"]
    assert sum(r["share"] for r in style["references"]) == pytest.approx(100)
    assert style["evidence"][0]["path"].endswith("b.png")
    # four bar charts: tags, movements, artists, reference collections
    assert len(at.get("vega_lite_chart")) == 4
    assert any("Blue school" in c.value for c in at.caption)  # the evidence's caption


def test_index_page_tags_collections_and_duplicates(tagged, monkeypatch):
    monkeypatch.setattr(sys, "argv", [APP, "--db", tagged])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("page_index.py").run()
    assert not at.exception and not at.error
    status = _status(tagged)
    assert status["tagging"]["tagged_items"] == 4
    assert status["collections"] == {"Blue school": 1, "Red school": 1}
    assert any("4 pictures tagged from `colours.txt`" in c.value for c in at.caption)
    at.button(key="find_dups").click().run()
    assert not at.exception and not at.error
    report = at.session_state["duplicates"]
    assert len(report["exact"]) == 1  # red.png and its byte copy
    names = sorted(Path(m["path"]).name for m in report["exact"][0]["items"])
    assert names == ["red-copy.png", "red.png"]
    assert any("1 sets of identical files" in c.value for c in at.caption)
