"""Long videos decoded in segments on several workers give exactly the one-pass result.

Levels: the frame sampler (segments joined by ``join_segments``, every possible split
point of a short-GOP clip with B-frames), the worker (``process_part`` + ``join_video``
with the soundtrack), the decode pool (real spawned workers: splitting happens, crashes
and irregular segments fall back to one pass, no spill is left) and a whole indexing run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers.rows import assert_same_rows
from helpers.toys import PixelEncoder, SoundToyEncoder
from test_video_decode import ramp, write_clip

from loupe.indexer.decode.pool import decode_files
from loupe.indexer.decode.results import SOUNDTRACK, DecodeSettings, FileResult
from loupe.indexer.decode.worker import join_video, process_file_with, process_part_with
from loupe.indexer.encoders.spec import AudioPreprocess, ImagePreprocess
from loupe.indexer.kinds import SkipCode
from loupe.indexer.media.segments import SegmentEdges, join_segments
from loupe.indexer.media.video import FrameSampler, plan_segments, sample_frames
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.indexer.scan import FileEntry
from loupe.search.store import Store


def _split_sample(path, interval, starts, threshold=0.35):
    """Sample each segment on its own, then join them as the decode pool does."""
    bounds = [None, *starts, None]
    segments, edges = [], []
    for k in range(len(starts) + 1):
        s = FrameSampler(path, interval, threshold, start_pts=bounds[k], end_pts=bounds[k + 1])
        segments.append(list(s))
        edges.append(s.edges)
    out = []
    for frames, j in zip(segments, join_segments(edges, bounds[:-1], threshold), strict=True):
        for i, f in enumerate(frames):
            if i == 0 and not j.keep_first:
                continue
            reason = "shot-change" if i == 0 and j.first_cut else f.reason
            out.append((f.timestamp, f.shot + j.shot_offset, reason, np.asarray(f.image)))
    return out


def _one_pass(path, interval, threshold=0.35):
    return [(f.timestamp, f.shot, f.reason, np.asarray(f.image))
            for f in sample_frames(path, interval, threshold)]


def _assert_same_frames(got, want):
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g[3], w[3])


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    """40 frames at 25 fps, a keyframe every 4 frames, B-frames, and cuts at frames 10,
    11 (two in a row), 23 and 31: split points fall on, before and after cuts."""
    tints = {0: (1.0, 0.6, 0.3), 10: (0.2, 0.4, 1.0), 11: (0.3, 1.0, 0.2),
             23: (1.0, 1.0, 0.1), 31: (0.6, 0.1, 0.8)}
    frames, tint = [], tints[0]
    for i in range(40):
        tint = tints.get(i, tint)
        frames.append(ramp(64, 48, shift=3 * i, tint=tint))
    path = tmp_path_factory.mktemp("clip") / "cuts.mp4"
    return write_clip(path, frames, pix_fmt="yuv420p",
                      options={"g": "4", "bf": "2", "sc_threshold": "0"})


def _frame_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(c.streams.video[0])]


def test_clip_has_what_the_tests_need(cut_clip):
    with av.open(str(cut_clip)) as c:
        s = c.streams.video[0]
        keys = [p.pts for p in c.demux(s) if p.is_keyframe and p.pts is not None]
        assert s.codec_context.has_b_frames
    assert len(keys) == 10
    shots = {f[1] for f in _one_pass(cut_clip, 1 / 25)}
    assert shots == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("interval", [Fraction(1, 25), Fraction(3, 25), 0.5])
def test_every_split_point_gives_the_one_pass_frames(cut_clip, interval):
    want = _one_pass(cut_clip, interval)
    pts = _frame_pts(cut_clip)
    # A start that is not a keyframe works too: the seek lands on the keyframe before it
    # and the frames before the start are dropped.
    for start in pts[1:]:
        _assert_same_frames(_split_sample(cut_clip, interval, [start]), want)
    _assert_same_frames(_split_sample(cut_clip, interval, pts[3:36:4]), want)
    _assert_same_frames(_split_sample(cut_clip, interval, pts[1:]), want)  # one frame each


def test_split_without_shot_detection(cut_clip):
    want = _one_pass(cut_clip, 0.2, threshold=None)
    _assert_same_frames(_split_sample(cut_clip, 0.2, _frame_pts(cut_clip)[5::7], None), want)


def test_corpus_videos_split_at_their_keyframes(corpus):
    mp4 = corpus / "video" / "three_shots.mp4"
    starts, duration = plan_segments(mp4, 3.0)
    assert starts == [102400, 204800] and duration == 24.0  # the keyframes at 8 and 16 s
    for interval in (1.0, 0.3):
        _assert_same_frames(_split_sample(mp4, interval, starts), _one_pass(mp4, interval))
    webm = corpus / "video" / "three_shots_10s.webm"
    starts, _ = plan_segments(webm, 3.0)
    assert starts == [5127]
    _assert_same_frames(_split_sample(webm, 0.5, starts), _one_pass(webm, 0.5))


def test_short_or_keyframe_poor_videos_are_not_split(corpus, cut_clip):
    assert plan_segments(cut_clip, 1.0) == ([], pytest.approx(1.6))  # under two segments
    # 10 s of webm with keyframes at 0 and 5.1 s: a seek to 5 s lands on the first
    assert plan_segments(corpus / "video" / "three_shots_10s.webm", 5.0)[0] == []
    with pytest.raises(ValueError):
        plan_segments(cut_clip, 0)


def test_segments_that_do_not_tile_are_refused(cut_clip):
    pts = _frame_pts(cut_clip)
    a = FrameSampler(cut_clip, 0.2, end_pts=pts[10])
    list(a)
    b = FrameSampler(cut_clip, 0.2, start_pts=pts[12])  # frames 10 and 11 are missing
    list(b)
    with pytest.raises(ValueError, match="expected"):
        join_segments([a.edges, b.edges], [None, pts[10]], 0.35)
    with pytest.raises(ValueError, match="out of order"):
        join_segments([a.edges, SegmentEdges(irregular="timestamps out of order")],
                      [None, pts[10]], 0.35)
    with pytest.raises(ValueError, match="no frame"):
        join_segments([a.edges, SegmentEdges()], [None, pts[10]], 0.35)
    with pytest.raises(ValueError, match="empty segment"):
        FrameSampler(cut_clip, 0.2, start_pts=pts[5], end_pts=pts[5])


# --- the worker: segments and soundtrack, joined -----------------------------------------


def _settings(spill: Path, **kw) -> DecodeSettings:
    spill.mkdir(exist_ok=True)
    return DecodeSettings(preprocesses=(ImagePreprocess(size=(24, 24)),),
                          audio=AudioPreprocess(), spill_dir=str(spill), **kw)


def _comparable(r: FileResult) -> tuple[dict, list]:
    """A result without where its inputs lie: its fields, and (item, inputs) pairs."""
    arrays = r.spill.arrays() if r.spill is not None else {"img0": r.pixels}
    items = []
    for it in r.items:
        key = "audio" if it.kind == "audio" else "img0"
        items.append((dataclasses.replace(it, src=0), np.array(arrays[key][it.src])))
    return dataclasses.asdict(dataclasses.replace(r, items=[], spill=None, pixels=None)), items


def _assert_same_result(got: FileResult, want: FileResult) -> None:
    (gf, gi), (wf, wi) = _comparable(got), _comparable(want)
    assert gf == wf
    assert [g[0] for g in gi] == [w[0] for w in wi]
    for g, w in zip(gi, wi, strict=True):
        np.testing.assert_array_equal(g[1], w[1])


def test_worker_parts_join_to_the_one_pass_result(corpus, tmp_path):
    path = str(corpus / "video" / "three_shots.mp4")
    size = os.path.getsize(path)
    settings = _settings(tmp_path / "spill", frame_interval=0.5)
    want = process_file_with(path, size, 7, settings)
    plan = process_file_with(path, size, 7, settings, split_seconds=3.0)
    assert plan.segments == [102400, 204800] and plan.items == [] and plan.spill is None
    assert plan.sound and plan.fingerprint == want.fingerprint
    parts = [process_part_with(path, size, 7, k, plan.segments, settings)
             for k in (SOUNDTRACK, 2, 0, 1)]  # any order
    got = join_video(plan, parts, settings.shot_threshold)
    assert [i.shot for i in got.items if i.kind == "frame"][::16] == [0, 1, 2]
    assert sum(i.kind == "audio" for i in got.items) == 12
    _assert_same_result(got, want)
    # Segment spills are joined, not copied: three files of frames, one of sound.
    assert [len(v) for v in got.spill.files.values()] == [3, 1]
    got.spill.remove()
    want.spill.remove()
    assert os.listdir(settings.spill_dir) == []


# --- the decode pool: real worker processes -----------------------------------------------


@pytest.fixture
def archive(corpus, tmp_path) -> Path:
    d = tmp_path / "archive"
    d.mkdir()
    shutil.copy(corpus / "video" / "three_shots.mp4", d / "a.mp4")
    shutil.copy(corpus / "video" / "three_shots_10s.webm", d / "b.webm")
    shutil.copy(corpus / "photos" / "coffee.png", d / "c.png")
    return d


def _entries(d: Path) -> list[FileEntry]:
    return [FileEntry(str(p), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(d.iterdir())]


def _pool_tasks():
    from helpers import pool_tasks

    return pool_tasks.file_task, pool_tasks.part_task


def _decode(d: Path, settings: DecodeSettings, workers: int, split: float | None = 3.0,
            ) -> dict[str, FileResult]:
    out = {}
    for r in decode_files(_entries(d), settings, frozenset(), workers, 8, split,
                          tasks=_pool_tasks()):
        assert r.path not in out, f"{r.path} came back twice"
        out[r.path] = r
    return out


def _log(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def pool_env(tmp_path, monkeypatch):
    log = tmp_path / "tasks.log"
    monkeypatch.setenv("LOUPE_TEST_LOG", str(log))
    return log


def test_pool_splits_long_videos_and_matches_one_pass(archive, tmp_path, pool_env):
    settings = _settings(tmp_path / "spill")
    want = _decode(archive, settings, workers=0)
    got = _decode(archive, settings, workers=2)
    a, b = str(archive / "a.mp4"), str(archive / "b.webm")
    ran = _log(pool_env)
    assert sorted(x for x in ran if x.startswith("part")) == sorted(
        [f"part {a} {k}" for k in (-1, 0, 1, 2)] + [f"part {b} {k}" for k in (-1, 0, 1)])
    assert set(got) == set(want)
    for p in want:
        _assert_same_result(got[p], want[p])
    for r in [*got.values(), *want.values()]:
        if r.spill is not None:
            r.spill.remove()
    assert os.listdir(settings.spill_dir) == []


def test_pool_without_splitting(archive, tmp_path, pool_env):
    settings = _settings(tmp_path / "spill")
    got = _decode(archive, settings, workers=2, split=None)
    assert not any(x.startswith("part") for x in _log(pool_env))
    assert got[str(archive / "a.mp4")].segments is None
    assert sum(i.kind == "frame" for i in got[str(archive / "a.mp4")].items) == 24


@pytest.mark.parametrize("trouble", ["LOUPE_TEST_IRREGULAR", "LOUPE_TEST_RAISE",
                                     "LOUPE_TEST_CRASH_ONCE"])
def test_a_failed_segment_means_one_pass(archive, tmp_path, pool_env, monkeypatch, trouble):
    a = str(archive / "a.mp4")
    settings = _settings(tmp_path / "spill")
    want = _decode(archive, settings, workers=0)
    if trouble == "LOUPE_TEST_CRASH_ONCE":
        monkeypatch.setenv("LOUPE_TEST_CRASH", a)
        monkeypatch.setenv("LOUPE_TEST_CRASH_ONCE", "1")
    else:
        monkeypatch.setenv(trouble, a)
    got = _decode(archive, settings, workers=2)
    assert set(got) == set(want)
    for p in want:
        assert got[p].code is None, got[p].reason
        _assert_same_result(got[p], want[p])
    assert _log(pool_env).count(f"file {a}") == 2  # the plan, then the one pass
    for r in [*got.values(), *want.values()]:
        if r.spill is not None:
            r.spill.remove()
    left = os.listdir(settings.spill_dir)
    if trouble == "LOUPE_TEST_CRASH_ONCE":
        # Workers killed with the pool leave what they were writing; the indexing run
        # removes its spill folder at the end.
        assert all(f.split("-")[1] == "0" for f in left)
    else:
        assert left == []  # late and failed parts left nothing


def test_a_video_that_always_crashes_is_reported_once(archive, tmp_path, pool_env,
                                                      monkeypatch):
    a = str(archive / "a.mp4")
    monkeypatch.setenv("LOUPE_TEST_CRASH", a)
    settings = _settings(tmp_path / "spill")
    got = _decode(archive, settings, workers=2)
    assert got[a].code == SkipCode.BAD and "crashed" in got[a].reason
    assert all(r.code is None and r.items for p, r in got.items() if p != a)


# --- a whole run ----------------------------------------------------------------------------


def _rows(store: Store) -> list[dict]:
    rows = store.items().to_arrow().to_pylist()
    for r in rows:
        r.pop("indexed_at")
    return sorted(rows, key=lambda r: r["id"])


def test_index_run_with_split_videos_equals_one_pass(archive, tmp_path):
    enc = [PixelEncoder(8), SoundToyEncoder()]
    stores = {}
    for name, opts in {"one": IndexOptions(workers=0, progress=False),
                       "split": IndexOptions(workers=2, video_segment=3.0,
                                             progress=False)}.items():
        stores[name] = Store(str(tmp_path / name), create=True)
        report = index_paths([str(archive)], stores[name], enc, opts)
        assert report.skipped == 0 and report.videos == 2
    assert_same_rows(_rows(stores["split"]), _rows(stores["one"]), atol=1e-6)
    assert not (tmp_path / "split" / ".spill").exists()
