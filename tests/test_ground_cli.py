"""Grounding what the index knows (search/explain/grounding/cache.py), its cache,
drawing, and ``loupe ground``, with the tiny random Kosmos-2 of tests/helpers/tiny_models.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.toys import ToyEncoder
from PIL import Image

from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.cli import main as loupe_main
from loupe.search.explain.grounding.cache import ground_targets, resolve_target
from loupe.search.explain.grounding.draw import PALETTE, contact_sheet, draw_grounding
from loupe.search.explain.grounding.kosmos2 import Entity, Grounding, load_grounder
from loupe.search.store import Store


@pytest.fixture(scope="module")
def kosmos_dir(tmp_path_factory) -> str:
    from helpers.tiny_models import make_tiny_kosmos2_dir

    return make_tiny_kosmos2_dir(str(tmp_path_factory.mktemp("models") / "tiny-kosmos2"))


@pytest.fixture(scope="module")
def grounder(kosmos_dir):
    return load_grounder(kosmos_dir, "cpu")


@pytest.fixture
def archive(tmp_path, corpus) -> tuple[Path, Store]:
    root = tmp_path / "archive"
    root.mkdir()
    for name in ("astronaut.png", "chelsea.png", "coffee.png"):
        shutil.copy(corpus / "photos" / name, root / name)
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "clip.mp4")
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, ToyEncoder(), IndexOptions(workers=0, progress=False))
    return root, store


def _never(*args, **kwargs):
    raise AssertionError("the model ran although the answer was cached")


def test_cache_hit_is_identical_and_runs_no_model(archive, grounder, monkeypatch):
    root, store = archive
    targets = [resolve_target(str(root / n), store) for n in ("astronaut.png", "coffee.png")]
    first = ground_targets(grounder, targets, "Find the cup", store, max_new_tokens=12)
    assert [r.cached for r in first] == [False, False]
    monkeypatch.setattr(grounder, "ground", _never)
    again = ground_targets(grounder, targets, "Find the cup", store, max_new_tokens=12)
    assert [r.cached for r in again] == [True, True]
    assert [r.grounding.to_dict() for r in again] == [r.grounding.to_dict() for r in first]
    # Another prompt or another length is another answer: the model must run.
    with pytest.raises(AssertionError, match="cached"):
        ground_targets(grounder, targets[:1], "Find the cat", store, max_new_tokens=12)
    with pytest.raises(AssertionError, match="cached"):
        ground_targets(grounder, targets[:1], "Find the cup", store, max_new_tokens=13)


def test_cache_follows_content_not_names(archive, grounder, monkeypatch):
    root, store = archive
    t = resolve_target(str(root / "chelsea.png"), store)
    first = ground_targets(grounder, [t], None, store, max_new_tokens=8)[0]
    (root / "chelsea.png").rename(root / "renamed.png")
    moved = resolve_target(str(root / "renamed.png"), store)
    real_ground = grounder.ground
    monkeypatch.setattr(grounder, "ground", _never)
    hit = ground_targets(grounder, [moved], None, store, max_new_tokens=8)[0]
    assert hit.cached and hit.grounding.to_dict() == first.grounding.to_dict()
    Image.open(root / "renamed.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        root / "renamed.png")
    monkeypatch.setattr(grounder, "ground", real_ground)
    edited = ground_targets(grounder, [resolve_target(str(root / "renamed.png"), store)],
                            None, store, max_new_tokens=8)[0]
    assert not edited.cached


def test_targets_from_item_ids_and_video_moments(archive):
    root, store = archive
    rows = store.item_rows(["id", "path", "kind", "timestamp"]).to_pylist()
    photo = next(r for r in rows if r["path"].endswith("coffee.png"))
    frame = next(r for r in rows if r["kind"] == "frame" and r["timestamp"] == 20.0)
    t = resolve_target(photo["id"], store)
    assert (t.path, t.timestamp, t.item_id) == (photo["path"], None, photo["id"])
    t = resolve_target(frame["id"], store)
    assert (t.path, t.timestamp) == (str(root / "clip.mp4"), 20.0)
    assert resolve_target(str(root / "clip.mp4"), store, at=3.5).timestamp == 3.5
    with pytest.raises(LoupeError, match="--at"):
        resolve_target(str(root / "clip.mp4"), store)
    with pytest.raises(LoupeError, match="not one"):
        resolve_target(str(root / "coffee.png"), store, at=2.0)
    with pytest.raises(LoupeError, match="no item"):
        resolve_target("0123456789abcdef01234567", store)
    with pytest.raises(LoupeError, match="no such file"):
        resolve_target(str(root / "nope.jpg"), store)


def test_draw_grounding_puts_boxes_where_they_belong():
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    g = Grounding(caption="An image of a cat and a cup", prompt="<grounding>An image of",
                  model="m", width=800, height=400, text="",
                  entities=[Entity("a cat", 12, 17, [(100.0, 50.0, 300.0, 350.0)]),
                            Entity("a cup", 22, 27, [(500.0, 100.0, 700.0, 300.0),
                                                     (20.0, 20.0, 60.0, 60.0)])])
    out = np.asarray(draw_grounding(image, g))  # drawn at half the size it was made on
    assert np.asarray(image).sum() == 0  # the original is left alone
    assert tuple(out[120, 50]) == PALETTE[0]  # left edge of the cat box: x = 100 / 2
    assert tuple(out[120, 250]) == PALETTE[1]  # left edge of the first cup box
    assert tuple(out[100, 100]) == (0, 0, 0)  # inside the cat box, away from the label
    assert tuple(out[190, 390]) == (0, 0, 0)  # outside every box
    sheet = contact_sheet([(Image.fromarray(out), "0.0 s: a cat"), (image, "1.0 s")],
                          columns=2, tile_width=100)
    assert sheet.width == 2 * 106 + 6 and sheet.height > 50


def test_cli_ground_files_items_and_drawings(archive, kosmos_dir, tmp_path, capsys):
    root, store = archive
    base = ["--model", kosmos_dir, "--device", "cpu", "--db", store.dir,
            "--max-new-tokens", "10"]
    drawn = tmp_path / "drawn.jpg"
    assert loupe_main(["ground", str(root / "astronaut.png"), "--json", "--draw", str(drawn),
                       *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 1 and out[0]["cached"] is False
    assert {"caption", "entities", "prompt", "model", "width", "height"} <= set(out[0])
    assert (out[0]["width"], out[0]["height"]) == Image.open(root / "astronaut.png").size
    assert Image.open(drawn).size == (out[0]["width"], out[0]["height"])
    frame_id = next(r["id"] for r in store.item_rows(["id", "kind", "timestamp"])
                    .to_pylist() if r["kind"] == "frame" and r["timestamp"] == 9.0)
    assert loupe_main(["ground", frame_id, str(root / "astronaut.png"), "--json", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["target"]["timestamp"] == 9.0 and out[0]["cached"] is False
    assert out[1]["cached"] is True  # the astronaut was grounded by the first call
    assert loupe_main(["ground", str(root / "clip.mp4"), "--at", "9", *base]) == 0
    assert "(cached)" in capsys.readouterr().out  # the same moment as the frame's id


def test_cli_ground_video_writes_frames_sheet_and_reuses_the_cache(archive, kosmos_dir,
                                                                   tmp_path, capsys):
    root, store = archive
    out_dir, sheet = tmp_path / "g", tmp_path / "sheet.jpg"
    argv = ["ground", "--video", str(root / "clip.mp4"), "--every", "8", "--model", kosmos_dir,
            "--device", "cpu", "--db", store.dir, "--max-new-tokens", "8", "--json",
            "--batch-size", "2"]
    assert loupe_main(argv + ["--out", str(out_dir), "--sheet", str(sheet)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["target"]["timestamp"] for r in res] == [0.0, 8.0, 16.0]
    lines = (out_dir / "groundings.jsonl").read_text().splitlines()
    assert [json.loads(x)["target"]["timestamp"] for x in lines] == [0.0, 8.0, 16.0]
    assert len(list(out_dir.glob("frame_*.jpg"))) == 3 and Image.open(sheet).width > 0
    assert loupe_main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert all(r["cached"] for r in again)
    assert [r["caption"] for r in again] == [r["caption"] for r in res]


def test_cli_ground_errors_are_one_line(archive, kosmos_dir, tmp_path, capsys):
    root, store = archive
    cases = [
        (["ground", "--model", kosmos_dir], "ITEM_ID_OR_PATH"),
        (["ground", str(root / "clip.mp4"), "--model", kosmos_dir, "--db", store.dir], "--at"),
        (["ground", str(root / "coffee.png"), "--prompt", "<image> here"], "<image>"),
        (["ground", str(root / "coffee.png"), "--model", str(tmp_path / "none")],
         "no such Kosmos-2 model folder"),
    ]
    garbage = root / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    cases.append((["ground", str(garbage), "--model", kosmos_dir, "--db", store.dir],
                  "cannot read"))
    for argv, needle in cases:
        assert loupe_main(argv) == 1, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
