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
from dataclasses import dataclass, field

import numpy as np

from indexer.encoders.base import AudioPreprocess, ImagePreprocess
from indexer.fingerprint import FULL_HASH_LIMIT, fingerprint_bytes, fingerprint_file
from indexer.image_decode import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    to_model_input,
)
from indexer.media import AUDIO, HEAD_BYTES, IMAGE, VIDEO, kind_from_extension, sniff

# Item kinds (the same strings as search.store's; not imported: no lancedb in workers).
PHOTO, FRAME, SOUND = "photo", "frame", "audio"
CODE_BAD, CODE_UNSUPPORTED, CODE_NOT_MEDIA = "bad", "unsupported", "not-media"


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
    """Model inputs of one file appended to raw files: read with :meth:`arrays`."""

    paths: dict[str, str] = field(default_factory=dict)  # key -> file
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # key -> one row's shape
    dtypes: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def append(self, spill_dir: str, stem: str, key: str, row: np.ndarray) -> None:
        """Append one input row under ``key``."""
        if key not in self.paths:
            self.paths[key] = os.path.join(spill_dir, f"{stem}.{key}.bin")
            self.shapes[key], self.dtypes[key], self.counts[key] = row.shape, row.dtype.str, 0
            open(self.paths[key], "wb").close()
        with open(self.paths[key], "ab") as f:
            f.write(np.ascontiguousarray(row).tobytes())
        self.counts[key] += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """{key: memory-mapped (count, *shape) array}."""
        return {k: np.memmap(p, dtype=self.dtypes[k], mode="r",
                             shape=(self.counts[k], *self.shapes[k]))
                for k, p in self.paths.items() if self.counts[k]}

    def remove(self) -> None:
        """Delete the spilled files."""
        for p in self.paths.values():
            try:
                os.unlink(p)
            except OSError:
                pass


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


def process_file(path: str, size: int, mtime_ns: int, attempt: int = 0) -> FileResult:
    """Classify, fingerprint and (if its content is new) decode a file."""
    assert _settings is not None, "init_worker was not called"
    return process_file_with(path, size, mtime_ns, _settings, _known, attempt)


def process_file_with(
    path: str,
    size: int,
    mtime_ns: int,
    settings: DecodeSettings,
    known: frozenset[str] | set[str] = frozenset(),
    attempt: int = 0,
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
                    res.code, res.reason = CODE_BAD, "empty file (0 bytes)"
                elif claimed:
                    res.code, res.reason = CODE_BAD, f"content is not a known {claimed} format"
                else:
                    res.code, res.reason = CODE_NOT_MEDIA, "not a media file"
                return res
            if res.kind != IMAGE:
                return _process_stream(res, settings, known, attempt)
            if size > FULL_HASH_LIMIT * 4:
                res.code = CODE_BAD
                res.reason = f"image file of {size:,} bytes is too large to decode"
                return res
            data = head + f.read()
    except OSError as e:
        res.code, res.reason = CODE_BAD, f"cannot read: {e.strerror or e}"
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
        res.code, res.reason = CODE_BAD, str(e)
        return res
    res.pixels = tuple(pixels)
    res.items = [Item(PHOTO, width=dec.width, height=dec.height)]
    return res


def _process_stream(res: FileResult, settings: DecodeSettings, known: frozenset[str] | set[str],
                    attempt: int) -> FileResult:
    """A video or audio file: frames and/or sound windows, spilled."""
    if res.kind == AUDIO and settings.audio is None:
        res.fingerprint = fingerprint_file(res.path, res.size)
        res.code = CODE_UNSUPPORTED
        res.reason = ("sound is indexed only with an audio model "
                      "(add one: loupe index DIR --model imagebind_huge)")
        return res
    try:
        res.fingerprint = fingerprint_file(res.path, res.size)
    except OSError as e:
        res.code, res.reason = CODE_BAD, f"cannot read: {e.strerror or e}"
        return res
    res.sound = settings.audio is not None
    if res.fingerprint in known:
        res.reused = True
        return res
    if settings.spill_dir is None:
        raise ValueError("DecodeSettings.spill_dir is needed for video and audio")
    key = hashlib.blake2b(os.fsencode(res.path), digest_size=8).hexdigest()
    stem = f"{os.getpid()}-{attempt}-{key}"
    res.spill = Spill()
    problems: list[str] = []
    try:
        if res.kind == VIDEO:
            frames_error = _sample_video(res, settings, stem, problems)
            if frames_error == "no video stream" and settings.audio is not None:
                res.kind = AUDIO  # an audio-only Matroska/MP4 (.mka, .m4a-like)
            elif frames_error:
                res.code, res.reason = CODE_BAD, frames_error
                res.spill.remove()
                return res
        if settings.audio is not None:
            sound_error = _cut_sound(res, settings, stem, problems)
            if sound_error and res.kind == AUDIO:
                res.code, res.reason = CODE_BAD, sound_error
                res.spill.remove()
                return res
            if sound_error and not sound_error.startswith("no audio stream"):
                problems.append(f"sound: {sound_error}")
    except Exception:
        res.spill.remove()
        raise
    if problems:
        res.problem = "; ".join(problems)
    return res


def _sample_video(res: FileResult, settings: DecodeSettings, stem: str,
                  problems: list[str]) -> str | None:
    """Sample frames into the spill. Returns why no frame came out, or None."""
    from indexer.video_decode import VideoDecodeError, sample_frames

    try:
        sampler = sample_frames(res.path, settings.frame_interval, settings.shot_threshold)
    except VideoDecodeError as e:
        return "no video stream" if "no video stream" in str(e) else str(e)
    assert res.spill is not None and settings.spill_dir is not None
    with sampler:
        res.duration = sampler.declared_duration
        n = 0
        for fr in sampler:
            for i, pre in enumerate(settings.preprocesses):
                res.spill.append(settings.spill_dir, stem, f"img{i}", to_model_input(fr.image, pre))
            res.items.append(Item(FRAME, timestamp=fr.timestamp, shot=fr.shot,
                                  width=fr.width, height=fr.height, src=n))
            n += 1
    problems.extend(sampler.problems)
    if n == 0:
        return "; ".join(sampler.problems) or "no frame could be decoded"
    return None


def _cut_sound(res: FileResult, settings: DecodeSettings, stem: str,
               problems: list[str]) -> str | None:
    """Cut the sound into windows and spill their features. Returns an error or None."""
    from indexer.audio_decode import AudioDecodeError, audio_windows, window_features

    audio = settings.audio
    assert audio is not None and res.spill is not None and settings.spill_dir is not None
    n = 0
    try:
        with audio_windows(res.path, audio.clip_seconds,
                           sample_rate=audio.sample_rate) as windows:
            for w in windows:
                res.spill.append(settings.spill_dir, stem, "audio",
                                 window_features(w, audio).numpy())
                res.items.append(Item(SOUND, timestamp=w.start, end=w.end, silent=w.silent,
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
