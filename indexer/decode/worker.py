"""What a decode worker does with one file: look at it, fingerprint it, decode it.

Runs in worker processes (spawned: Lance is not fork-safe) and never imports lancedb.
Every outcome is data: nothing raised here stops a run.

A photo comes back inline (one model input per image preprocessing). A video or an
audio file can hold thousands of items, so its model inputs are *spilled*: appended to
raw files in the run's spill folder as they are decoded, and the result carries only
the items' metadata and where their inputs lie. Worker memory stays at about one frame
whatever the length; the embedder reads the spill back with ``np.memmap``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from loupe.indexer.encoders.spec import AudioPreprocess, ImagePreprocess
from loupe.indexer.fingerprint import FULL_HASH_LIMIT, fingerprint_bytes, fingerprint_file
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.media.image import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    to_model_input,
)
from loupe.indexer.media.sniff import HEAD_BYTES, kind_from_extension, sniff

if TYPE_CHECKING:  # PyAV is imported only by workers that meet a video or a sound
    from loupe.indexer.media.video import SegmentEdges



@dataclass(frozen=True)
class DecodeSettings:
    """Everything a worker needs besides the file (sent once per worker)."""

    preprocesses: tuple[ImagePreprocess, ...]  # one model input per distinct preprocessing
    audio: AudioPreprocess | None = None  # decode sound (files, soundtracks) when set
    max_pixels: int = DEFAULT_MAX_PIXELS
    draft_factor: float | None = 2.0
    frame_interval: float = 1.0  # seconds between sampled video frames
    shot_threshold: float | None = 0.35  # histogram distance of a cut; None: no detection
    spill_dir: str | None = None  # where video/audio model inputs are spilled


@dataclass
class Item:
    """Metadata of one item decoded from a file (its model input lies elsewhere)."""

    kind: str  # "photo", "frame" or "audio"
    timestamp: float | None = None  # seconds (frames: pts exact; audio: window start)
    end: float | None = None  # audio windows: end of the real audio
    shot: int | None = None
    silent: bool | None = None
    width: int | None = None
    height: int | None = None
    src: int = 0  # row of this item's input in its spill (frames and windows counted apart)


@dataclass
class Spill:
    """Model inputs of one file appended to raw files: read with :meth:`arrays`.

    A key's rows may lie in several files (a long video decoded in segments): ``files``
    lists them in row order with their row counts.
    """

    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # key -> parts
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # key -> one row's shape
    dtypes: dict[str, str] = field(default_factory=dict)

    def append(self, spill_dir: str, stem: str, key: str, row: np.ndarray) -> None:
        """Append one input row under ``key``."""
        if key not in self.files:
            path = os.path.join(spill_dir, f"{stem}.{key}.bin")
            self.files[key] = [(path, 0)]
            self.shapes[key], self.dtypes[key] = row.shape, row.dtype.str
            open(path, "wb").close()
        path, count = self.files[key][-1]
        with open(path, "ab") as f:
            f.write(np.ascontiguousarray(row).tobytes())
        self.files[key][-1] = (path, count + 1)

    def rows(self, key: str) -> int:
        """How many rows ``key`` holds."""
        return sum(n for _, n in self.files.get(key, []))

    def extend(self, other: Spill) -> None:
        """Take ``other``'s rows after this one's (their files are shared, not copied)."""
        for key, parts in other.files.items():
            if key in self.files and (self.shapes[key], self.dtypes[key]) != (
                    other.shapes[key], other.dtypes[key]):
                raise ValueError(f"spill {key!r}: rows of different shapes")
            self.files.setdefault(key, []).extend(parts)
            self.shapes[key], self.dtypes[key] = other.shapes[key], other.dtypes[key]

    def arrays(self) -> dict[str, np.ndarray | _Rows]:
        """{key: memory-mapped (count, *shape) array (or rows across several files)}."""
        out: dict[str, np.ndarray | _Rows] = {}
        for k, parts in self.files.items():
            maps = [np.memmap(p, dtype=self.dtypes[k], mode="r", shape=(n, *self.shapes[k]))
                    for p, n in parts if n]
            if maps:
                out[k] = maps[0] if len(maps) == 1 else _Rows(maps)
        return out

    def remove(self) -> None:
        """Delete the spilled files."""
        for parts in self.files.values():
            for p, _ in parts:
                try:
                    os.unlink(p)
                except OSError:
                    pass


class _Rows:
    """Rows of several memory-mapped arrays read as one: ``rows[i]`` for an int ``i``."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.ends = np.cumsum([len(a) for a in parts])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[k][i - (int(self.ends[k - 1]) if k else 0)]


@dataclass
class FileResult:
    """The outcome for one file."""

    path: str
    size: int
    mtime_ns: int
    kind: str | None = None  # media: "image", "video", "audio" or None (not media)
    fingerprint: str | None = None
    items: list[Item] = field(default_factory=list)
    pixels: tuple[np.ndarray, ...] | None = None  # a photo's inputs, one per preprocessing
    spill: Spill | None = None  # inputs of a video's / audio file's items
    duration: float | None = None
    sound: bool = False  # sound was looked at (an audio model was on)
    reused: bool = False  # fingerprint already has vectors: not decoded
    code: str | None = None  # skip code when not indexed
    reason: str | None = None
    problem: str | None = None  # indexed, but something went wrong (damaged tail...)
    # a long video to decode in segments: the start of each segment after the first
    # (stream time base; see loupe.indexer.media.video.plan_segments). Nothing decoded yet.
    segments: list[int] | None = None

    @property
    def width(self) -> int | None:
        return self.items[0].width if self.items else None

    @property
    def height(self) -> int | None:
        return self.items[0].height if self.items else None


_settings: DecodeSettings | None = None
_known: frozenset[str] = frozenset()


def init_worker(settings: DecodeSettings, known_fingerprints: frozenset[str]) -> None:
    """Process-pool initializer."""
    global _settings, _known
    _settings, _known = settings, known_fingerprints


def process_file(path: str, size: int, mtime_ns: int, attempt: int = 0,
                 split_seconds: float | None = None) -> FileResult:
    """Classify, fingerprint and (if its content is new) decode a file.

    With ``split_seconds``, a video longer than two such segments is not decoded: the
    result carries its plan (``segments``) and the caller decodes the parts with
    :func:`process_part` in parallel, then joins them with :func:`join_video`.
    """
    assert _settings is not None, "init_worker was not called"
    return process_file_with(path, size, mtime_ns, _settings, _known, attempt, split_seconds)


def process_file_with(
    path: str,
    size: int,
    mtime_ns: int,
    settings: DecodeSettings,
    known: frozenset[str] | set[str] = frozenset(),
    attempt: int = 0,
    split_seconds: float | None = None,
) -> FileResult:
    """:func:`process_file` with explicit settings (used in-process too)."""
    res = FileResult(path, size, mtime_ns)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            res.kind = sniff(head)
            claimed = kind_from_extension(path)
            if res.kind is None:
                res.kind = claimed  # keep what the name claims, for the report
                if size == 0:
                    res.code, res.reason = SkipCode.BAD, "empty file (0 bytes)"
                elif claimed:
                    res.code, res.reason = SkipCode.BAD, f"content is not a known {claimed} format"
                else:
                    res.code, res.reason = SkipCode.NOT_MEDIA, "not a media file"
                return res
            if res.kind != MediaKind.IMAGE:
                return _process_stream(res, settings, known, attempt, split_seconds)
            if size > FULL_HASH_LIMIT * 4:
                res.code = SkipCode.BAD
                res.reason = f"image file of {size:,} bytes is too large to decode"
                return res
            data = head + f.read()
    except OSError as e:
        res.code, res.reason = SkipCode.BAD, f"cannot read: {e.strerror or e}"
        return res
    if len(data) != size:
        size = len(data)  # the file changed while we looked; record what we read
        res.size = size
    res.fingerprint = fingerprint_bytes(data)
    if res.fingerprint in known:
        res.reused = True
        return res
    try:
        pixels = []
        for i, pre in enumerate(settings.preprocesses):
            # One decode per preprocessing: draft mode depends on the target size.
            dec = decode_image(data, pre, settings.max_pixels,
                               settings.draft_factor if i == 0 else None)
            pixels.append(dec.pixels)
    except ImageDecodeError as e:
        res.code, res.reason = SkipCode.BAD, str(e)
        return res
    res.pixels = tuple(pixels)
    res.items = [Item(ItemKind.PHOTO, width=dec.width, height=dec.height)]
    return res


def _process_stream(res: FileResult, settings: DecodeSettings, known: frozenset[str] | set[str],
                    attempt: int, split_seconds: float | None = None) -> FileResult:
    """A video or audio file: frames and/or sound windows, spilled."""
    if res.kind == MediaKind.AUDIO and settings.audio is None:
        res.fingerprint = fingerprint_file(res.path, res.size)
        res.code = SkipCode.UNSUPPORTED
        res.reason = ("sound is indexed only with an audio model "
                      "(add one: loupe index DIR --model imagebind_huge)")
        return res
    try:
        res.fingerprint = fingerprint_file(res.path, res.size)
    except OSError as e:
        res.code, res.reason = SkipCode.BAD, f"cannot read: {e.strerror or e}"
        return res
    res.sound = settings.audio is not None
    if res.fingerprint in known:
        res.reused = True
        return res
    if settings.spill_dir is None:
        raise ValueError("DecodeSettings.spill_dir is needed for video and audio")
    if res.kind == MediaKind.VIDEO and split_seconds:
        from loupe.indexer.media.video import VideoDecodeError, plan_segments

        try:
            starts, res.duration = plan_segments(res.path, split_seconds)
        except VideoDecodeError:
            starts = []  # decoded in one pass below, which reports why
        if starts:
            res.segments = starts
            return res
    stem = _stem(res.path, attempt)
    res.spill = Spill()
    problems: list[str] = []
    try:
        if res.kind == MediaKind.VIDEO:
            frames_error, _ = _sample_video(res, settings, stem, problems)
            if frames_error == "no video stream" and settings.audio is not None:
                res.kind = MediaKind.AUDIO  # an audio-only Matroska/MP4 (.mka, .m4a-like)
            elif frames_error:
                res.code, res.reason = SkipCode.BAD, frames_error
                res.spill.remove()
                return res
        if settings.audio is not None:
            sound_error = _cut_sound(res, settings, stem, problems)
            if sound_error and res.kind == MediaKind.AUDIO:
                res.code, res.reason = SkipCode.BAD, sound_error
                res.spill.remove()
                return res
            _soundtrack_problem(sound_error, problems)
    except Exception:
        res.spill.remove()
        raise
    if problems:
        res.problem = "; ".join(problems)
    return res


def _stem(path: str, attempt: int, part: str = "") -> str:
    """Spill file names: unique per worker process, attempt, file and part."""
    key = hashlib.blake2b(os.fsencode(path), digest_size=8).hexdigest()
    return f"{os.getpid()}-{attempt}-{key}{part}"


def _soundtrack_problem(sound_error: str | None, problems: list[str]) -> None:
    """A video whose sound did not decode is still indexed; say why (a silent video
    without an audio stream is no problem)."""
    if sound_error and not sound_error.startswith("no audio stream"):
        problems.append(f"sound: {sound_error}")


def _sample_video(res: FileResult, settings: DecodeSettings, stem: str,
                  problems: list[str], start_pts: int | None = None,
                  end_pts: int | None = None) -> tuple[str | None, SegmentEdges | None]:
    """Sample frames (of the segment from ``start_pts`` to ``end_pts``, when given) into
    the spill. Returns why no frame came out (or None) and the segment's edges."""
    from loupe.indexer.media.video import FrameSampler, VideoDecodeError

    try:
        sampler = FrameSampler(res.path, settings.frame_interval, settings.shot_threshold,
                               start_pts=start_pts, end_pts=end_pts)
    except VideoDecodeError as e:
        return ("no video stream" if "no video stream" in str(e) else str(e)), None
    assert res.spill is not None and settings.spill_dir is not None
    with sampler:
        res.duration = sampler.declared_duration
        n = 0
        for fr in sampler:
            for i, pre in enumerate(settings.preprocesses):
                res.spill.append(settings.spill_dir, stem, f"img{i}", to_model_input(fr.image, pre))
            res.items.append(Item(ItemKind.FRAME, timestamp=fr.timestamp, shot=fr.shot,
                                  width=fr.width, height=fr.height, src=n))
            n += 1
    problems.extend(sampler.problems)
    if n == 0:
        return "; ".join(sampler.problems) or "no frame could be decoded", sampler.edges
    return None, sampler.edges


SOUNDTRACK = -1  # the part number of a split video's sound


@dataclass
class PartResult:
    """One part of a video decoded in segments: a segment's frames, or its soundtrack."""

    part: int  # segment number, or SOUNDTRACK
    items: list[Item]
    spill: Spill
    problems: list[str]
    error: str | None = None  # why this part gave nothing
    edges: SegmentEdges | None = None  # a segment's (None for the soundtrack)


def process_part(path: str, size: int, mtime_ns: int, part: int, starts: list[int],
                 attempt: int = 0) -> PartResult:
    """Decode one part of a video planned by :func:`process_file`: segment ``part``
    (from ``starts[part - 1]`` to ``starts[part]``), or its soundtrack (``SOUNDTRACK``)."""
    assert _settings is not None, "init_worker was not called"
    return process_part_with(path, size, mtime_ns, part, starts, _settings, attempt)


def process_part_with(path: str, size: int, mtime_ns: int, part: int, starts: list[int],
                      settings: DecodeSettings, attempt: int = 0) -> PartResult:
    """:func:`process_part` with explicit settings."""
    assert settings.spill_dir is not None
    res = FileResult(path, size, mtime_ns, kind=MediaKind.VIDEO, spill=Spill())
    stem = _stem(path, attempt, f"-p{part + 1}")
    problems: list[str] = []
    try:
        if part == SOUNDTRACK:
            error = _cut_sound(res, settings, stem, problems)
            edges = None
        else:
            bounds: list[int | None] = [None, *starts, None]
            error, edges = _sample_video(res, settings, stem, problems, bounds[part],
                                         bounds[part + 1])
    except Exception:
        res.spill.remove()
        raise
    return PartResult(part, res.items, res.spill, problems, error, edges)


def join_video(plan: FileResult, parts: list[PartResult],
               shot_threshold: float | None) -> FileResult:
    """The result of a video decoded in parts, as one pass would have given it.

    ``plan`` is :func:`process_file`'s answer (``segments`` set); ``parts`` holds every
    segment and, when sound is indexed, the soundtrack. Raises ValueError when the
    segments do not join exactly (then decode the video in one pass); the parts'
    spills are the caller's to remove then.
    """
    from loupe.indexer.media.video import SegmentEdges, join_segments

    assert plan.segments is not None
    by_part = {p.part: p for p in parts}
    segments = [by_part[k] for k in range(len(plan.segments) + 1)]
    edges = [p.edges or SegmentEdges(irregular=p.error or "not decoded") for p in segments]
    joins = join_segments(edges, [None, *plan.segments], shot_threshold)
    res = replace(plan, segments=None, spill=Spill(), items=[])
    problems: list[str] = []
    for p, j in zip(segments, joins, strict=True):
        offset = res.spill.rows("img0")
        for i, item in enumerate(p.items):
            if i == 0 and not j.keep_first:
                continue
            res.items.append(replace(item, shot=(item.shot or 0) + j.shot_offset,
                                     src=item.src + offset))
        res.spill.extend(p.spill)
        problems.extend(m for m in p.problems if m not in problems)
    sound = by_part.get(SOUNDTRACK)
    if sound is not None:
        res.items.extend(sound.items)
        res.spill.extend(sound.spill)
        problems.extend(sound.problems)
        _soundtrack_problem(sound.error, problems)
    if problems:
        res.problem = "; ".join(problems)
    return res


def _cut_sound(res: FileResult, settings: DecodeSettings, stem: str,
               problems: list[str]) -> str | None:
    """Cut the sound into windows and spill their features. Returns an error or None."""
    from loupe.indexer.media.audio import AudioDecodeError, audio_windows, window_features

    audio = settings.audio
    assert audio is not None and res.spill is not None and settings.spill_dir is not None
    n = 0
    try:
        with audio_windows(res.path, audio.clip_seconds,
                           sample_rate=audio.sample_rate) as windows:
            for w in windows:
                res.spill.append(settings.spill_dir, stem, "audio",
                                 window_features(w, audio).numpy())
                res.items.append(Item(ItemKind.AUDIO, timestamp=w.start, end=w.end, silent=w.silent,
                                      src=n))
                n += 1
            problems.extend(windows.reader.problems)
            if res.duration is None:
                res.duration = windows.reader.duration
    except AudioDecodeError as e:
        return str(e)
    return None if n else "no sound could be decoded"


def default_workers() -> int:
    """Decode processes to start: one per core (the embedder runs in the main process)."""
    return max(1, os.cpu_count() or 1)
