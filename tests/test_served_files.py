"""Only the files it indexed: an item's file is opened and served (search/served.py,
ui/routes.py) only while it is the file that was indexed, streamed with byte ranges
and flat memory.

A small index (a photo, the corpus video, a sound) made with the toy sound encoder is
served by the routes mounted in a plain Starlette app (TestClient), and, for streaming,
by a real uvicorn on 127.0.0.1 in a process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.file_server import (
    memory,
    open_files,
    record_file,
    reset_peak,
    serve_files,
    sparse_file,
)
from helpers.media import sine, solid, write_wav
from helpers.toys import SoundToyEncoder
from starlette.applications import Starlette
from starlette.testclient import TestClient

from loupe.indexer.errors import LoupeError
from loupe.indexer.fingerprint import FULL_HASH_LIMIT
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search import FileChanged, FileGone, open_item, thumbs
from loupe.search.served import CHANGED, GONE, media_type
from loupe.search.store import Store
from loupe.ui.routes import byte_range, file_routes, file_url

OPTS = IndexOptions(workers=0, progress=False)


def _index(roots: list[Path], db: Path) -> Store:
    store = Store(str(db), create=True)
    index_paths([str(r) for r in roots], store, SoundToyEncoder(), OPTS)
    return store


@pytest.fixture
def indexed(tmp_path, corpus):
    """(store, {name: item id}, root, client): red.png, clip.mp4 (its frame at 0 s), hum.wav."""
    root = tmp_path / "archive"
    solid(root / "red.png", (255, 0, 0), size=(64, 48))
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "clip.mp4")
    write_wav(root / "sounds" / "hum.wav", sine(200, 2.0))
    store = _index([root], tmp_path / "db")
    ids = {}
    for r in store.item_rows(["id", "path", "kind", "timestamp"]).to_pylist():
        if r["kind"] != "audio" or r["path"].endswith(".wav"):
            ids.setdefault(Path(r["path"]).name, r["id"])
    assert ids.keys() == {"red.png", "clip.mp4", "hum.wav"}
    client = TestClient(Starlette(routes=file_routes(store.dir)))
    return store, ids, root, client


def _refused(store, client, item_id, message=CHANGED, status=409) -> None:
    resp = client.get(f"/loupe/file/{item_id}")
    assert resp.status_code == status and resp.text == message
    with pytest.raises(FileChanged, match=message):
        open_item(store, item_id).close()
    with pytest.raises(FileChanged):
        thumbs.item_path(store, item_id)


def test_a_served_file_is_the_indexed_file_byte_for_byte(indexed):
    store, ids, root, client = indexed
    for name, path, kind in (("red.png", root / "red.png", "image/png"),
                             ("clip.mp4", root / "clip.mp4", "video/mp4"),
                             ("hum.wav", root / "sounds" / "hum.wav", "audio/wav")):
        resp = client.get(f"/loupe/file/{ids[name]}")
        assert resp.status_code == 200, resp.text
        assert resp.content == path.read_bytes()
        h = resp.headers
        assert h["content-type"] == kind and h["content-length"] == str(path.stat().st_size)
        assert h["accept-ranges"] == "bytes" and h["x-content-type-options"] == "nosniff"
        assert "no-store" in h["cache-control"]
        with open_item(store, ids[name]) as f:
            assert (f.size, f.media_type, f.path, f.row["id"]) == (
                path.stat().st_size, kind, str(path), ids[name])
            assert f.file.read() == path.read_bytes()
    assert store.meta.roots == [os.path.realpath(root)]
    # a picture is decoded from the checked file
    assert thumbs.item_picture(store, ids["red.png"]).getpixel((3, 3)) == (255, 0, 0)


def test_ids_that_are_no_items_are_404(indexed):
    store, _, _, client = indexed
    for bad in ("0" * 24, "abc!", "%00", "a%20b"):
        resp = client.get(f"/loupe/file/{bad}")
        assert resp.status_code == 404 and "no such item" in resp.text
    assert client.get("/loupe/file/..%2F..%2Fetc%2Fpasswd").status_code == 404
    with pytest.raises(LoupeError) as e:
        open_item(store, "0" * 24)
    assert not isinstance(e.value, FileChanged)


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_a_file_swapped_for_a_link_out_of_the_roots_is_refused(indexed, tmp_path, swap):
    """The link's target is a byte copy with the same mtime: size, mtime and
    fingerprint all match, so only the real path's place (outside every root) can
    refuse it."""
    store, ids, root, client = indexed
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    sound = root / "sounds" / "hum.wav"
    st = sound.stat()
    shutil.copy(sound, secret / "hum.wav")
    os.utime(secret / "hum.wav", ns=(st.st_atime_ns, st.st_mtime_ns))
    if swap == "file":
        sound.unlink()
        sound.symlink_to(secret / "hum.wav")
    else:
        shutil.rmtree(root / "sounds")
        (root / "sounds").symlink_to(secret, target_is_directory=True)
    assert os.stat(sound).st_mtime_ns == st.st_mtime_ns
    _refused(store, client, ids["hum.wav"])
    # and a secret of another size
    (secret / "hum.wav").write_bytes(b"TOP SECRET: ssh private key material\n")
    _refused(store, client, ids["hum.wav"])


def test_a_swap_between_the_path_check_and_the_open_is_caught_on_the_descriptor(
        indexed, tmp_path, monkeypatch):
    """The folder is swapped for a link (to a byte copy with the same mtime) just after
    the real path was worked out: the open follows the new link, and only the open
    descriptor's own path (Linux: /proc/self/fd) shows that it lies outside the roots."""
    import loupe.search.served as served

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    store, ids, root, client = indexed
    sounds, elsewhere = root / "sounds", tmp_path / "elsewhere"
    shutil.copytree(sounds, elsewhere, copy_function=shutil.copy2)
    real_realpath = os.path.realpath

    def realpath_then_swap(path, *a, **kw):
        out = real_realpath(path, *a, **kw)
        if str(path).endswith("hum.wav") and not sounds.is_symlink():
            shutil.rmtree(sounds)
            sounds.symlink_to(elsewhere, target_is_directory=True)
        return out

    monkeypatch.setattr(served.os.path, "realpath", realpath_then_swap)
    with pytest.raises(FileChanged):
        open_item(store, ids["hum.wav"])
    assert sounds.is_symlink()


def test_a_link_inside_the_roots_is_served(tmp_path):
    root = tmp_path / "archive"
    solid(root / "red.png", (255, 0, 0))
    os.symlink(root / "red.png", root / "link-to-red.png")
    store = _index([root], tmp_path / "db")
    [link] = [r["id"] for r in store.item_rows(["id", "path"]).to_pylist()
              if r["path"].endswith("link-to-red.png")]
    with open_item(store, link) as f:
        assert f.file.read() == (root / "red.png").read_bytes()


def test_an_edited_file_is_refused(indexed):
    store, ids, root, client = indexed
    clip = root / "clip.mp4"
    original, st = clip.read_bytes(), clip.stat()
    assert client.get(f"/loupe/file/{ids['clip.mp4']}").status_code == 200
    # same size, other bytes, new mtime
    edited = bytearray(original)
    edited[1000:1010] = b"0123456789"
    clip.write_bytes(bytes(edited))
    assert clip.stat().st_size == st.st_size and clip.stat().st_mtime_ns != st.st_mtime_ns
    _refused(store, client, ids["clip.mp4"])
    # same size and the old mtime put back: the fingerprint tells (a small file's is a
    # hash of all of it), although the file was served, and so checked, before
    assert st.st_size <= FULL_HASH_LIMIT
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert clip.stat().st_mtime_ns == st.st_mtime_ns
    _refused(store, client, ids["clip.mp4"])
    with pytest.raises(FileChanged):
        thumbs.item_picture(store, ids["clip.mp4"])
    # the indexed bytes back (and their mtime): it is the indexed file again
    clip.write_bytes(original)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    resp = client.get(f"/loupe/file/{ids['clip.mp4']}")
    assert resp.status_code == 200 and resp.content == original


def test_a_photo_edited_in_place_keeping_size_and_mtime_is_refused(indexed):
    store, ids, root, client = indexed
    photo = root / "red.png"
    st = photo.stat()
    thumbs.item_picture(store, ids["red.png"])  # checked once already
    with open(photo, "r+b") as f:  # one byte in the middle, then the old mtime back
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (photo.stat().st_size, photo.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    _refused(store, client, ids["red.png"])
    with pytest.raises(FileChanged):
        thumbs.item_picture(store, ids["red.png"])


def test_a_file_renamed_away_is_gone(indexed):
    store, ids, root, client = indexed
    os.rename(root / "sounds" / "hum.wav", root / "sounds" / "hum-moved.wav")
    _refused(store, client, ids["hum.wav"], GONE, 410)
    with pytest.raises(FileGone):
        open_item(store, ids["hum.wav"])
    # a folder put where the file was is no file
    (root / "sounds" / "hum.wav").mkdir()
    _refused(store, client, ids["hum.wav"])


def test_byte_ranges(indexed):
    _, ids, root, client = indexed
    data = (root / "clip.mp4").read_bytes()
    size = len(data)
    url = f"/loupe/file/{ids['clip.mp4']}"

    def get(rng: str):
        return client.get(url, headers={"Range": rng})

    first = get("bytes=0-99")
    assert first.status_code == 206 and first.content == data[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.headers["content-length"] == "100"
    mid = size // 2
    middle = get(f"bytes={mid}-{mid + 4999}")
    assert middle.status_code == 206 and middle.content == data[mid:mid + 5000]
    assert middle.headers["content-range"] == f"bytes {mid}-{mid + 4999}/{size}"
    rest = get(f"bytes={mid}-")
    assert rest.status_code == 206 and rest.content == data[mid:]
    suffix = get("bytes=-500")
    assert suffix.status_code == 206 and suffix.content == data[-500:]
    assert suffix.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"
    past_end = get(f"bytes={size - 10}-{size + 1000}")  # cut to the file
    assert past_end.status_code == 206 and past_end.content == data[-10:]
    for bad in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        resp = get(bad)
        assert resp.status_code == 416, bad
        assert resp.headers["content-range"] == f"bytes */{size}" and resp.content == b""
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x"):
        resp = get(ignored)  # a header the route does not take: the whole file
        assert resp.status_code == 200 and resp.content == data, ignored
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["content-type"] == "video/mp4"
    head = client.head(url, headers={"Range": "bytes=100-199"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["content-length"] == "100"


def test_byte_range_parsing():
    assert byte_range(None, 10) is None and byte_range("", 10) is None
    assert byte_range("bytes=0-0", 10) == (0, 1)
    assert byte_range("bytes=2-", 10) == (2, 10)
    assert byte_range("bytes=-3", 10) == (7, 10)
    assert byte_range("bytes=-30", 10) == (0, 10)
    assert byte_range("bytes=5-100", 10) == (5, 10)
    assert byte_range("bytes=-", 10) is None
    with pytest.raises(ValueError):
        byte_range("bytes=0-", 0)


def test_media_types_are_media_only():
    assert media_type("/a/b.MP4", "video") == "video/mp4"
    assert media_type("/a/b.flac", "audio") == "audio/flac"
    for name in ("page.html", "drawing.svg", "script.js", "noext"):
        assert media_type(name, "image") == "application/octet-stream", name
    assert media_type("film.strange", "video") == "video/mp4"
    assert media_type("x.html", None) == "application/octet-stream"


def test_file_url():
    assert file_url("abc123", "https://loupe.example:8443/search?item=x") == (
        "https://loupe.example:8443/loupe/file/abc123")
    assert file_url("abc123", "http://127.0.0.1:8501/").endswith(
        "127.0.0.1:8501/loupe/file/abc123")
    assert file_url("abc123", None).startswith("http://") and file_url(
        "abc123", None).endswith("/loupe/file/abc123")


def test_roots_are_kept_across_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    solid(a / "red.png", (255, 0, 0))
    solid(b / "blue.png", (0, 0, 255))
    store = _index([a], tmp_path / "db")
    index_paths([str(b), str(tmp_path / "not-there")], store, SoundToyEncoder(), OPTS)
    assert store.meta.roots == sorted(os.path.realpath(p) for p in (a, b))
    since = store.meta.roots_since
    index_paths([str(a)], store, SoundToyEncoder(), OPTS)
    assert store.meta.roots_since == since  # the first run that kept roots


def test_a_root_reached_through_a_link_is_kept_as_its_real_folder(tmp_path):
    real = tmp_path / "real"
    solid(real / "red.png", (255, 0, 0))
    (tmp_path / "via").symlink_to(real, target_is_directory=True)
    store = _index([tmp_path / "via"], tmp_path / "db")
    assert store.meta.roots == [os.path.realpath(real)]
    [iid] = store.item_rows(["id"])["id"].to_pylist()
    with open_item(store, iid) as f:
        assert f.path == str(tmp_path / "via" / "red.png")
    # the link now points elsewhere, at a byte copy with the same mtime
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(real / "red.png", other / "red.png")
    (tmp_path / "via").unlink()
    (tmp_path / "via").symlink_to(other, target_is_directory=True)
    with pytest.raises(FileChanged):
        open_item(store, iid)


def _forget_roots(db: Path) -> None:
    """Make the index look as one made before roots were kept."""
    meta = json.loads((db / "meta.json").read_text())
    del meta["roots"], meta["roots_since"]
    (db / "meta.json").write_text(json.dumps(meta))


def test_an_index_from_before_roots_were_kept(tmp_path):
    """Without roots, a stored path must not pass through a link; files recorded before
    the first run that kept roots keep that rule, the later ones need a root."""
    plain, linked = tmp_path / "plain", tmp_path / "real"
    solid(plain / "red.png", (255, 0, 0))
    solid(linked / "green.png", (0, 255, 0))
    (tmp_path / "via").symlink_to(linked, target_is_directory=True)
    db = tmp_path / "db"
    store = _index([plain, tmp_path / "via"], db)
    _forget_roots(db)
    store = Store(str(db))
    assert store.meta.roots is None
    ids = {Path(r["path"]).name: r["id"]
           for r in store.item_rows(["id", "path"]).to_pylist()}
    with open_item(store, ids["red.png"]) as f:
        assert f.file.read() == (plain / "red.png").read_bytes()
    with pytest.raises(FileChanged):  # its stored path goes through the link "via"
        open_item(store, ids["green.png"])
    # a later run over another folder keeps its root: red.png is served as before...
    solid(tmp_path / "later" / "blue.png", (0, 0, 255))
    index_paths([str(tmp_path / "later")], store, SoundToyEncoder(), OPTS)
    assert store.meta.roots == [os.path.realpath(tmp_path / "later")]
    with open_item(store, ids["red.png"]):
        pass
    # (a record without a fingerprint is never the indexer's: a row written by hand)
    [record] = store.file_rows(f"path = '{plain / 'red.png'}'")
    store.upsert_files([{**record, "fingerprint": None}])
    with pytest.raises(FileChanged):
        open_item(store, ids["red.png"])
    store.upsert_files([record])
    open_item(store, ids["red.png"]).close()
    # ... nor once it is a link (to a copy with the same mtime)
    shutil.copy2(plain / "red.png", tmp_path / "copy.png")
    (plain / "red.png").unlink()
    (plain / "red.png").symlink_to(tmp_path / "copy.png")
    with pytest.raises(FileChanged):
        open_item(store, ids["red.png"])
    # a file recorded after roots were kept needs a root, even on a plain path
    solid(tmp_path / "outside" / "x.png", (1, 2, 3))
    late = record_file(store, str(tmp_path / "outside" / "x.png"), "photo")
    with pytest.raises(FileChanged):
        open_item(store, late)


def test_the_old_fixture_index_has_no_roots(tmp_path):
    db = tmp_path / "db"
    shutil.copytree(Path(__file__).parent / "fixtures" / "index-0.1" / "db", db)
    store = Store(str(db))
    assert store.meta.roots is None and store.meta.roots_since is None


GIB = 1 << 30


def test_streaming_a_large_file_keeps_the_servers_memory_flat(indexed, tmp_path):
    """1 GiB (sparse) through a real uvicorn on 127.0.0.1: the server's peak RSS grows
    by far less than the file; a middle range is found by seeking; a client that goes
    away leaves no descriptor open."""
    store, ids, root, _ = indexed
    big = root / "big.mp4"
    marks = {0: b"FIRST", GIB // 2: b"MIDDLE", GIB - 4: b"LAST"}
    sparse_file(str(big), GIB, marks)
    iid = record_file(store, str(big))
    with serve_files(store.dir) as server:
        url = server.file_url(iid)
        with urllib.request.urlopen(server.file_url(ids["red.png"])) as r:  # warm up
            assert r.read() == (root / "red.png").read_bytes()
        req = urllib.request.Request(url, headers={"Range": f"bytes={GIB // 2}-{GIB // 2 + 5}"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 206 and r.read() == b"MIDDLE"
        before = memory(server.pid)
        assert reset_peak(server.pid)
        got, head, tail = 0, b"", b""
        t0 = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == GIB
            while chunk := r.read(1 << 20):
                if got == 0:
                    head = chunk[:5]
                if got <= GIB // 2 < got + len(chunk):
                    at = GIB // 2 - got
                    assert chunk[at:at + 6] == b"MIDDLE"[: len(chunk) - at]
                got += len(chunk)
                tail = (tail + chunk)[-4:]
        seconds = time.monotonic() - t0
        during = memory(server.pid)
        assert got == GIB and head == b"FIRST" and tail == b"LAST"
        grew = during["peak"] - before["rss"]
        print(f"1 GiB in {seconds:.1f} s; server RSS {before['rss'] >> 20} MiB, peak while "
              f"streaming {during['peak'] >> 20} MiB (+{grew >> 20} MiB)")
        assert grew < 64 << 20, (before, during)
        # a client that reads a little and goes away: the server closes the file
        r = urllib.request.urlopen(url, timeout=60)
        r.read(1 << 20)
        r.close()
        deadline = time.monotonic() + 20
        while open_files(server.pid, str(big)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_files(server.pid, str(big)) == 0
        assert memory(server.pid)["peak"] - before["rss"] < 64 << 20
