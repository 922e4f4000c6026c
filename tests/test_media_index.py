"""Video frames and sound windows through the whole pipeline: index, store, search.

Uses the corpus video (three_shots.mp4: astronaut pan 0-8 s, still cat 8-16 s, coffee
pan 16-24 s; bell, phone, alarm sounds in turn) and sounds made on the spot, with toy
encoders whose vectors can be read back (pixels) or worked out (colours, sound bands).
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers.media import sine, solid, write_wav
from helpers.toys import PixelEncoder, SoundToyEncoder, ToyEncoder
from PIL import Image

from loupe.indexer.media.image import to_model_input
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.cli import main as loupe_main
from loupe.search.engine import Searcher
from loupe.search.status import index_status
from loupe.search.store import Store

OPTS = {"workers": 0, "progress": False}
SIDE = 16


def _index(roots, db, encoders, **opts):
    store = Store(str(db), create=True)
    report = index_paths([str(r) for r in roots], store, encoders,
                         IndexOptions(**{**OPTS, **opts}))
    return store, report


def _rows(store: Store, kind: str | None = None, columns=None) -> list[dict]:
    cols = columns or ["id", "path", "kind", "timestamp", "end", "shot", "silent", "width",
                       "height"]
    rows = store.item_rows(cols, f"kind = '{kind}'" if kind else None).to_pylist()
    return sorted(rows, key=lambda r: (r.get("path", ""), r.get("kind", ""), r["timestamp"] or 0.0))


def _pyav_frames(path: Path) -> dict[Fraction, np.ndarray]:
    """Every frame of the file as PyAV decodes it, by exact timestamp."""
    out = {}
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            out[f.pts * f.time_base] = f.to_ndarray(format="rgb24")
    return out


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, request) -> Path:
    corpus = Path(request.config.rootpath).parent / "shared" / "corpus"
    if not corpus.is_dir():
        pytest.skip("corpus not found")
    d = tmp_path_factory.mktemp("video")
    shutil.copy(corpus / "video" / "three_shots.mp4", d / "three_shots.mp4")
    return d


@pytest.fixture(scope="module")
def pixel_index(video_dir, tmp_path_factory):
    enc = PixelEncoder(SIDE)
    store, report = _index([video_dir], tmp_path_factory.mktemp("db") / "db", enc)
    return store, report, enc


def test_stored_frames_are_the_frames_pyav_decodes(pixel_index, video_dir):
    store, report, enc = pixel_index
    assert report.videos == 1 and report.frames == 24 and report.skipped == 0
    frames = _rows(store, "frame", ["timestamp", "width", "height", enc.spec.column])
    assert [r["timestamp"] for r in frames] == [float(t) for t in range(24)]
    decoded = _pyav_frames(video_dir / "three_shots.mp4")
    for r in frames:
        ts = Fraction(r["timestamp"]).limit_denominator(12800)
        assert float(ts) == r["timestamp"]  # exact: a pts of the stream
        rgb = decoded[ts]
        assert (r["width"], r["height"]) == (rgb.shape[1], rgb.shape[0]) == (480, 360)
        want = enc.embed_pixels(to_model_input(Image.fromarray(rgb), enc.preprocess)[None])[0]
        np.testing.assert_allclose(r[enc.spec.column], want, atol=1e-6)


def test_shot_numbers_change_at_8_and_16_seconds(pixel_index):
    store, _, _ = pixel_index
    shots = {r["timestamp"]: r["shot"] for r in _rows(store, "frame")}
    assert all(shots[t] == (0 if t < 8 else 1 if t < 16 else 2) for t in shots)


@pytest.mark.parametrize("t", [3.0, 20.0])
def test_a_frame_as_query_finds_its_own_moment(pixel_index, video_dir, tmp_path, t):
    store, _, enc = pixel_index
    rgb = _pyav_frames(video_dir / "three_shots.mp4")[Fraction(t)]
    query = tmp_path / "frame.png"
    Image.fromarray(rgb).save(query)
    s = Searcher(store, enc)
    top = s.search([str(query)], k=1)[0]
    assert top.path.endswith("three_shots.mp4") and top.timestamp == t
    assert top.score == pytest.approx(1.0, abs=1e-6)
    raw = s.search([str(query)], k=3, group=False)
    assert raw[0].timestamp == t and raw[0].kind == "frame"
    assert len({h.timestamp for h in raw}) == 3


def test_video_hits_are_grouped_with_their_best_moments(pixel_index, video_dir, tmp_path):
    store, _, enc = pixel_index
    query = tmp_path / "frame.png"
    Image.fromarray(_pyav_frames(video_dir / "three_shots.mp4")[Fraction(5)]).save(query)
    hits = Searcher(store, enc).search([str(query)], k=10)
    assert len(hits) == 1  # one video, however many of its frames match
    assert [m.timestamp for m in hits[0].moments][0] == 5.0
    assert len(hits[0].moments) == 3
    assert [m.score for m in hits[0].moments] == sorted(
        (m.score for m in hits[0].moments), reverse=True)


def test_rerun_and_move_reuse_every_frame(video_dir, tmp_path):
    enc = PixelEncoder(SIDE)
    db = tmp_path / "db"
    root = tmp_path / "v"
    shutil.copytree(video_dir, root)
    store, first = _index([root], db, enc)
    before = {r["timestamp"]: r["shot"] for r in _rows(store, "frame")}
    _, again = _index([root], db, PixelEncoder(SIDE))
    assert again.unchanged == 1 and again.embedded == 0
    (root / "moved").mkdir()
    (root / "three_shots.mp4").rename(root / "moved" / "renamed.mp4")
    moved_enc = PixelEncoder(SIDE)
    store, moved = _index([root], db, moved_enc)
    assert moved.reused == 1 and moved_enc.images_embedded == 0 and moved.removed == 1
    rows = _rows(store, "frame")
    assert {r["path"] for r in rows} == {str(root / "moved" / "renamed.mp4")}
    assert {r["timestamp"]: r["shot"] for r in rows} == before


def test_frame_interval_and_no_shot_detection(video_dir, tmp_path):
    store, report = _index([video_dir], tmp_path / "db", ToyEncoder(), frame_interval=4.0)
    assert [r["timestamp"] for r in _rows(store, "frame")] == [0, 4, 8, 12, 16, 20]
    store, report = _index([video_dir], tmp_path / "db2", ToyEncoder(), frame_interval=5.0,
                           shot_threshold=None)
    assert [r["timestamp"] for r in _rows(store, "frame")] == [0, 5, 10, 15, 20]
    store, report = _index([video_dir], tmp_path / "db3", ToyEncoder(), frame_interval=5.0)
    rows = _rows(store, "frame")  # cuts at 8 and 16 add their own frames
    assert [(r["timestamp"], r["shot"]) for r in rows] == [
        (0, 0), (5, 0), (8, 1), (10, 1), (15, 1), (16, 2), (20, 2)]


# -- sound ------------------------------------------------------------------------------

@pytest.fixture
def colour_and_sound(tmp_path) -> Path:
    root = tmp_path / "archive"
    solid(root / "red.png", (255, 0, 0))
    solid(root / "green.png", (0, 255, 0))
    solid(root / "blue.png", (0, 0, 255))
    write_wav(root / "sounds" / "low.wav", sine(200, 3.0))  # 2 windows: 0-2, 2-3 s
    write_wav(root / "sounds" / "high.wav", sine(5000, 2.0, rate=48000), rate=48000)
    write_wav(root / "sounds" / "quiet.wav", np.zeros(16000 * 4))
    return root


def test_sound_windows_are_rows_and_silence_is_marked(colour_and_sound, tmp_path):
    enc = SoundToyEncoder()
    store, report = _index([colour_and_sound], tmp_path / "db", enc)
    assert report.photos == 3 and report.audio_files == 3 and report.sound_windows == 5
    rows = {(Path(r["path"]).name, r["timestamp"]): r for r in _rows(store, "audio")}
    assert sorted(rows) == [("high.wav", 0.0), ("low.wav", 0.0), ("low.wav", 2.0),
                            ("quiet.wav", 0.0), ("quiet.wav", 2.0)]
    assert rows[("low.wav", 2.0)]["end"] == pytest.approx(3.0)
    assert rows[("high.wav", 0.0)]["end"] == pytest.approx(2.0)
    assert [rows[("quiet.wav", t)]["silent"] for t in (0.0, 2.0)] == [True, True]
    assert not rows[("low.wav", 0.0)]["silent"]


def test_sound_finds_the_matching_photos(colour_and_sound, tmp_path):
    enc = SoundToyEncoder()
    store, _ = _index([colour_and_sound], tmp_path / "db", enc)
    query = write_wav(tmp_path / "q" / "hum.wav", sine(180, 1.5))
    s = Searcher(store)
    photos = s.search([f"audio:{query}"], k=3, kind="photo")
    assert Path(photos[0].path).name == "red.png"
    assert photos[0].score == pytest.approx(1.0, abs=0.01)
    assert photos[1].score < 0.5
    high = s.search([str(write_wav(tmp_path / "q" / "hiss.wav", sine(6000, 1.0)))], k=1,
                    kind="photo")
    assert Path(high[0].path).name == "blue.png"
    # mixed with words in the query arithmetic: a low sound minus red plus green
    mixed = s.search([str(query), "-", "red", "+", "2:green"], k=1, kind="photo")
    assert Path(mixed[0].path).name == "green.png"
    # sound to sound: the low hum's best window is in low.wav
    assert Path(s.search([str(query)], k=1, kind="audio")[0].path).name == "low.wav"


def test_cli_audio_search_json_and_frames(colour_and_sound, tmp_path, capsys):
    enc = SoundToyEncoder()
    _index([colour_and_sound], tmp_path / "db", enc)
    query = write_wav(tmp_path / "q.wav", sine(5500, 1.0))
    capsys.readouterr()
    assert loupe_main(["search", "--audio", str(query), "--db", str(tmp_path / "db"),
                       "--kind", "photo", "-k", "1", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert Path(hits[0]["path"]).name == "blue.png" and hits[0]["timestamp"] is None
    assert loupe_main(["search", "--audio", str(query), "--db", str(tmp_path / "db"),
                       "--kind", "audio", "--frames", "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["kind"] == "audio" and Path(hits[0]["path"]).name == "high.wav"
    assert {"timestamp", "end"} <= set(hits[0])


def test_sound_query_needs_an_audio_model(colour_and_sound, tmp_path, capsys):
    _index([colour_and_sound], tmp_path / "db", ToyEncoder())
    query = write_wav(tmp_path / "q.wav", sine(200, 1.0))
    assert loupe_main(["search", "--audio", str(query), "--db", str(tmp_path / "db")]) == 1
    err = capsys.readouterr().err
    assert "embeds audio" in err and "imagebind" in err and err.count("\n") == 1


def test_adding_an_audio_model_fills_in_what_is_missing(colour_and_sound, video_dir, tmp_path):
    """An image-only index: sound files wait as unsupported. Adding an audio model embeds
    them, the soundtrack of the video, and the new model's vectors of every photo and
    frame, without the first model embedding anything again."""
    shutil.copy(video_dir / "three_shots.mp4", colour_and_sound / "clip.mp4")
    db = tmp_path / "db"
    store, first = _index([colour_and_sound], db, ToyEncoder())
    assert first.unsupported == 3 and first.frames == 24 and first.sound_windows == 0
    old, new = ToyEncoder(), SoundToyEncoder()
    store, second = _index([colour_and_sound], db, [old, new])
    assert old.images_embedded == 0
    assert new.images_embedded == 3 + 24  # photos + frames, for its own column
    assert second.audio_files == 3 and new.sounds_embedded == 5 + 12  # files + soundtrack
    assert second.unchanged == 0 and second.to_process == 3 + 1 + 3
    sound = _rows(store, "audio", ["path", "timestamp", new.spec.column, old.spec.column])
    assert all(r[new.spec.column] is not None and r[old.spec.column] is None for r in sound)
    track = [r["timestamp"] for r in sound if r["path"].endswith("clip.mp4")]
    assert track == [float(t) for t in range(0, 24, 2)]
    # a third run has nothing to do
    store, third = _index([colour_and_sound], db, [ToyEncoder(), SoundToyEncoder()])
    assert third.unchanged == third.files_seen == 7 and third.embedded == 0
    st = index_status(store)
    assert st["files"] == {"image": 3, "audio": 3, "video": 1}
    assert {e["backend"] for e in st["encoders"]} == {"toy", "toy-sound"}


def test_cli_refuses_a_new_model_without_add(tmp_path, tiny_clip_dir, capsys):
    from helpers.tiny_models import make_tiny_clip_dir

    photos = tmp_path / "p"
    solid(photos / "a.png", (10, 20, 30))
    db = str(tmp_path / "db")
    base = ["index", str(photos), "--db", db, "--workers", "0", "--quiet"]
    assert loupe_main(base + ["--model", tiny_clip_dir]) == 0
    other = make_tiny_clip_dir(str(tmp_path / "other"), seed=3)
    capsys.readouterr()
    assert loupe_main(base + ["--model", other]) == 1
    assert "--add" in capsys.readouterr().err
    assert loupe_main(base + ["--model", other, "--add", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["embedded"] == 1 and report["unchanged"] == 0
    assert len(Store(db).meta.encoders) == 2
    # each model answers queries; the first is the default
    for model in (None, other):
        argv = ["search", "a photo", "--db", db, "--json"] + (["--model", model] if model else [])
        assert loupe_main(argv) == 0
        assert len(json.loads(capsys.readouterr().out)) == 1


# -- hostile media ----------------------------------------------------------------------

def _silent_video(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), 90, np.uint8)
            img[10:20, i:i + 10] = 200  # a small moving square: no shot change
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_hostile_media_are_reported_not_fatal(tmp_path, video_dir, request):
    corpus = Path(request.config.rootpath).parent / "shared" / "corpus"
    root = tmp_path / "bad"
    root.mkdir()
    (root / "garbage.mp4").write_bytes(b"\x00\x01garbage" * 500)
    (root / "empty.wav").write_bytes(b"")
    write_wav(root / "no-samples.wav", np.zeros(0))
    webm = (corpus / "video" / "three_shots_10s.webm").read_bytes()
    (root / "cut.webm").write_bytes(webm[: len(webm) * 6 // 10])
    (root / "header-only.mkv").write_bytes(webm[:300])
    _silent_video(root / "mute.mp4")
    enc = SoundToyEncoder()
    for workers in (0, 2):
        db = tmp_path / f"db{workers}"
        store, report = _index([root], db, enc, workers=workers)
        files = {Path(f["path"]).name: f for f in store.file_rows()}
        skipped = {Path(s["path"]).name: s for s in store.skipped_rows()}
        assert set(skipped) == {"garbage.mp4", "empty.wav", "no-samples.wav",
                                "header-only.mkv"}, skipped
        assert all(s["code"] == "bad" and s["reason"] for s in skipped.values())
        assert set(files) == {"cut.webm", "mute.mp4"}
        assert files["mute.mp4"]["problem"] is None and files["mute.mp4"]["rows"] == 2
        cut = [r for r in _rows(store, "frame") if r["path"].endswith("cut.webm")]
        assert 1 <= len(cut) < 10 and files["cut.webm"]["rows"] >= len(cut)
        assert files["cut.webm"]["problem"]  # the damage is recorded...
        st = index_status(store)
        assert [Path(p["path"]).name for p in st["partial"]] == ["cut.webm"]  # ...and shown
        assert report.partial == 1 and report.skipped == 4


def test_format_1_index_is_upgraded(tmp_path):
    """An index written by the photos-only version opens: new columns, file records."""
    photos = tmp_path / "p"
    solid(photos / "a.png", (200, 0, 0))
    solid(photos / "b.png", (0, 0, 200))
    db = tmp_path / "db"
    store, _ = _index([photos], db, ToyEncoder())
    t = store.items()
    t.drop_columns(["end", "shot", "silent"])
    store.db.drop_table("files")
    store.meta.update(format=1)
    store = Store(str(db))
    assert store.meta.format == 2
    assert {"end", "shot", "silent"} <= set(store.items().schema.names)
    assert set(store.item_states()) == {str(photos / "a.png"), str(photos / "b.png")}
    enc = ToyEncoder()
    _, report = _index([photos], db, enc)
    assert report.unchanged == 2 and enc.images_embedded == 0
    assert Searcher(Store(str(db)), enc).search(["red"], k=1)[0].path.endswith("a.png")


def test_a_new_model_stays_incomplete_until_every_root_is_backfilled(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    solid(a / "red.png", (255, 0, 0))
    solid(b / "blue.png", (0, 0, 255))
    db = tmp_path / "db"
    store, _ = _index([a], db, ToyEncoder())
    store, _ = _index([b], db, ToyEncoder())
    assert store.meta.incomplete_columns == []  # a first model is complete by construction
    new = SoundToyEncoder()
    store, _ = _index([b], db, [ToyEncoder(), new])  # only b's files get the new model
    assert new.images_embedded == 1
    assert store.meta.incomplete_columns == [new.spec.column]  # red.png still lacks it
    later = SoundToyEncoder()
    store, _ = _index([a], db, [ToyEncoder(), later])
    assert later.images_embedded == 1 and store.meta.incomplete_columns == []
    again = SoundToyEncoder()
    _index([a, b], db, [ToyEncoder(), again])
    assert again.images_embedded == 0
