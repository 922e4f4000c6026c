"""Video frame sampling: real corpus clips, and hostile clips made here with PyAV."""

from __future__ import annotations

import resource
import shutil
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from loupe.indexer.media.upright import upright
from loupe.indexer.media.video import (
    FrameSampler,
    VideoDecodeError,
    VideoFrame,
    probe_video,
    sample_frames,
)


@pytest.fixture(scope="module")
def three_shots(corpus) -> Path:
    return corpus / "video" / "three_shots.mp4"


@pytest.fixture(scope="module")
def three_shots_webm(corpus) -> Path:
    return corpus / "video" / "three_shots_10s.webm"


def reference_frames(path: Path) -> list[tuple[float, av.VideoFrame]]:
    """(pts * time_base, frame) of every frame, decoded plainly (no threads) in order."""
    with av.open(str(path)) as c:
        return [(float(f.pts * f.time_base), f) for f in c.decode(c.streams.video[0])]


def write_clip(path: Path, frames, *, codec="libx264", pix_fmt="yuv444p", rate=25,
               time_base: Fraction | None = None, pts=None, rotation=None, hflip=False,
               options=None) -> Path:
    """Encode (H, W, 3) uint8 arrays; ``pts`` in ``time_base`` units for irregular timing."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate, options=options or {})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            s.codec_context.time_base = time_base
            s.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation, hflip=hflip)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def ramp(w: int, h: int, shift: int = 0, tint=(1.0, 0.6, 0.3)) -> np.ndarray:
    """A smooth colour ramp, shifted ``shift`` pixels (a slow pan)."""
    x = (np.arange(w)[None, :] + shift) % 256
    y = np.arange(h)[:, None]
    base = (x * 3 + y * 2) % 256
    return np.stack([(base * t) for t in tint], axis=-1).astype(np.uint8)


# --- the real corpus clip ---------------------------------------------------------------


def test_three_shots_samples_match_pyav_decode(three_shots):
    sampler = sample_frames(three_shots, interval=1.0)
    got = list(sampler)
    assert sampler.problems == [] and sampler.complete
    assert all(isinstance(f, VideoFrame) for f in got)

    ref = reference_frames(three_shots)
    assert sampler.frames_decoded == len(ref) == 600
    by_ts = dict(ref)
    ts = [f.timestamp for f in got]
    assert all(t in by_ts for t in ts)  # exactly a decoded frame's pts * time_base
    assert ts == sorted(set(ts))
    assert [f.index for f in got] == list(range(len(got)))
    for f in got:
        expect = by_ts[f.timestamp].to_ndarray(format="rgb24")
        assert f.image.mode == "RGB" and (f.width, f.height) == (480, 360) == f.image.size
        assert np.array_equal(np.asarray(f.image), expect), f.timestamp

    # One per second of a 24 s, 25 fps clip: 0, 1, ... 23.
    assert len(got) == 24
    assert np.allclose(np.diff(ts), 1.0, atol=0.041)

    changes = [f for f in got if f.reason == "shot-change"]
    assert [round(f.timestamp, 1) for f in changes] == [8.0, 16.0]
    assert sampler.shot_changes == 2
    assert [f.shot for f in got] == [0] * 8 + [1] * 8 + [2] * 8
    assert {f.reason for f in got} == {"interval", "shot-change"}


def test_three_shots_every_frame_and_max_frames(three_shots):
    # A tiny interval gives every decoded frame, in order, and the cuts stay the same.
    sampler = sample_frames(three_shots, interval=1 / 60)
    stamps, cuts = [], []
    for f in sampler:
        stamps.append(f.timestamp)
        if f.reason == "shot-change":
            cuts.append(f.timestamp)
    assert stamps == [t for t, _ in reference_frames(three_shots)]
    assert cuts == [8.0, 16.0]

    few = sample_frames(three_shots, max_frames=3)
    assert [f.timestamp for f in few] == [0.0, 1.0, 2.0]


def test_three_shots_without_detection(three_shots):
    got = list(sample_frames(three_shots, interval=2.0, shot_threshold=None))
    assert [f.timestamp for f in got] == [float(t) for t in range(0, 24, 2)]
    assert {f.shot for f in got} == {0} and {f.reason for f in got} == {"interval"}


def test_webm_vp9(three_shots_webm):
    sampler = sample_frames(three_shots_webm)
    got = list(sampler)
    assert sampler.problems == []
    by_ts = dict(reference_frames(three_shots_webm))
    assert len(got) == 10
    for f in got:
        assert np.array_equal(np.asarray(f.image), by_ts[f.timestamp].to_ndarray(format="rgb24"))
    changes = [f.timestamp for f in got if f.reason == "shot-change"]
    assert len(changes) == 1 and abs(changes[0] - 8.0) < 0.1
    assert [f.shot for f in got] == [0] * 8 + [1] * 2


def test_probe(three_shots, three_shots_webm):
    info = probe_video(three_shots)
    assert (info.width, info.height, info.codec, info.has_audio) == (480, 360, "h264", True)
    assert info.duration == pytest.approx(24.0, abs=0.05) and info.fps == pytest.approx(25.0)
    info = probe_video(three_shots_webm)
    assert info.codec == "vp9" and info.duration == pytest.approx(10.0, abs=0.05)


# --- clips made here ----------------------------------------------------------------------


def test_cut_between_samples_found_at_its_frame(tmp_path):
    # 25 fps; frames 0-62 pan over a warm ramp, 63-99 a cool one: the cut is at 2.52 s.
    frames = [ramp(64, 48, i) for i in range(63)]
    frames += [ramp(64, 48, i, tint=(0.2, 0.5, 1.0)) for i in range(37)]
    path = write_clip(tmp_path / "cut.mp4", frames)
    got = [(f.timestamp, f.shot, f.reason) for f in sample_frames(path)]
    assert got == [(0.0, 0, "interval"), (1.0, 0, "interval"), (2.0, 0, "interval"),
                   (2.52, 1, "shot-change"), (3.0, 1, "interval")]


def test_short_clip_gives_a_frame(tmp_path):
    path = write_clip(tmp_path / "short.mp4", [ramp(32, 32, i) for i in range(10)])  # 0.4 s
    sampler = sample_frames(path, interval=5.0)
    got = list(sampler)
    assert len(got) == 1 and got[0].timestamp == 0.0 and got[0].image.size == (32, 32)
    assert sampler.problems == []
    one = write_clip(tmp_path / "one.mp4", [ramp(32, 32)])
    assert len(list(sample_frames(one))) == 1


@pytest.mark.parametrize(("codec", "pix_fmt", "ext"),
                         [("libx264", "yuv444p", "mp4"), ("mpeg4", "yuv420p", "avi")])
def test_odd_size(tmp_path, codec, pix_fmt, ext):
    path = write_clip(tmp_path / f"odd.{ext}", [ramp(97, 61, i) for i in range(30)],
                      codec=codec, pix_fmt=pix_fmt)
    got = list(sample_frames(path, interval=0.5))
    assert len(got) == 3
    assert all((f.width, f.height) == (97, 61) == f.image.size for f in got)
    by_ts = dict(reference_frames(path))
    for f in got:
        assert np.array_equal(np.asarray(f.image), by_ts[f.timestamp].to_ndarray(format="rgb24"))
    assert (probe_video(path).width, probe_video(path).height) == (97, 61)


def test_variable_frame_rate_uses_pts(tmp_path):
    pts_ms = [0, 40, 45, 200, 210, 990, 1000, 1033, 2500, 2510, 4020]
    path = write_clip(tmp_path / "vfr.mkv", [ramp(64, 48, i) for i in range(len(pts_ms))],
                      time_base=Fraction(1, 1000), pts=pts_ms, options={"bf": "0"})
    decoded = [t for t, _ in reference_frames(path)]
    assert decoded == [p / 1000 for p in pts_ms]  # the container kept the irregular times

    every = [f.timestamp for f in sample_frames(path, interval=0.001, shot_threshold=None)]
    assert every == decoded
    # First frame at or after each whole second: 0 -> 0, 1 -> 1.0, 2 -> 2.5, 3 and 4 -> 4.02.
    per_second = [f.timestamp for f in sample_frames(path, interval=1.0, shot_threshold=None)]
    assert per_second == [0.0, 1.0, 2.5, 4.02]


@pytest.mark.parametrize(("rotation", "hflip", "expect"), [
    (90, False, lambda a: np.rot90(a, 1)),  # PyAV's degrees are counter-clockwise
    (-90, False, lambda a: np.rot90(a, -1)),
    (180, False, lambda a: np.rot90(a, 2)),
    (0, True, lambda a: a[:, ::-1]),
    (90, True, lambda a: np.rot90(a, 1)[:, ::-1]),  # mirror after rotating
])
def test_rotation_metadata_applied(tmp_path, rotation, hflip, expect):
    frames = []
    for _ in range(5):
        a = np.zeros((32, 64, 3), np.uint8)
        a[:, :16] = (255, 255, 255)  # left band
        a[:8, :] = (255, 0, 0)  # top band
        frames.append(a)
    path = write_clip(tmp_path / "rot.mp4", frames, rotation=rotation, hflip=hflip)
    (raw_ts, raw), = reference_frames(path)[:1]
    got = list(sample_frames(path))
    assert len(got) == 1
    f = got[0]
    want = expect(raw.to_ndarray(format="rgb24"))
    assert np.array_equal(np.asarray(f.image), want)
    assert (f.width, f.height) == (want.shape[1], want.shape[0])
    info = probe_video(path)
    assert (info.width, info.height) == (f.width, f.height)
    if rotation in (90, -90):
        assert (f.width, f.height) == (32, 64)


def test_upright_without_matrix_is_identity(three_shots):
    with av.open(str(three_shots)) as c:
        frame = next(c.decode(video=0))
    arr = frame.to_ndarray(format="rgb24")
    assert upright(arr, frame) is arr


# --- damaged and non-video files ------------------------------------------------------


def _faststart_copy(src: Path, dst: Path) -> Path:
    """Remux (no re-encode) with the index at the front, as streaming-friendly MP4s are."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    return dst


def test_truncated_mp4_with_index_at_end_is_a_clear_error(three_shots, tmp_path):
    data = three_shots.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoDecodeError, match="moov"):
        sample_frames(path)


def test_truncated_faststart_mp4_keeps_good_frames(three_shots, tmp_path):
    full = _faststart_copy(three_shots, tmp_path / "fast.mp4")
    complete = [f.timestamp for f in sample_frames(full, shot_threshold=None)]
    assert len(complete) == 24
    data = full.read_bytes()
    cut = tmp_path / "fast_cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    sampler = sample_frames(cut)
    got = list(sampler)  # must not raise
    assert 5 <= len(got) < 24
    assert [f.timestamp for f in got] == complete[: len(got)]
    assert not sampler.complete
    assert len(sampler.problems) == 1 and "truncated" in sampler.problems[0]


def test_truncated_webm_keeps_good_frames(three_shots_webm, tmp_path):
    data = three_shots_webm.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    sampler = sample_frames(cut)
    got = list(sampler)
    assert 3 <= len(got) < 10
    assert [f.timestamp for f in got] == [0.007 + i for i in range(len(got))]
    assert not sampler.complete and "truncated" in " ".join(sampler.problems)


def test_corrupt_middle_keeps_going(three_shots, tmp_path):
    data = bytearray(three_shots.read_bytes())
    rng = np.random.default_rng(1)
    for tenth in (3, 5, 7):  # inside the media data; the index at the end stays intact
        start = len(data) * tenth // 10
        data[start:start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    sampler = sample_frames(path)
    got = list(sampler)  # must not raise
    assert got[0].timestamp == 0.0 and got[-1].timestamp > 20.0  # went on past the damage
    assert len(got) >= 20
    assert not sampler.complete
    assert len(sampler.problems) == 1  # one summary line, not one per packet
    assert "undecodable packet" in sampler.problems[0]


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 500, b"ftypisom" + b"\xff" * 64])
def test_not_a_video(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError) as e:
        sample_frames(path)
    assert "\n" not in str(e.value) and str(e.value)
    with pytest.raises(VideoDecodeError):
        probe_video(path)


def test_zero_bytes_reason(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        sample_frames(path)


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found"):
        sample_frames(tmp_path / "nope.mp4")


def test_audio_only(corpus, tmp_path):
    with pytest.raises(VideoDecodeError, match="no video stream"):
        sample_frames(corpus / "sounds" / "bell.oga")
    # Also under a video extension.
    disguised = shutil.copy(corpus / "sounds" / "bell.oga", tmp_path / "bell.mp4")
    with pytest.raises(VideoDecodeError, match="no video stream"):
        probe_video(disguised)


def test_bad_arguments(three_shots):
    with pytest.raises(ValueError):
        sample_frames(three_shots, interval=0)
    with pytest.raises(ValueError):
        sample_frames(three_shots, max_frames=-1)


# --- streaming and memory ------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_long_video_streams_in_bounded_memory(tmp_path):
    # 5 minutes at 25 fps, 64x48: 7500 frames of a slow pan.
    base = ramp(64 * 5, 48)
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(7500):
            x = (i // 5) % (64 * 4)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, x:x + 64]), "rgb24")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)

    sampler = sample_frames(path, interval=1.0)
    assert isinstance(sampler, FrameSampler)
    first = next(sampler)
    assert first.timestamp == 0.0
    assert sampler.frames_decoded < 50  # streaming: nowhere near the 7500 frames

    tracemalloc.start()
    try:
        count = 1
        rss_at = {}
        for _frame in sampler:
            count += 1
            if count in (30, 290):
                rss_at[count] = _rss_mib()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300 and sampler.frames_decoded == 7500
    assert sampler.problems == []
    assert peak < 4 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    # Resident memory between the 30th and 290th second does not grow with the length.
    assert rss_at[290] - rss_at[30] < 16, rss_at


def test_frame_at_gives_the_frame_on_screen(corpus):
    """frame_at(t) is the frame PyAV decodes at t (exactly, for a stored timestamp), the
    last frame before t between frames, the last frame past the end."""
    from loupe.indexer.media.video import frame_at

    path = corpus / "video" / "three_shots.mp4"
    with av.open(str(path)) as c:
        frames = {f.pts * f.time_base: f.to_ndarray(format="rgb24") for f in c.decode(video=0)}
    for t in (0.0, 3.0, 8.0, 20.0, 23.96):
        image, ts = frame_at(path, t)
        want = frames[Fraction(t).limit_denominator(100)]
        assert ts == t and np.array_equal(np.asarray(image), want)
    image, ts = frame_at(path, 12.345)
    assert ts == 12.32 and np.array_equal(np.asarray(image), frames[Fraction(1232, 100)])
    assert frame_at(path, 99.0)[1] == 23.96
