"""Kill -9 at random moments, again and again, over a mixed archive (photos, a long video
decoded in segments, sounds, with an audio model; then an --add of a second model and
index tags): each killed step is run again until it finishes, and the final index
equals a clean run's (ids, vectors, file records, skipped files, tags)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.media import sine, solid, write_wav
from helpers.rows import assert_same_rows
from helpers.tiny_models import make_tiny_clip_dir, make_tiny_imagebind_dir

from loupe.search import Store
from loupe.search.explain import tag_rows

KILLS = 22  # at least this many kills over the whole job


def _loupe_cmd() -> list[str]:
    script = Path(sys.executable).parent / "loupe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "loupe.search.cli"]


def _archive(corpus: Path, d: Path) -> Path:
    for i in range(24):
        solid(d / "photos" / f"p{i:02d}.png", (10 * i, 255 - 10 * i, (37 * i) % 256))
    (d / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (d / "video").mkdir()
    shutil.copy(corpus / "video" / "three_shots.mp4", d / "video" / "long.mp4")
    for i, f in enumerate((200, 1200, 4000)):
        write_wav(d / "sound" / f"tone{i}.wav", sine(f, 3.0))
    return d


def _steps(archive: Path, db: Path, imagebind: str, clip: str) -> list[list[str]]:
    common = ["--db", str(db), "--workers", "2", "--every", "1", "--video-segment", "5",
              "--commit-rows", "4", "--batch-size", "4", "--quiet"]
    return [["index", str(archive), "--model", imagebind, *common],
            ["index", str(archive), "--model", imagebind, "--model", clip, "--add", *common],
            ["index", str(archive), "--tags", "everyday", *common]]


def _state(db: Path) -> dict:
    store = Store(str(db))
    cols = list(store.meta.encoders)
    rows = sorted(store.items(create=False).to_arrow().drop_columns(["indexed_at"])
                  .to_pylist(), key=lambda r: r["id"])
    files = sorted((f["path"], f["rows"], f["media"], f["problem"], f["sound"])
                   for f in store.file_rows())
    skipped = sorted((s["path"], s["code"], s["reason"]) for s in store.skipped_rows())
    tags = sorted((r["id"], tuple(r["labels"])) for r in tag_rows(store).to_pylist())
    return {"columns": cols, "rows": rows, "files": files, "skipped": skipped, "tags": tags,
            "incomplete": store.meta.incomplete_columns}


@pytest.mark.slow
def test_random_kills_then_reruns_end_equal_to_a_clean_run(corpus, tmp_path):
    archive = _archive(corpus, tmp_path / "archive")
    imagebind = make_tiny_imagebind_dir(str(tmp_path / "models" / "tiny-ib"))
    clip = make_tiny_clip_dir(str(tmp_path / "models" / "tiny-clip"))
    env = {k: v for k, v in os.environ.items() if k != "LOUPE_DB"}
    env.update(HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))

    clean = tmp_path / "clean"
    for step in _steps(archive, clean, imagebind, clip):
        subprocess.run([*_loupe_cmd(), *step], env=env, check=True, timeout=600,
                       stdout=subprocess.DEVNULL)

    db = tmp_path / "killed"
    rng = random.Random(20261201)
    kills = group_kills = 0
    for step in _steps(archive, db, imagebind, clip):
        while True:
            p = subprocess.Popen([*_loupe_cmd(), *step], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
            # kill early and often until enough kills are done, then let steps finish
            delay = rng.uniform(0.3, 6.0) if kills < KILLS else None
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                if rng.random() < 0.5:
                    os.killpg(p.pid, signal.SIGKILL)  # the run and its decode workers
                    group_kills += 1
                else:
                    p.kill()  # the run alone: its workers are orphaned mid-file
                p.wait()
                kills += 1
                time.sleep(0.05)
                continue
            err = p.stderr.read().decode()
            assert p.returncode == 0, err
            break
        for proc in (p,):
            proc.stderr.close()
    assert kills >= KILLS and 0 < group_kills < kills
    got, want = _state(db), _state(clean)
    assert got["columns"] == want["columns"] and got["incomplete"] == [] == want["incomplete"]
    assert got["files"] == want["files"]
    assert got["skipped"] == want["skipped"]
    assert got["tags"] == want["tags"]
    assert_same_rows(got["rows"], want["rows"])
    assert not (db / ".spill").exists()
