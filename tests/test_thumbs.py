"""Thumbnails and item access by id (search/thumbs.py), and the `loupe ui` command line."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from helpers.media import sine, solid, write_wav
from helpers.toys import SoundToyEncoder
from PIL import Image

import loupe.search.thumbs as thumbs
from loupe.indexer.errors import LoupeError
from loupe.indexer.media.video import frame_at
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.cli import main as loupe_main
from loupe.search.cli.ui import ui_command
from loupe.search.store import Store


@pytest.fixture
def indexed(tmp_path, corpus):
    root = tmp_path / "a"
    solid(root / "red.png", (255, 0, 0), size=(1200, 600))
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "clip.mp4")
    write_wav(root / "hum.wav", sine(200, 2.0))
    store = Store(str(tmp_path / "db"), create=True)
    index_paths([str(root)], store, SoundToyEncoder(), IndexOptions(workers=0, progress=False))
    rows = store.item_rows(["id", "path", "kind", "timestamp"]).to_pylist()
    return store, {(r["kind"], r["timestamp"]): r["id"] for r in rows}


def test_thumbnails_are_made_once_and_look_right(indexed, monkeypatch):
    store, ids = indexed
    data = thumbs.thumbnail(store, ids[("photo", None)])
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.size == (320, 160)
    assert np.abs(np.asarray(im, int) - (255, 0, 0)).max() < 8
    frame = Image.open(io.BytesIO(thumbs.thumbnail(store, ids[("frame", 20.0)])))
    full, _ = frame_at(thumbs.item_path(store, ids[("frame", 20.0)]), 20.0)
    small = np.asarray(full.resize(frame.size, Image.BICUBIC), int)
    assert frame.size == (320, 240) and np.abs(np.asarray(frame, int) - small).mean() < 6
    tile = Image.open(io.BytesIO(thumbs.thumbnail(store, ids[("audio", 0.0)])))
    assert tile.width == 320
    monkeypatch.setattr(thumbs, "item_picture", lambda *a: (_ for _ in ()).throw(
        AssertionError("decoded again")))
    assert thumbs.thumbnail(store, ids[("photo", None)]) == data  # from the cache


def test_only_items_of_the_index_are_reached(indexed):
    store, ids = indexed
    for bad in ("../../etc/passwd", "/etc/passwd", "", "0" * 24, None):
        with pytest.raises(LoupeError):
            thumbs.item_path(store, bad)
    with pytest.raises(LoupeError, match="no picture"):
        thumbs.item_picture(store, ids[("audio", 0.0)])


def test_ui_command_line(tmp_path, capsys):
    cmd = ui_command(str(tmp_path / "db"))
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "50"
    assert cmd[-2:] == ["--db", str(tmp_path / "db")] and cmd[1:4] == ["-m", "streamlit", "run"]
    assert cmd[4].endswith("ui/server.py") and "--no-indexing" not in cmd
    assert not any("token" in a.lower() for a in cmd)  # the key travels in the environment
    exposed = ui_command("db", host="0.0.0.0")
    assert exposed[exposed.index("--server.address") + 1] == "0.0.0.0"
    assert "--no-indexing" in exposed
    assert "--no-indexing" not in ui_command("db", host="0.0.0.0", allow_indexing=True)
    assert loupe_main(["ui", "--db", str(tmp_path / "nothing")]) == 1
    assert "no Loupe index" in capsys.readouterr().err


def test_ui_command_line_carries_the_query_bounds_and_the_sign_in():
    from loupe.ui.core import parse_args

    cmd = ui_command("db", max_upload_pixels=1000, max_sound_seconds=30.0, auth="oidc",
                     oidc_secrets="auth.toml")
    args = parse_args(cmd[cmd.index("--") + 1:])
    assert args.max_upload_pixels == 1000 and args.max_sound_seconds == 30.0
    assert args.query_limits.pixels == 1000 and args.auth == "oidc"
    assert os.path.isabs(args.oidc_secrets)
