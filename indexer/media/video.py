"""Sample still frames from videos with PyAV: one per time interval plus one per shot change.

Decoding streams frame by frame (memory does not grow with the video's length) and every
decoded frame passes through a cheap hard-cut detector, so a cut between two interval
samples is still caught at the right frame.

Shot-change detector
--------------------
Each decoded frame is scaled (swscale, area averaging) to 64x64 RGB, converted to HSV and
binned into a 16 (hue) x 4 (saturation) x 8 (value) = 512-bin histogram. The distance of
two consecutive frames is the total-variation distance of their histograms,
``0.5 * sum(|h1 - h2|)``, in [0, 1]: 0 for identical colour distributions, 1 for
disjoint ones. Histograms ignore where colours are, so pans, zooms and moving objects
barely move it, while a cut to another scene replaces most of the distribution.

Threshold: :data:`DEFAULT_SHOT_THRESHOLD` = 0.35. On the test corpus
(three_shots.mp4: slow pan, slow zoom, pan) the largest distance inside a shot is 0.08
and the two cuts score 0.82 and 0.89, so 0.35 leaves a 4x margin above in-shot motion
and a 2x margin below the cuts. Known limits: gradual transitions (dissolves, fades)
change little between consecutive frames and are not reported; a cut between two shots
with the same colour distribution is missed; a camera flash can count as two cuts.
Measured cost: about 0.3 ms per frame on top of decoding (480x360).

Timestamps and rotation
-----------------------
Times come from each frame's ``pts * time_base`` (exact rational arithmetic), never from
frame counts, so variable-frame-rate video is sampled correctly. Interval slot ``k``
is ``[k * interval, (k + 1) * interval)`` of stream time; the first decoded frame in a
slot not yet sampled is emitted. The display matrix (MP4 ``tkhd`` matrix / the
``rotate`` tag, exported by FFmpeg as frame side data) is applied the way FFmpeg's
``-autorotate`` does, flips included, so images come out upright.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from loupe.indexer.media.av_stream import StreamReader, av_reason, declared_duration
from loupe.indexer.media.segments import SegmentEdges, hist_distance
from loupe.indexer.media.upright import frame_image, rotation_of, upright

DEFAULT_SHOT_THRESHOLD = 0.35
HIST_SIZE = 64  # side of the thumbnail the histogram is taken from
_H_BINS, _S_BINS, _V_BINS = 16, 4, 8
_TAIL_SLACK_S = 0.5  # a stream ending earlier than this before its declared end is reported


class VideoDecodeError(Exception):
    """A file that cannot be read as video; the message is the one-line reason."""


@dataclass
class VideoFrame:
    """One sampled frame."""

    timestamp: float  # seconds: the decoded frame's pts * time_base
    index: int  # sample number, 0-based
    shot: int  # shot number, 0-based
    reason: str  # "interval" or "shot-change"
    image: Image.Image  # RGB, full size, display rotation applied
    width: int  # of ``image``
    height: int


@dataclass
class VideoInfo:
    """Facts about a video file, from its headers and first frame."""

    duration: float | None  # seconds; None when the container does not say
    width: int  # after rotation
    height: int
    fps: float | None  # average (or guessed) frame rate; None when unknown
    codec: str
    has_audio: bool
    rotation: int = 0  # degrees counter-clockwise applied to get upright images


def plan_segments(path: str | os.PathLike, seconds: float) -> tuple[list[int], float | None]:
    """Keyframe starts splitting a video into segments of about ``seconds`` each.

    Returns ``(starts, duration)``: the ``start_pts`` of segments 1, 2, ... (segment 0
    starts at the beginning), each the keyframe a seek to a multiple of ``seconds``
    lands on, in the stream's time base; empty when the video is shorter than two
    segments or its length is unknown. Costs a seek and one packet per segment.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, not {seconds!r}")
    container, stream = _open(path)
    try:
        duration = declared_duration(container, stream)
        if duration is None or duration < 2 * seconds or not stream.time_base:
            return [], duration
        tb = Fraction(stream.time_base)
        origin = stream.start_time or 0
        first = next((p.pts for p in container.demux(stream) if p.pts is not None), None)
        if first is None:
            return [], duration
        starts: list[int] = []
        t = seconds
        while t <= duration - seconds / 2:
            try:
                container.seek(origin + int(Fraction(t).limit_denominator(1_000_000) / tb),
                               stream=stream, backward=True, any_frame=False)
                packet = next((p for p in container.demux(stream) if p.pts is not None),
                              None)
            except (av.FFmpegError, StopIteration):
                packet = None
            if (packet is not None and packet.is_keyframe
                    and packet.pts > (starts[-1] if starts else first)):
                starts.append(int(packet.pts))
            t += seconds
        return starts, duration
    finally:
        container.close()


def _open(path: str | os.PathLike) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open a file and return it with its first video stream, or raise VideoDecodeError."""
    path = os.fspath(path)
    try:
        container = av.open(path, mode="r")
    except FileNotFoundError as e:
        raise VideoDecodeError(f"file not found: {path}") from e
    except av.FFmpegError as e:
        raise VideoDecodeError(_open_failure_reason(path, e)) from e
    except Exception as e:  # OSError, UnicodeDecodeError from odd metadata...
        raise VideoDecodeError(f"cannot open as video: {type(e).__name__}: {e}") from e
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def _open_failure_reason(path: str, err: av.FFmpegError) -> str:
    try:
        size = os.path.getsize(path)
    except OSError:
        size = -1
    if size == 0:
        return "empty file (0 bytes)"
    if _mp4_without_index(path):
        return ("MP4/MOV index (moov atom) missing: the file is truncated or was never "
                "finalised by the recorder")
    reason = getattr(err, "strerror", None) or str(err)
    return f"cannot open as video: {reason}"


def _mp4_without_index(path: str) -> bool:
    """True for an ISO-BMFF file whose top-level boxes run past EOF before any moov."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8 or head[4:8] != b"ftyp":
                return False
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                box_size, box_type = struct.unpack(">I4s", f.read(8))
                if box_type == b"moov":
                    return False
                if box_size == 1:
                    box_size = struct.unpack(">Q", f.read(8))[0]
                elif box_size == 0:
                    return True  # runs to EOF: no moov after it
                if box_size < 8:
                    return False
                pos += box_size
            return True
    except OSError:
        return False


class _ShotDetector:
    """Hard-cut detector over consecutive decoded frames (see the module docstring)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._reformatter = VideoReformatter()  # caches its SwsContext between frames
        self._prev: np.ndarray | None = None
        self.last_distance = 0.0

    def is_cut(self, frame: av.VideoFrame) -> bool:
        small = self._reformatter.reformat(
            frame, width=HIST_SIZE, height=HIST_SIZE, format="rgb24", interpolation="AREA")
        hsv = np.asarray(Image.fromarray(small.to_ndarray(), "RGB").convert("HSV"))
        h = (hsv[..., 0].astype(np.intp) * _H_BINS) >> 8
        s = (hsv[..., 1].astype(np.intp) * _S_BINS) >> 8
        v = (hsv[..., 2].astype(np.intp) * _V_BINS) >> 8
        idx = (h * _S_BINS + s) * _V_BINS + v
        hist = np.bincount(idx.ravel(), minlength=_H_BINS * _S_BINS * _V_BINS)
        hist = hist / float(idx.size)
        prev, self._prev = self._prev, hist
        if prev is None:
            return False
        self.last_distance = hist_distance(prev, hist)
        return self.last_distance > self.threshold

    @property
    def hist(self) -> np.ndarray | None:
        """The histogram of the last frame looked at."""
        return self._prev


class FrameSampler(StreamReader, Iterator[VideoFrame]):
    """Iterator over sampled frames of one video; see :func:`sample_frames`.

    After (or during) iteration: ``problems`` lists what went wrong, one line each (empty
    when the whole file decoded cleanly), ``frames_decoded`` counts decoded frames,
    ``shot_changes`` the cuts found, and ``complete`` is True once the stream was decoded
    to its declared end without errors.
    """

    def __init__(self, path: str | os.PathLike, interval: float | Fraction = 1.0,
                 shot_threshold: float | None = DEFAULT_SHOT_THRESHOLD,
                 max_frames: int | None = None, start_pts: int | None = None,
                 end_pts: int | None = None):
        if start_pts is not None and end_pts is not None and end_pts <= start_pts:
            raise ValueError(f"empty segment: end_pts {end_pts} <= start_pts {start_pts}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, not {max_frames!r}")
        # Fractions keep slot boundaries exact: a frame at pts 1/60 s is in slot 1 of 1/60.
        self.interval = (interval if isinstance(interval, Fraction)
                         else Fraction(interval).limit_denominator(1_000_000))
        self.shot_threshold = shot_threshold
        self.max_frames = max_frames
        super().__init__()
        self.path = os.fspath(path)
        self.frames_decoded = 0
        self.shot_changes = 0
        self.start_pts, self.end_pts = start_pts, end_pts
        self.edges = SegmentEdges()
        self._container, self._stream = _open(path)  # raises before iteration starts
        self.declared_duration = declared_duration(self._container, self._stream)
        self.span_seconds = self._span()
        self._gen = self._run()

    def _span(self) -> float | None:
        """Seconds this sampler will cover (its segment, else the declared duration)."""
        tb = self._stream.time_base
        if tb and self.end_pts is not None:
            start = self.start_pts if self.start_pts is not None else (
                self._stream.start_time or 0)
            return float((self.end_pts - start) * Fraction(tb))
        return self.declared_duration

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; bad packets are skipped and summarised in ``problems``."""
        self._stream.thread_type = "AUTO"  # frame + slice threads; output is bit-identical
        if self.start_pts is not None:
            # To the keyframe at (or before) the segment's start; frames before it are
            # dropped in _run. A failed seek decodes from the start (slow, still exact).
            try:
                self._container.seek(self.start_pts, stream=self._stream, backward=True,
                                     any_frame=False)
            except av.FFmpegError:
                self._container.seek(0)
        return self._decode_tolerant()

    def _run(self) -> Iterator[VideoFrame]:
        detector = (_ShotDetector(self.shot_threshold)
                    if self.shot_threshold is not None else None)
        interval = self.interval
        fallback_step = _frame_step(self._stream)
        last_slot: int | None = None
        last_emitted: Fraction | None = None
        last_ts: Fraction | None = None
        shot = 0
        emitted = 0
        corrupt = 0
        edges = self.edges
        segment = self.start_pts is not None or self.end_pts is not None
        try:
            if self.max_frames == 0:
                return
            for frame in self._decoded():
                if segment:
                    if frame.pts is None:
                        edges.irregular = "a frame without a timestamp"
                        break
                    if self.start_pts is not None and frame.pts < self.start_pts:
                        continue  # before the segment: the previous one has it
                    if self.end_pts is not None and frame.pts >= self.end_pts:
                        edges.next_pts = frame.pts
                        break
                    if edges.last_pts is not None and frame.pts <= edges.last_pts:
                        edges.irregular = "timestamps out of order"
                        break
                    if edges.first_pts is None:
                        edges.first_pts = frame.pts
                    edges.last_pts = frame.pts
                self.frames_decoded += 1
                if frame.pts is not None:
                    ts = frame.pts * Fraction(frame.time_base or self._stream.time_base)
                else:
                    self._problem("frames without timestamps: times estimated from frame rate")
                    ts = last_ts + fallback_step if last_ts is not None else Fraction(0)
                last_ts = ts
                if getattr(frame, "is_corrupt", False):
                    corrupt += 1
                cut = detector.is_cut(frame) if detector is not None else False
                if cut:
                    shot += 1
                    self.shot_changes += 1
                if segment and detector is not None:
                    if edges.first_hist is None:
                        edges.first_hist = detector.hist
                    edges.last_hist = detector.hist
                if last_emitted is not None and ts <= last_emitted:
                    continue  # out-of-order / duplicate pts: keep output times increasing
                slot = math.floor(ts / interval)
                new_slot = last_slot is None or slot > last_slot
                if segment:
                    edges.cuts = shot
                    if edges.first_slot is None:
                        edges.first_slot = slot
                    edges.last_slot = slot
                if not (new_slot or cut):
                    continue
                if new_slot:
                    last_slot = slot
                image = frame_image(frame)
                yield VideoFrame(timestamp=float(ts), index=emitted, shot=shot,
                                 reason="shot-change" if cut else "interval",
                                 image=image, width=image.width, height=image.height)
                emitted += 1
                last_emitted = ts
                if self.max_frames is not None and emitted >= self.max_frames:
                    return
            if self.frames_decoded == 0:
                self._problem("no frame could be decoded")
            elif self.end_pts is None:
                self._check_tail(last_ts)
            if corrupt:
                self._problem(f"{corrupt} frame(s) decoded with errors (damaged data)")
        finally:
            self._container.close()

    def _check_tail(self, last_ts: Fraction | None) -> None:
        """Report a stream that stops well before the length its headers declare."""
        stream = self._stream
        if last_ts is None:
            return
        if stream.duration is not None:
            declared, slack = float(stream.duration * stream.time_base), _TAIL_SLACK_S
        elif self._container.duration is not None:
            # The container's length covers all streams (audio may run on past the video).
            declared = self._container.duration / av.time_base
            slack = max(4 * _TAIL_SLACK_S, 0.05 * declared)
        else:
            return
        start_s = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        if float(last_ts) + slack < start_s + declared - float(_frame_step(stream)):
            self.complete = False
            self._problem(f"stream ends at {float(last_ts):.2f} s but the file declares "
                          f"{declared:.2f} s: truncated or damaged")


def _frame_step(stream: av.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return 1 / Fraction(rate) if rate else Fraction(1, 25)


def sample_frames(path: str | os.PathLike, interval: float | Fraction = 1.0,
                  shot_threshold: float | None = DEFAULT_SHOT_THRESHOLD,
                  max_frames: int | None = None) -> FrameSampler:
    """Stream sampled frames of a video: one per ``interval`` seconds plus each shot change.

    Every frame is decoded (shot detection needs them all) but only sampled ones are
    converted to RGB images. A frame is emitted when it is the first decoded frame at or
    after a multiple of ``interval`` (stream time; a small interval such as 1/60 gives
    every frame), or when it starts a new shot (its ``reason`` is then "shot-change"; it
    also fills its interval slot). The very first frame is always emitted, so even
    sub-second videos give one. ``shot_threshold`` is the histogram distance above which
    consecutive frames count as a cut (see the module docstring); None turns detection
    off. ``max_frames`` caps the number of frames yielded.

    Raises :class:`VideoDecodeError` at once when the file cannot be opened or has no
    video stream. Damage found later (a bad packet, a truncated tail) does not raise: the
    frames decoded before it are yielded and the reasons end up in the returned
    iterator's ``problems`` list.
    """
    return FrameSampler(path, interval, shot_threshold, max_frames)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Duration, upright size, frame rate, codec and audio presence of a video file.

    Decodes the first frame (to learn the rotation and prove the stream decodes);
    raises :class:`VideoDecodeError` when there is none.
    """
    container, stream = _open(path)
    try:
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as e:
            raise VideoDecodeError(f"video stream does not decode: {av_reason(e)}") from e
        if first is None:
            raise VideoDecodeError("video stream has no decodable frame")
        rotation = rotation_of(first)
        h, w = upright(np.zeros((first.height, first.width, 3), np.uint8), first).shape[:2]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            duration=declared_duration(container, stream),
            width=w, height=h,
            fps=float(rate) if rate else None,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
            rotation=rotation,
        )
    finally:
        container.close()


def frame_at(path: str | os.PathLike, timestamp: float) -> tuple[Image.Image, float]:
    """The frame on screen at ``timestamp`` seconds: ``(upright RGB image, its exact time)``.

    That is the last decoded frame whose time is at or before ``timestamp`` (the first
    frame for earlier times). A stored frame's own timestamp gives back exactly that
    frame. Raises :class:`VideoDecodeError` when nothing decodes.
    """
    container, stream = _open(path)
    try:
        tb = Fraction(stream.time_base)
        target = Fraction(timestamp).limit_denominator(1_000_000)
        start = stream.start_time or 0
        try:  # to the keyframe before the target (a little before: rounding of pts)
            container.seek(max(start, int((target - Fraction(1, 10)) / tb)), stream=stream,
                           backward=True, any_frame=False)
        except av.FFmpegError:
            container.seek(0)
        best: tuple[av.VideoFrame, Fraction] | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ts = frame.pts * Fraction(frame.time_base or tb)
                if ts > target and best is not None:
                    break
                best = (frame, ts)
                if ts >= target:
                    break
        except av.FFmpegError as e:
            if best is None:
                raise VideoDecodeError(f"no frame decodes near {timestamp:.3f} s: "
                                       f"{av_reason(e)}") from e
        if best is None:
            raise VideoDecodeError(f"no frame at {timestamp:.3f} s (the video is shorter?)")
        return frame_image(best[0]), float(best[1])
    finally:
        container.close()


def frames_at(path: str | os.PathLike, timestamps: Sequence[float]
              ) -> Iterator[tuple[float, Image.Image]]:
    """``(asked time, upright RGB frame)`` for each of ``timestamps`` (in ascending
    order), in one pass through the video: the frame on screen then, as
    :func:`frame_at` would give it (the first frame for earlier times, the last one
    for times after the end). Raises :class:`VideoDecodeError` when nothing decodes.
    """
    wanted = sorted(Fraction(t).limit_denominator(1_000_000) for t in timestamps)
    asked = sorted(timestamps)
    if not wanted:
        return
    container, stream = _open(path)
    try:
        tb = Fraction(stream.time_base)
        stream.thread_type = "AUTO"
        prev: av.VideoFrame | None = None
        at = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ts = frame.pts * Fraction(frame.time_base or tb)
                while at < len(wanted) and ts > wanted[at]:
                    yield asked[at], frame_image(prev if prev is not None else frame)
                    at += 1
                if at == len(wanted):
                    return
                prev = frame
        except av.FFmpegError as e:
            if prev is None:
                raise VideoDecodeError(f"no frame decodes: {av_reason(e)}") from e
        if prev is None:
            raise VideoDecodeError("no frame decodes")
        last = frame_image(prev)
        for i in range(at, len(wanted)):
            yield asked[i], last
    finally:
        container.close()
