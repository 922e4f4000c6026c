"""What a decode worker does with one file: look at it, fingerprint it, decode it.

Runs in worker processes (spawned: Lance is not fork-safe) and never imports lancedb.
Every outcome is data: nothing raised here stops a run.

A photo comes back inline (one model input per image preprocessing). A video or an
audio file can hold thousands of items, so its model inputs are *spilled*: appended to
raw files in the run's spill folder as they are decoded, and the result carries only
the items' metadata and where their inputs lie. Worker memory stays at about one frame
whatever the length; the embedder reads the spill back with ``np.memmap``.

PyAV and torch (video frames, sound features) are imported inside the functions that
need them: a worker that only meets photos never loads them.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import replace

from loupe.indexer.decode.results import (
    SOUNDTRACK,
    DecodeSettings,
    FileResult,
    Item,
    PartResult,
    Spill,
    ensure_room,
)
from loupe.indexer.fingerprint import FULL_HASH_LIMIT, fingerprint_bytes, fingerprint_file
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.media.capture import capture_of_image, capture_of_video
from loupe.indexer.media.image import (
    ImageDecodeError,
    MissingDecoder,
    decode_image,
    identify,
    to_model_input,
)
from loupe.indexer.media.segments import SegmentEdges, join_segments
from loupe.indexer.media.sniff import HEAD_BYTES, kind_from_extension, refused_format, sniff

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
            if res.kind is None and (refused := refused_format(head)) is not None:
                # kind None: a run never tries it again (it is not damaged either)
                res.code, res.reason = SkipCode.UNSUPPORTED, refused
                return res
            if res.kind is None and head and identify(path) is not None:
                res.kind = MediaKind.IMAGE  # no magic bytes of ours, but Pillow reads it
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
            f.seek(len(head))
            data = head + f.read()
    except OSError as e:
        res.code, res.reason = SkipCode.BAD, f"cannot read: {e.strerror or e}"
        return res
    if len(data) != size:
        size = len(data)  # the file changed while we looked; record what we read
        res.size = size
    res.fingerprint = fingerprint_bytes(data)
    res.capture = capture_of_image(data)  # metadata only (~50 us); never raises
    if res.fingerprint in known:
        res.reused = True
        return res
    try:
        pixels, notes = [], []
        for i, pre in enumerate(settings.preprocesses):
            # One decode per preprocessing: draft mode depends on the target size.
            dec = decode_image(data, pre, settings.max_pixels,
                               settings.draft_factor if i == 0 else None)
            pixels.append(dec.pixels)
            if dec.decoded_from and dec.decoded_from not in notes:
                notes.append(dec.decoded_from)
    except ImageDecodeError as e:
        # a missing decoder (pillow-heif) is retried by the next run, once installed
        res.code = SkipCode.UNSUPPORTED if isinstance(e, MissingDecoder) else SkipCode.BAD
        res.reason = str(e)
        return res
    res.pixels = tuple(pixels)
    res.decoded_from = "; ".join(notes) or None
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
    res.capture = capture_of_video(res.path)  # the container's tags only; never raises
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
        if sampler.span_seconds:  # 10 % over the sampling rate: cuts add frames
            frames = math.ceil(sampler.span_seconds / settings.frame_interval * 1.1) + 1
            per_frame = sum(3 * h * w for h, w in (p.size for p in settings.preprocesses))
            ensure_room(settings.spill_dir, frames * per_frame, os.path.basename(res.path))
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
    from loupe.indexer.media.audio import AudioDecodeError, audio_windows
    from loupe.indexer.media.audio_features import window_features

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
