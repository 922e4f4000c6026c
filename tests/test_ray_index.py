"""`loupe index --ray`: decoding and embedding on a (local) Ray cluster with Ray Data, rows
written as Lance fragments by lance-ray, give exactly the rows a local run writes (what
the camera knew included: place names are given on the driver)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest
from helpers.exif import MAKE, MODEL, TAKEN, exif_jpeg, gps, tagged_video

from loupe.search.cli import main
from loupe.search.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus):
    """Photos of several formats, a video with three shots, a broken file, not media; a
    JPEG and a phone video that say when and where they were taken."""
    base = tmp_path_factory.mktemp("ray")
    folder = base / "archive"
    folder.mkdir()
    for name in ("astronaut.png", "chelsea.png", "rocket.jpg", "retina.jpg",
                 "multipage_rgb.tif", "no_time_for_that_tiny.gif"):
        shutil.copy(corpus / "photos" / name, folder / name)
    shutil.copy(corpus / "photos" / "coffee.png", folder / "copy-of-coffee.png")
    (folder / "clips").mkdir()
    shutil.copy(corpus / "video" / "three_shots_10s.webm", folder / "clips" / "shots.webm")
    exif_jpeg(folder / "lisbon.jpg", (200, 60, 20), {MAKE: "Canon", MODEL: "EOS R5"},
              {TAKEN: "2021:06:01 14:03:22"}, gps((38, 42, 36), "N", (9, 8, 24), "W"))
    tagged_video(folder / "clips" / "phone.mp4", {
        "creation_time": "2021-06-01T10:00:00Z", "location": "-33.8688+151.2093/"},
        frames=30)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x01" * 64)
    (folder / "notes.txt").write_text("not media")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def _index(folder, db, model, *extra) -> int:
    return main(["index", str(folder), "--db", str(db), "--model", model, "--workers", "2",
                 "--quiet", "--every", "2", *extra])


def _table(t, drop: tuple[str, ...]) -> list[dict]:
    a = t.to_arrow()
    a = a.drop_columns([c for c in drop if c in a.column_names])
    key = "id" if "id" in a.column_names else "path"
    return sorted(a.to_pylist(), key=lambda r: r[key])


def _same_rows(a: Store, b: Store) -> int:
    col = next(iter(a.meta.encoders))
    assert list(a.meta.encoders) == list(b.meta.encoders)
    ra, rb = _table(a.items(), ("indexed_at",)), _table(b.items(), ("indexed_at",))
    assert len(ra) == len(rb) and len({r["id"] for r in rb}) == len(rb)  # no id twice
    for x, y in zip(ra, rb, strict=True):
        va, vb = x.pop(col), y.pop(col)
        assert x == y
        # one batch of other items' company apart: float noise only
        np.testing.assert_allclose(va, vb, atol=2e-5)
    assert _table(a.files(), ("indexed_at",)) == _table(b.files(), ("indexed_at",))
    assert _table(a.skipped(), ("at",)) == _table(b.skipped(), ("at",))
    return len(ra)


def test_ray_run_writes_exactly_the_rows_of_a_local_run(archive, tmp_path, tiny_clip_dir,
                                                        local_ray, capsys):
    assert _index(archive, tmp_path / "local", tiny_clip_dir) == 0
    capsys.readouterr()
    assert _index(archive, tmp_path / "ray", tiny_clip_dir, "--json", "--ray") == 0
    report = json.loads(capsys.readouterr().out)
    assert ray.is_initialized()  # it really ran on Ray
    local, remote = Store(str(tmp_path / "local")), Store(str(tmp_path / "ray"))
    n = _same_rows(local, remote)
    kinds = {r["kind"] for r in remote.items().to_arrow().select(["kind"]).to_pylist()}
    assert n > 10 and kinds == {"photo", "frame"}
    assert report["embedded"] == n and report["skipped"] == 1 and report["videos"] == 2
    places = {r["path"].rsplit("/", 1)[-1]: r["place"] for r in remote.items().to_arrow()
              .select(["path", "place"]).to_pylist() if r["place"]}
    assert places == {"lisbon.jpg": "Baixa, Lisbon, PT",
                      "phone.mp4": "Sydney, New South Wales, AU"}
    # the rows were appended as Lance fragments by lance-ray (one commit for the wave)
    import lance

    ds = lance.dataset(os.path.join(str(tmp_path / "ray"), "items.lance"))
    assert ds.count_rows() == n and len(ds.get_fragments()) >= 1

    # searches agree
    from loupe.search.engine import Searcher

    a = [h.id for h in Searcher(Store(str(tmp_path / "local"))).search(["a cat"], k=5)]
    b = [h.id for h in Searcher(Store(str(tmp_path / "ray"))).search(["a cat"], k=5)]
    assert a == b

    # an unchanged archive: nothing is embedded again; a changed file is redone on Ray,
    # its old rows replaced (no id twice), exactly as a local run replaces them
    assert _index(archive, tmp_path / "ray", tiny_clip_dir, "--json", "--ray") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["embedded"] == 0 and again["unchanged"] == again["files_seen"]
    shutil.copy(archive / "chelsea.png", tmp_path / "chelsea.png")
    try:
        shutil.copy(archive / "astronaut.png", archive / "chelsea.png")
        assert _index(archive, tmp_path / "local", tiny_clip_dir) == 0
        assert _index(archive, tmp_path / "ray", tiny_clip_dir, "--ray") == 0
        assert _same_rows(Store(str(tmp_path / "local")), Store(str(tmp_path / "ray"))) == n
    finally:
        shutil.copy(tmp_path / "chelsea.png", archive / "chelsea.png")


def _listening_sockets() -> dict[int, list[str]]:
    """{pid: [local address of each listening TCP socket]} from /proc (no tools needed)."""
    by_inode: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # LISTEN
                    by_inode[cols[9]] = cols[1].rsplit(":", 1)[0]
    out: dict[int, list[str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in by_inode:
                    out.setdefault(int(pid), []).append(by_inode[target[8:-1]])
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_local_ray_listens_on_this_machine_only(archive, tmp_path, tiny_clip_dir, local_ray):
    assert _index(archive, tmp_path / "db", tiny_clip_dir, "--ray") == 0
    assert ray.is_initialized()
    # 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc writes them
    loopback = {"0100007F", "00000000000000000000000001000000",
                "0000000000000000FFFF00000100007F"}
    ray_sockets = {pid: addrs for pid, addrs in _listening_sockets().items()
                   if "ray" in _cmdline(pid) or "gcs_server" in _cmdline(pid)}
    assert ray_sockets, "no listening socket of a Ray process was found"
    wide = {_cmdline(pid)[:80]: addrs for pid, addrs in ray_sockets.items()
            if set(addrs) - loopback}
    assert wide == {}


def test_ray_refuses_a_run_without_every_model_of_the_index(archive, tmp_path, tiny_clip_dir,
                                                             local_ray):
    """A library caller indexing with one of an index's two models: a Ray run appends
    whole rows, so it refuses (the CLI always runs every model of the index)."""
    from helpers.tiny_models import make_tiny_clip_dir

    from loupe.indexer.encoders import load_encoder
    from loupe.indexer.errors import LoupeError
    from loupe.indexer.pipeline import IndexOptions, index_paths

    other = make_tiny_clip_dir(str(tmp_path / "other-tiny"), seed=1)
    db = tmp_path / "two"
    assert main(["index", str(archive / "rocket.jpg"), "--db", str(db), "--model", tiny_clip_dir,
                 "--model", other, "--workers", "0", "--quiet"]) == 0
    one = load_encoder(tiny_clip_dir, None, "cpu")
    with pytest.raises(LoupeError, match="--ray indexes with every model"):
        index_paths([str(archive)], Store(str(db)), one,
                    IndexOptions(workers=1, progress=False, ray=""))


def test_items_written_by_ray_keep_the_store_schema(archive, tmp_path, tiny_clip_dir, local_ray):
    db = tmp_path / "schema"
    assert _index(archive / "clips", db, tiny_clip_dir, "--ray") == 0
    store = Store(str(db))
    col = next(iter(store.meta.encoders))
    field = store.items().schema.field(col)
    assert pa.types.is_fixed_size_list(field.type) and field.type.list_size == \
        store.meta.encoders[col].dim


def test_without_the_ray_extra_the_error_says_what_to_install(monkeypatch):
    import sys

    from loupe.indexer.errors import LoupeError
    from loupe.indexer.pipeline import ray as ray_index

    monkeypatch.setitem(sys.modules, "lance_ray", None)  # as if not installed
    with pytest.raises(LoupeError, match=r"lance_ray is missing\): pip install -e '\.\[ray\]'"):
        ray_index._ray()
