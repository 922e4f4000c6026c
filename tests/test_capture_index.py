"""What the camera knew, through Loupe: stored per item by an indexing run (JPEGs whose
EXIF Pillow writes, an MP4 whose tags FFmpeg writes, a broken EXIF block, a copied file),
read into an index made before without running a model, and searched by: taken between
two dates, near a place, camera, lens, sorted by date with a relevance floor, in the
library and the CLI. Expected values are worked out by hand; scores come from the toy
encoder (a picture's vector is its mean colour), so the query "red" ranks by redness."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.feather as feather
import pytest
from helpers.exif import (
    LENS_MAKE,
    LENS_MODEL,
    MAKE,
    MODEL,
    OFFSET,
    SUBSEC,
    TAKEN,
    exif_jpeg,
    gps,
    tagged_video,
)
from helpers.toys import ToyEncoder
from PIL.TiffImagePlugin import IFDRational

from loupe.indexer.errors import LoupeError
from loupe.indexer.media.places import find_place
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.ann import CATALOG_CAPTURE, CaptureFilter, load_index, wall_seconds
from loupe.search.ann.capture_filter import great_circle_km, near_mask, points, unit_vectors
from loupe.search.cli import main
from loupe.search.engine import Searcher
from loupe.search.store import CAPTURE_NAMES, Store, item_id

DAY = 86400
JAN_1_2022 = 1640995200  # 2022-01-01T00:00:00Z
JUNE_2_2022 = 1654128000  # 2022-06-02T00:00:00Z: 152 days after 1 January
JUNE_1_2021 = 1622505600  # 2021-06-01T00:00:00Z
MARCH_14_2020 = 1584144000  # 2020-03-14T00:00:00Z

TWIN = {TAKEN: "2018:08:08 12:00:00"}
# name -> (colour, IFD0, Exif IFD, GPS IFD)
PHOTOS = {
    "lisbon.jpg": ((230, 20, 20), {MAKE: "Canon", MODEL: "Canon EOS R5"},
                   {TAKEN: "2021:06:01 14:03:22", OFFSET: "+01:00", LENS_MAKE: "Canon",
                    LENS_MODEL: "RF50mm F1.8 STM"},
                   gps((38, 42, 36), "N", (9, 8, 24), "W")),  # N, W
    "tokyo.jpg": ((220, 30, 20), {MAKE: "SONY", MODEL: "ILCE-7M3"},
                  {TAKEN: "2020:03:15 08:00:00", OFFSET: "+09:00", SUBSEC: "5",
                   LENS_MODEL: "FE 24-70mm F2.8 GM"},
                  {**gps((35, 41, IFDRational(222, 10)), "N", (139, 41, IFDRational(3012, 100)),
                         "E"), 5: 0, 6: IFDRational(40)}),  # N, E; 40 m
    "sydney.jpg": ((210, 40, 30), {MAKE: "NIKON CORPORATION", MODEL: "NIKON D850"},
                   {TAKEN: "2019:12:31 23:59:59", LENS_MAKE: "Nikon", LENS_MODEL: "AF-S 50mm"},
                   {**gps((33, 52, IFDRational(426, 100)), "S",
                          (151, 12, IFDRational(2635, 100)), "E"), 5: 1, 6: IFDRational(3)}),
    "saopaulo.jpg": ((200, 50, 30), {MAKE: "Apple", MODEL: "iPhone 12"},
                     {TAKEN: "2022:01:01 08:00:00", OFFSET: "-03:00"},
                     gps((23, 32, 51), "S", (46, 38, 10), "W")),  # S, W
    "twin-a.jpg": ((190, 40, 40), {MAKE: "FUJIFILM", MODEL: "X-T3"}, TWIN, None),
    # the same picture and capture as twin-a, other bytes (a Software tag): a score tie
    "twin-b.jpg": ((190, 40, 40), {MAKE: "FUJIFILM", MODEL: "X-T3", 0x0131: "edit"}, TWIN,
                   None),
    "twin-c.jpg": ((170, 45, 45), {MAKE: "FUJIFILM", MODEL: "X-T3"}, TWIN, None),
    "old-copy.jpg": ((180, 40, 40), {}, {TAKEN: "2015:07:04 10:00:00"}, None),
    "plain.jpg": ((170, 50, 50), {}, {}, None),  # no EXIF at all
    "blue.jpg": ((20, 20, 230), {}, {TAKEN: "2022:06:02 10:00:00", OFFSET: "+01:00"}, None),
}
PLAIN_MTIME = datetime(2018, 5, 5, 12, 0).timestamp()  # this machine's clock
CLIP_TAGS = {"creation_time": "2021-06-01T10:00:00Z", "location": "-33.8688+151.2093-005.5/"}
NONE = dict.fromkeys(CAPTURE_NAMES)


def _expected() -> dict[str, dict]:
    """The capture columns of each file's rows, by hand."""
    return {
        # 14:03:22 at +01:00 is 13:03:22 UTC; 38°42'36"N 9°8'24"W
        "lisbon.jpg": {**NONE, "taken_at": JUNE_1_2021 + 13 * 3600 + 3 * 60 + 22,
                       "taken_local": "2021-06-01T14:03:22", "taken_offset_min": 60,
                       "taken_source": "exif", "lat": 38.71, "lon": -9.14,
                       "camera_make": "Canon", "camera_model": "Canon EOS R5",
                       "lens": "Canon RF50mm F1.8 STM", "place": "Baixa, Lisbon, PT"},
        # 08:00:00.5 at +09:00 is 23:00:00.5 UTC the day before
        "tokyo.jpg": {**NONE, "taken_at": MARCH_14_2020 + 23 * 3600 + 0.5,
                      "taken_local": "2020-03-15T08:00:00.5", "taken_offset_min": 540,
                      "taken_source": "exif", "lat": 35 + 41 / 60 + 22.2 / 3600,
                      "lon": 139 + 41 / 60 + 30.12 / 3600, "alt": 40.0,
                      "camera_make": "SONY", "camera_model": "ILCE-7M3",
                      "lens": "FE 24-70mm F2.8 GM", "place": "Tokyo, Tokyo, JP"},
        # no offset: no UTC time; 3 m below sea level (GPSAltitudeRef 1)
        "sydney.jpg": {**NONE, "taken_local": "2019-12-31T23:59:59", "taken_source": "exif",
                       "lat": -(33 + 52 / 60 + 4.26 / 3600),
                       "lon": 151 + 12 / 60 + 26.35 / 3600, "alt": -3.0,
                       "camera_make": "NIKON CORPORATION", "camera_model": "NIKON D850",
                       "lens": "Nikon AF-S 50mm", "place": "Sydney, New South Wales, AU"},
        # 08:00 at -03:00 is 11:00 UTC
        "saopaulo.jpg": {**NONE, "taken_at": JAN_1_2022 + 11 * 3600,
                         "taken_local": "2022-01-01T08:00:00", "taken_offset_min": -180,
                         "taken_source": "exif", "lat": -(23 + 32 / 60 + 51 / 3600),
                         "lon": -(46 + 38 / 60 + 10 / 3600), "camera_make": "Apple",
                         "camera_model": "iPhone 12", "place": "São Paulo, São Paulo, BR"},
        **{name: {**NONE, "taken_local": "2018-08-08T12:00:00", "taken_source": "exif",
                  "camera_make": "FUJIFILM", "camera_model": "X-T3"}
           for name in ("twin-a.jpg", "twin-b.jpg", "twin-c.jpg")},
        "old-copy.jpg": {**NONE, "taken_local": "2015-07-04T10:00:00", "taken_source": "exif"},
        "plain.jpg": NONE,
        "blue.jpg": {**NONE, "taken_at": JUNE_2_2022 + 9 * 3600,
                     "taken_local": "2022-06-02T10:00:00", "taken_offset_min": 60,
                     "taken_source": "exif"},
        "broken.jpg": NONE,
        # mvhd's creation_time is UTC: no local time; ISO 6709 -33.8688+151.2093, -5.5 m
        "clip.mp4": {**NONE, "taken_at": JUNE_1_2021 + 10 * 3600, "taken_source": "quicktime",
                     "lat": -33.8688, "lon": 151.2093, "alt": -5.5,
                     "place": "Sydney, New South Wales, AU"},
    }


def _broken_exif(path: Path) -> Path:
    """A JPEG whose EXIF block is garbage after its header (the picture itself intact)."""
    exif_jpeg(path, (160, 20, 20), *PHOTOS["lisbon.jpg"][1:])
    data = path.read_bytes()
    t = data.index(b"Exif\x00\x00") + 6
    path.write_bytes(data[:t] + bytes(range(7, 67)) + data[t + 60:])
    return path


def make_archive(folder: Path) -> Path:
    for name, (colour, ifd0, exif, gps_ifd) in PHOTOS.items():
        exif_jpeg(folder / name, colour, ifd0, exif, gps_ifd)
    _broken_exif(folder / "broken.jpg")
    tagged_video(folder / "clip.mp4", CLIP_TAGS, color=(220, 20, 20))
    os.utime(folder / "plain.jpg", (PLAIN_MTIME, PLAIN_MTIME))
    # old-copy.jpg was just written: a copy whose mtime is now, taken in 2015
    return folder


def _index(folder: Path, db: Path, encoder: ToyEncoder, workers: int = 0):
    store = Store(str(db), create=not (db / "meta.json").exists())
    return index_paths([str(folder)], store, encoder, IndexOptions(workers=workers,
                                                                  progress=False))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("capture")
    archive = make_archive(base / "archive")
    report = _index(archive, base / "db", ToyEncoder(), workers=2)  # decoded in workers
    assert report.photos == len(PHOTOS) + 1 and report.videos == 1 and report.skipped == 0
    return archive, base / "db"


def _by_name(store: Store) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in store.item_rows(["path", "kind", *CAPTURE_NAMES]).to_pylist():
        out.setdefault(Path(r.pop("path")).name, []).append(r)
    return out


def _assert_capture(row: dict, want: dict) -> None:
    for name in CAPTURE_NAMES:
        if isinstance(want[name], float):
            assert row[name] == pytest.approx(want[name], abs=1e-7), name
        else:
            assert row[name] == want[name], name


def test_each_item_stores_what_its_camera_knew(indexed):
    _, db = indexed
    rows = _by_name(Store(str(db)))
    expected = _expected()
    assert set(rows) == set(expected)
    for name, want in expected.items():
        for row in rows[name]:  # a video's frames all carry the file's capture
            _assert_capture(row, want)
    assert {r["kind"] for r in rows["clip.mp4"]} == {"frame"}
    # every file is recorded as read, the broken and the empty ones too
    assert {f["captured"] for f in Store(str(db)).file_rows()} == {True}


def test_a_broken_exif_block_is_indexed_with_nulls(indexed):
    archive, db = indexed
    store = Store(str(db))
    row = store.get_items([item_id(str(archive / "broken.jpg"))])
    (got,) = row.values()
    assert got["width"] == 64 and got["height"] == 48
    assert {c: got[c] for c in CAPTURE_NAMES} == NONE
    assert not store.skipped_rows()


def _names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


@pytest.fixture(scope="module")
def searcher(indexed) -> Searcher:
    return Searcher(Store(str(indexed[1])), ToyEncoder())


def _found(searcher: Searcher, **filters) -> set[str]:
    return set(_names(searcher.search(["red"], k=50, capture=CaptureFilter.of(**filters))))


def test_taken_between_two_dates_on_the_cameras_clock(searcher):
    # 08:00 on 15 March in Tokyo (14 March, 23:00 UTC) is taken on the 15th
    assert _found(searcher, taken_since="2020-03-15") == {
        "tokyo.jpg", "lisbon.jpg", "clip.mp4", "saopaulo.jpg", "blue.jpg"}
    assert _found(searcher, taken_until="2020-03-14") == {
        "sydney.jpg", "twin-a.jpg", "twin-b.jpg", "twin-c.jpg", "old-copy.jpg"}
    # both days included; São Paulo's 1 January 2022 is not in 2021
    assert _found(searcher, taken_since="2021-06-01", taken_until="2021-12-31") == {
        "lisbon.jpg", "clip.mp4"}
    # a time of day: Lisbon's 14:03:22 is after 14:00, the clip's 10:00 UTC is not
    assert _found(searcher, taken_since="2021-06-01T14:00", taken_until="2021-06-01") == {
        "lisbon.jpg"}
    # the last second of 2019 on Sydney's clock
    assert _found(searcher, taken_since="2019-12-31T23:59:59",
                  taken_until="2019-12-31T23:59:59.5") == {"sydney.jpg"}


def test_a_copy_is_found_by_its_capture_date_not_its_mtime(searcher, indexed):
    archive, _ = indexed
    assert os.stat(archive / "old-copy.jpg").st_mtime > datetime(2024, 1, 1).timestamp()
    assert _found(searcher, taken_until="2015-12-31") == {"old-copy.jpg"}
    assert "old-copy.jpg" not in _found(searcher, taken_since="2016-01-01")
    # the mtime filter (--since/--until) sees the copy's date
    mtime_2015 = searcher.search(["red"], k=50, until=datetime(2016, 1, 1).timestamp())
    assert "old-copy.jpg" not in _names(mtime_2015)


def test_taken_or_modified_falls_back_to_the_mtime_only_when_asked(searcher):
    may_5 = {"taken_since": "2018-05-05", "taken_until": "2018-05-05"}
    assert _found(searcher, **may_5) == set()
    assert _found(searcher, **may_5, or_modified=True) == {"plain.jpg"}
    # a file with a capture time keeps it, whatever its mtime
    assert "old-copy.jpg" not in _found(searcher, taken_since="2024-01-01", or_modified=True)


def test_near_a_place_by_name_and_by_point(searcher):
    assert _found(searcher, near="Sydney") == {"sydney.jpg", "clip.mp4"}
    assert _found(searcher, near="sao paulo") == {"saopaulo.jpg"}  # accents, case
    assert _found(searcher, near="TOKYO, JP", within_km=1) == {"tokyo.jpg"}
    # 38.71, -9.14 lies 3.64 km from 38.7, -9.1 (haversine, by hand)
    assert _found(searcher, near="38.7,-9.1", within_km=4) == {"lisbon.jpg"}
    assert _found(searcher, near=(38.7, -9.1), within_km=3.5) == set()
    # from Sydney: Tokyo 7,826 km, São Paulo 13,358 km, Lisbon 18,177 km (haversine)
    assert _found(searcher, near="Sydney", within_km=13_000) == {
        "sydney.jpg", "clip.mp4", "tokyo.jpg"}


def test_camera_and_lens(searcher):
    assert _found(searcher, camera="canon") == {"lisbon.jpg"}
    assert _found(searcher, camera="EOS R5") == {"lisbon.jpg"}
    assert _found(searcher, camera="nikon d850") == {"sydney.jpg"}  # across make and model
    assert _found(searcher, camera="IPHONE") == {"saopaulo.jpg"}
    assert _found(searcher, camera="x-t3") == {"twin-a.jpg", "twin-b.jpg", "twin-c.jpg"}
    assert _found(searcher, lens="rf50") == {"lisbon.jpg"}
    assert _found(searcher, lens="24-70") == {"tokyo.jpg"}
    assert _found(searcher, camera="canon", lens="24-70") == set()
    assert _found(searcher, camera="sony", near="Tokyo", taken_since="2020-01-01") == {
        "tokyo.jpg"}


def _undated_last_by_score(hits, dated: list[str]) -> None:
    tail = hits[len(dated):]
    assert [h.score for h in tail] == sorted((h.score for h in tail), reverse=True)
    assert {Path(h.path).name for h in tail} == {"broken.jpg", "plain.jpg"}


def test_sorted_by_date_newest_and_oldest_ties_by_score_then_id(searcher, indexed):
    archive, _ = indexed
    twins = sorted(["twin-a.jpg", "twin-b.jpg"], key=lambda n: item_id(str(archive / n)))
    # on the wall clock: São Paulo 2022-01-01 08:00, Lisbon 2021-06-01 14:03, the clip
    # 2021-06-01 10:00 (UTC), Tokyo 2020-03-15, Sydney 2019-12-31, the three 2018-08-08
    # pictures (twin-a and twin-b score the same: by id; twin-c is less red), 2015
    newest = ["saopaulo.jpg", "lisbon.jpg", "clip.mp4", "tokyo.jpg", "sydney.jpg", *twins,
              "twin-c.jpg", "old-copy.jpg"]
    hits = searcher.search(["red"], k=50, sort="newest")
    assert _names(hits)[:len(newest)] == newest
    _undated_last_by_score(hits, newest)
    a, b = (h for h in hits if Path(h.path).name in twins)
    assert a.score == b.score
    oldest = ["old-copy.jpg", *twins, "twin-c.jpg", "sydney.jpg", "tokyo.jpg", "clip.mp4",
              "lisbon.jpg", "saopaulo.jpg"]
    hits = searcher.search(["red"], k=50, sort="oldest")
    assert _names(hits)[:len(oldest)] == oldest
    _undated_last_by_score(hits, oldest)
    assert _names(searcher.search(["red"], k=3, sort="newest")) == newest[:3]
    # or modified: a file without a capture time sorts by its mtime (broken.jpg was just
    # written; plain.jpg's is 2018-05-05, between the 2018-08-08 pictures and 2015)
    by_either = searcher.search(["red"], k=50, sort="newest",
                                capture=CaptureFilter(or_modified=True))
    assert _names(by_either) == ["broken.jpg", *newest[:-1], "plain.jpg", "old-copy.jpg"]


def test_a_date_order_keeps_only_hits_above_the_relevance_floor(searcher):
    everything = searcher.search(["red"], k=50)
    best = everything[0].score
    floor = 0.8 * best  # RELATIVE_FLOOR
    above = {Path(h.path).name for h in everything if h.score >= floor}
    assert "blue.jpg" not in above and len(above) == len(everything) - 1
    assert set(_names(searcher.search(["red"], k=50, sort="newest"))) == above
    # an absolute floor instead, in either order
    everyone = searcher.search(["red"], k=50, sort="newest", min_score=-1.0)
    assert _names(everyone)[0] == "blue.jpg"  # the newest picture, and the least red
    top = searcher.search(["red"], k=50, min_score=everything[2].score)
    assert _names(top) == _names(everything[:3])


def test_json_carries_the_capture(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    assert main(["search", "red", "--db", str(db), "--json", "--near", "Lisbon",
                 "--within", "10"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    want = _expected()["lisbon.jpg"]
    for name in ("taken_at", "taken_local", "lat", "lon", "alt", "camera_make",
                 "camera_model", "lens", "place"):
        assert hit[name] == (pytest.approx(want[name]) if isinstance(want[name], float)
                             else want[name]), name
    assert main(["search", "red", "--db", str(db), "--json", "--taken-since", "2015-01-01",
                 "--taken-until", "2019-12-31", "--camera", "x-t3", "--sort", "oldest"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [Path(h["path"]).name for h in hits][-1] == "twin-c.jpg"
    assert {h["taken_local"] for h in hits} == {"2018-08-08T12:00:00"}
    assert main(["search", "red", "--db", str(db), "--near", "Sydney", "--sort", "newest",
                 "--min-score", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "clip.mp4" in lines[0] and "sydney.jpg" in lines[1]
    assert lines[1].endswith("[2019-12-31 23:59:59, Sydney, New South Wales, AU]")
    assert lines[0].endswith("[2021-06-01 10:00:00 UTC, Sydney, New South Wales, AU]")


@pytest.mark.parametrize("flags, message", [
    (["--near", "Qwxzyville"], "no town called 'Qwxzyville'"),
    (["--near", "95,10"], "not a point on Earth"),
    (["--taken-since", "2021-13-01"], "not a date"),
    (["--taken-since", "2022-01-01", "--taken-until", "2021-01-01"], "after the last"),
    (["--near", "Lisbon", "--within", "0"], "radius"),
    (["--sort", "newest", "--min-score", "nope"], None),
])
def test_cli_refuses_what_it_cannot_read(indexed, capsys, flags, message):
    _, db = indexed
    capsys.readouterr()
    try:
        rc = main(["search", "red", "--db", str(db), *flags])
    except SystemExit as e:  # argparse: a usage error
        rc = e.code
    err = capsys.readouterr().err
    if message is None:
        assert rc == 2
    else:
        assert rc == 1 and message in err and len(err.strip().splitlines()) == 1


def test_status_counts_captures(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    assert main(["status", "--db", str(db), "--json"]) == 0
    # a capture time: 9 photos and the clip's frame; a point: 4 photos and the frame
    assert json.loads(capsys.readouterr().out)["captures"] == {"taken": 10, "placed": 5}
    assert main(["status", "--db", str(db)]) == 0
    assert "what the camera knew: 10 items with a capture time, 5 with a GPS position" in (
        capsys.readouterr().out)


# -- an index made before captures were read ------------------------------------------
def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_old(db: Path) -> None:
    """``db`` as Loupe wrote it before captures were read: no capture columns in the
    items table, no ``captured`` in the files table, saved indexes without them."""
    store = Store(str(db))
    store.items().drop_columns(CAPTURE_NAMES)
    store.files().drop_columns(["captured"])
    meta = json.loads((db / "meta.json").read_text())
    meta.pop("capture_rev", None)
    (db / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(db / "faiss")
    column = next(iter(store.meta.encoders))
    load_index(Store(str(db)), column)  # as the old code saved it: no capture_rev
    for rows in (db / "faiss").glob("*.rows"):
        t = feather.read_table(rows)
        feather.write_feather(t.drop_columns([c for c in CATALOG_CAPTURE
                                              if c in t.column_names]), rows)
    for info in (db / "faiss").glob("*.json"):
        saved = json.loads(info.read_text())
        saved.pop("capture_rev", None)
        info.write_text(json.dumps(saved))


def _all_rows(store: Store) -> list[dict]:
    return sorted(store.items().to_arrow().to_pylist(), key=lambda r: r["id"])


@pytest.fixture
def old_db(indexed, tmp_path) -> Path:
    db = tmp_path / "old"
    shutil.copytree(indexed[1], db)
    make_old(db)
    return db


def test_readers_of_an_older_index_take_the_missing_columns_as_null(old_db):
    before = _digest(old_db)
    store = Store(str(old_db))
    assert "lat" not in store.items(create=False).schema.names
    searcher = Searcher(store, ToyEncoder())
    hits = searcher.search(["red"], k=50)
    assert len(hits) == len(PHOTOS) + 2 and all(h.place is None for h in hits)
    assert searcher.search(["red"], k=50, capture=CaptureFilter.of(near="Sydney")) == []
    undated = searcher.search(["red"], k=50, sort="newest")  # by score, the floor kept
    assert set(_names(undated)) == set(_names(hits)) - {"blue.jpg"}
    assert [h.score for h in undated] == sorted((h.score for h in hits
                                                 if h.score >= 0.8 * hits[0].score),
                                                reverse=True)
    row = store.get_items([hits[0].id])[hits[0].id]
    assert row["taken_at"] is None and row["path"] == hits[0].path
    assert store.capture_counts() == {"taken": 0, "placed": 0}
    assert store.uncaptured_files() == {f["path"] for f in store.file_rows()}
    assert _digest(old_db) == before  # nothing was written


def test_the_next_run_reads_the_captures_without_running_a_model(indexed, old_db):
    archive, fresh = indexed
    searcher = Searcher(Store(str(old_db)), ToyEncoder())  # open before, kept open after
    assert searcher.search(["red"], k=50, capture=CaptureFilter.of(near="Sydney")) == []
    counting = ToyEncoder()
    report = _index(archive, old_db, counting)
    assert counting.pixel_calls == 0 and counting.images_embedded == 0  # no model ran
    assert report.recaptured == len(PHOTOS) + 2 and report.embedded == 0
    assert report.unchanged == len(PHOTOS) + 2
    # the rows are those a run that read the captures wrote: vectors, indexed_at and
    # all, the capture columns now filled
    assert _all_rows(Store(str(old_db))) == _all_rows(Store(str(fresh)))
    assert {f["captured"] for f in Store(str(old_db)).file_rows()} == {True}
    # the searcher opened before sees them, its FAISS index's rows read again
    assert _found(searcher, near="Sydney") == {"sydney.jpg", "clip.mp4"}
    assert _names(searcher.search(["red"], k=2, sort="newest")) == ["saopaulo.jpg",
                                                                    "lisbon.jpg"]
    again = _index(archive, old_db, counting)
    assert again.recaptured == 0 and counting.images_embedded == 0


def test_a_changed_file_is_embedded_and_the_others_only_read(indexed, old_db, capsys):
    archive, _ = indexed
    work = old_db.parent / "archive"
    shutil.copytree(archive, work)
    db = old_db.parent / "old-of-copy"
    counting = ToyEncoder()
    assert _index(work, db, counting).embedded == len(PHOTOS) + 2
    make_old(db)
    exif_jpeg(work / "twin-c.jpg", (175, 45, 45), *PHOTOS["twin-a.jpg"][1:])  # changed
    capsys.readouterr()
    assert main(["index", str(work), "--db", str(db), "--workers", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    n = len(PHOTOS) + 1
    assert f"read what the camera knew for {n} files indexed before (no re-embedding)" in out
    assert ", 1 items embedded (" in out
    rows = _by_name(Store(str(db)))
    _assert_capture(rows["twin-c.jpg"][0], _expected()["twin-a.jpg"])
    _assert_capture(rows["tokyo.jpg"][0], _expected()["tokyo.jpg"])


def test_the_0_1_fixture_gains_the_columns_from_its_next_writer(tmp_path):
    """The release-0.1 index (tests/fixtures/index-0.1): its files are all unread; the
    first writer adds the columns, null, and its answers stay the same."""
    from helpers.toys import SoundToyEncoder
    from test_old_index import EXPECTED, FIXTURE, _same_hits

    db = tmp_path / "db"
    shutil.copytree(FIXTURE / "db", db)
    store = Store(str(db))
    assert len(store.uncaptured_files()) == len(store.file_rows()) > 0
    with store.writing("test"):
        assert store.add_capture_columns()
    store = Store(str(db))
    assert set(CAPTURE_NAMES) <= set(store.items().schema.names)
    assert set(store.item_rows(["place"])["place"].to_pylist()) == {None}
    searcher = Searcher(store, SoundToyEncoder())
    for q in EXPECTED["queries"].values():
        if "vector" in q:
            got = searcher.search_vector(np.asarray(q["vector"], np.float32), k=20, **q["kw"])
        else:
            got = searcher.search(q["terms"], k=20, **q["kw"])
        _same_hits(got, q["hits"])


def test_write_captures_without_pylance_rewrites_the_rows_alike(indexed, tmp_path,
                                                                monkeypatch):
    """Without pylance (no Lance dataset under the table) the same values land through
    LanceDB's merge_insert: every row of the file, nothing else."""
    archive, fresh = indexed
    db = tmp_path / "db"
    shutil.copytree(fresh, db)
    make_old(db)
    import lancedb.table

    def no_lance(self):
        raise ImportError("pylance")

    monkeypatch.setattr(lancedb.table.LanceTable, "to_lance", no_lance)
    assert _index(archive, db, ToyEncoder()).recaptured == len(PHOTOS) + 2
    assert _all_rows(Store(str(db))) == _all_rows(Store(str(fresh)))


# -- the pieces ------------------------------------------------------------------------
def test_place_names_resolve_offline():
    lisbon = find_place("Lisbon")
    assert (lisbon.label, lisbon.lat, lisbon.lon) == ("Lisbon, Lisbon, PT", 38.71667, -9.13333)
    assert find_place("lisbon, maine").label == "Lisbon, Maine, US"
    assert find_place("Lisbon, US").label == "Lisbon, Maine, US"  # the most populous there
    assert find_place("  SÃO paulo ").label == "São Paulo, São Paulo, BR"
    assert find_place("Paris, Texas").label == "Paris, Texas, US"
    assert find_place("paris, france").label == "Paris, Île-de-France, FR"
    assert find_place("New York").label == "New York City, New York, US"
    with pytest.raises(LoupeError, match="nearest names: lisbon"):
        find_place("Lisbn")


def test_the_place_mask_is_the_great_circle_distance():
    """float32 unit vectors and a dot product (float64 in the ring about the radius),
    against haversine distances in float64: random points, radii from 50 m to half the
    globe, near the poles and the antimeridian."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    lat = np.concatenate([rng.uniform(-90, 90, 4000), rng.uniform(84, 90, 500)])
    lon = np.concatenate([rng.uniform(-180, 180, 4000), rng.uniform(-180, 180, 500)])
    centre = [(38.7, -9.1), (89.5, 10.0), (-10.0, 179.99)]
    # points close to each centre, so that small radii hold some
    for c_lat, c_lon in centre:
        lat = np.concatenate([lat, c_lat + rng.normal(0, 0.002, 300).clip(-0.5, 0.5)])
        lon = np.concatenate([lon, (c_lon + rng.normal(0, 0.002, 300) + 180) % 360 - 180])
    lat = np.clip(lat, -90, 90)
    rows = pa.table({"lat": pa.array(list(lat) + [None], pa.float64()),
                     "lon": pa.array(list(lon) + [None], pa.float64())})
    lat64, lon64 = points(rows)
    units, exact = unit_vectors(lat64, lon64), unit_vectors(lat64, lon64, np.float64)
    for point in centre:
        d = great_circle_km(lat, lon, point)
        for km in (0.05, 0.2, 1.0, 25.0, 1000.0, 10_000.0, 20_000.0):
            got = near_mask(units, exact, point, km)
            assert not got[-1]  # a row without a point is never near
            np.testing.assert_array_equal(got[:-1], d <= km)


def test_wall_clock_seconds():
    assert wall_seconds("2021-06-01") == JUNE_1_2021
    assert wall_seconds("2021-06-01T14:03:22+05:00") == JUNE_1_2021 + 14 * 3600 + 202
    f = CaptureFilter.of(taken_since="2021-06-01", taken_until="2021-06-01")
    assert (f.taken_since, f.taken_until) == (JUNE_1_2021, JUNE_1_2021 + DAY)
    f = CaptureFilter.of(taken_until="2021-06-01T12:00")
    assert f.taken_until == JUNE_1_2021 + 12 * 3600
    assert CaptureFilter.of() == CaptureFilter()


def test_a_searcher_sees_captures_counted_after_it_loaded(indexed, tmp_path):
    """A reader that loaded the index between a capture write and its count (the
    writer commits the rows, then counts the write in meta.json) reads the catalog's
    capture columns again at its next search."""
    import pyarrow as pa

    from loupe.search.store.store import _update_by_path

    archive, fresh = indexed
    db = tmp_path / "db"
    shutil.copytree(fresh, db)
    store = Store(str(db))
    searcher = Searcher(store, ToyEncoder())
    lisbon = CaptureFilter.of(near="Lisbon")
    assert _found(searcher, near="Lisbon") == {"lisbon.jpg"}
    moved = pa.table({"path": [str(archive / "lisbon.jpg")], "lat": [-33.8688],
                      "lon": [151.2093], "place": ["Sydney, New South Wales, AU"]})
    _update_by_path(store.items(), moved)  # committed, not yet counted
    assert searcher.search(["red"], k=50, capture=lisbon)[0].place == "Baixa, Lisbon, PT"
    store.meta.update(capture_rev=store.capture_rev() + 1)
    assert searcher.search(["red"], k=50, capture=lisbon) == []
    assert "lisbon.jpg" in _found(searcher, near="Sydney")


# -- the web UI ------------------------------------------------------------------------
def test_the_ui_filters_sorts_and_shows_what_the_camera_knew(indexed, monkeypatch):
    import sys

    from streamlit.testing.v1 import AppTest
    from test_ui_app import APP, TIMEOUT

    archive, db = indexed
    monkeypatch.setenv("LOUPE_UI_GATED", "1")
    monkeypatch.setattr(sys, "argv", [APP, "--db", str(db)])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.text_input(key="query").input("red").run()
    assert not at.exception, at.exception

    def names() -> list[str]:
        return [Path(h["path"]).name for h in at.session_state["results"]]

    at.text_input(key="near").input("sydney").run()
    assert set(names()) == {"sydney.jpg", "clip.mp4"}
    at.text_input(key="near").input("").run()
    at.text_input(key="camera").input("x-t3").run()
    assert set(names()) == {"twin-a.jpg", "twin-b.jpg", "twin-c.jpg"}
    at.text_input(key="camera").input("").run()
    at.date_input(key="taken").set_value((datetime(2020, 3, 15).date(),
                                          datetime(2021, 12, 31).date())).run()
    assert set(names()) == {"tokyo.jpg", "lisbon.jpg", "clip.mp4"}
    at.selectbox(key="sort").select("Oldest taken").run()
    assert names() == ["tokyo.jpg", "clip.mp4", "lisbon.jpg"]
    at.text_input(key="near").input("Qwxzyville").run()
    assert not at.exception and "no town called 'Qwxzyville'" in " ".join(
        e.value for e in at.error)
    at.text_input(key="near").input("").run()
    lisbon = next(h for h in at.session_state["results"] if h["path"].endswith("lisbon.jpg"))
    assert lisbon["place"] == "Baixa, Lisbon, PT" and lisbon["camera_model"] == "Canon EOS R5"
    at.button(key=f"sel-2-{lisbon['id']}").click().run()
    assert not at.exception
    facts = " ".join(m.value for m in at.markdown)
    for fact in ("**Taken:** 2021-06-01 14:03:22 (UTC+01:00)", "**Place:** Baixa, Lisbon, PT",
                 "**Position:** 38.71000, -9.14000", "**Camera:** Canon EOS R5",
                 "**Lens:** Canon RF50mm F1.8 STM"):
        assert fact in facts, fact
