"""The decode executor contract: decoding in-process, in a pool of worker processes,
in a pool that splits long videos into segments, and on Ray gives the same items and
the same stored rows (one archive: photos, a 24 s video with three shots, a sound)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.media import sine, solid, write_wav
from helpers.rows import assert_same_rows

from loupe.indexer import IndexOptions, index_paths, load_encoder
from loupe.search import Store

EXECUTORS = {
    "in-process": IndexOptions(workers=0, progress=False),
    "pool": IndexOptions(workers=2, video_segment=None, progress=False),
    "pool-split": IndexOptions(workers=2, video_segment=3.0, progress=False),
    "ray": IndexOptions(workers=1, progress=False, ray=""),
}


@pytest.fixture(scope="module")
def archive(corpus, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("archive")
    shutil.copy(corpus / "video" / "three_shots.mp4", d / "a.mp4")
    shutil.copy(corpus / "photos" / "coffee.png", d / "c.png")
    solid(d / "red.png", (240, 20, 20))
    write_wav(d / "tone.wav", sine(440, 3.0))  # no audio model: recorded as unsupported
    return d


def _index(archive: Path, db: Path, model: str, options: IndexOptions) -> dict:
    store = Store(str(db), create=True)
    report = index_paths([str(archive)], store, load_encoder(model, None, "cpu"), options)
    t = store.items(create=False).to_arrow().drop_columns(["indexed_at"]).to_pylist()
    return {"report": {k: v for k, v in report.as_dict().items()
                       if k not in ("seconds", "index_version")},
            "rows": sorted(t, key=lambda r: r["id"]),
            "files": sorted((f["path"], f["rows"], f["media"], f["problem"])
                            for f in store.file_rows()),
            "skipped": sorted((s["path"], s["code"]) for s in store.skipped_rows())}


@pytest.fixture(scope="module")
def one_pass(archive, tiny_clip_dir, tmp_path_factory) -> dict:
    return _index(archive, tmp_path_factory.mktemp("one") / "db", tiny_clip_dir,
                  EXECUTORS["in-process"])


@pytest.mark.parametrize("executor", [
    "pool", "pool-split", pytest.param("ray", marks=pytest.mark.slow)])
def test_every_executor_stores_what_one_pass_stores(executor, archive, tiny_clip_dir,
                                                    one_pass, tmp_path):
    if executor == "ray":
        ray = pytest.importorskip("ray")
    try:
        got = _index(archive, tmp_path / "db", tiny_clip_dir, EXECUTORS[executor])
    finally:
        if executor == "ray" and ray.is_initialized():
            ray.shutdown()
    want = one_pass
    assert want["report"]["frames"] >= 20 and want["skipped"] == [
        (str(archive / "tone.wav"), "unsupported")]
    assert got["report"] == want["report"]
    assert got["files"] == want["files"] and got["skipped"] == want["skipped"]
    assert_same_rows(got["rows"], want["rows"])
