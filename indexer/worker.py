"""What a decode worker does with one file: look at it, fingerprint it, decode it.

Runs in worker processes (spawned: Lance is not fork-safe), so it imports neither
torch nor lancedb. Every outcome is data: nothing raised here stops a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from indexer.encoders.base import ImagePreprocess
from indexer.fingerprint import FULL_HASH_LIMIT, fingerprint_bytes, fingerprint_file
from indexer.image_decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from indexer.media import HEAD_BYTES, IMAGE, kind_from_extension, sniff


@dataclass(frozen=True)
class DecodeSettings:
    """Everything a worker needs besides the file (sent once per worker)."""

    preprocess: ImagePreprocess
    max_pixels: int = DEFAULT_MAX_PIXELS
    draft_factor: float | None = 2.0


@dataclass
class FileResult:
    """The outcome for one file."""

    path: str
    size: int
    mtime_ns: int
    kind: str | None = None  # "image", "video", "audio" or None (not media)
    fingerprint: str | None = None
    pixels: np.ndarray | None = None  # model input, when decoded
    width: int | None = None
    height: int | None = None
    reused: bool = False  # fingerprint already has a vector: not decoded
    code: str | None = None  # skip code when not indexed
    reason: str | None = None


_settings: DecodeSettings | None = None
_known: frozenset[str] = frozenset()


def init_worker(settings: DecodeSettings, known_fingerprints: frozenset[str]) -> None:
    """Process-pool initializer."""
    global _settings, _known
    _settings, _known = settings, known_fingerprints


def process_file(path: str, size: int, mtime_ns: int) -> FileResult:
    """Classify, fingerprint and (if an image with an unknown fingerprint) decode a file."""
    assert _settings is not None, "init_worker was not called"
    return process_file_with(path, size, mtime_ns, _settings, _known)


def process_file_with(
    path: str,
    size: int,
    mtime_ns: int,
    settings: DecodeSettings,
    known: frozenset[str] | set[str] = frozenset(),
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
                    res.code, res.reason = "bad", "empty file (0 bytes)"
                elif claimed:
                    res.code, res.reason = "bad", f"content is not a known {claimed} format"
                else:
                    res.code, res.reason = "not-media", "not a media file"
                return res
            if res.kind != IMAGE:
                res.fingerprint = fingerprint_file(path, size)
                res.code = "unsupported"
                res.reason = f"{res.kind} files are not indexed by this version of Loupe"
                return res
            if size > FULL_HASH_LIMIT * 4:
                res.code = "bad"
                res.reason = f"image file of {size:,} bytes is too large to decode"
                return res
            data = head + f.read()
    except OSError as e:
        res.code, res.reason = "bad", f"cannot read: {e.strerror or e}"
        return res
    if len(data) != size:
        size = len(data)  # the file changed while we looked; record what we read
        res.size = size
    res.fingerprint = fingerprint_bytes(data)
    if res.fingerprint in known:
        res.reused = True
        return res
    try:
        dec = decode_image(data, settings.preprocess, settings.max_pixels, settings.draft_factor)
    except ImageDecodeError as e:
        res.code, res.reason = "bad", str(e)
        return res
    res.pixels, res.width, res.height = dec.pixels, dec.width, dec.height
    return res


def default_workers() -> int:
    """Decode processes to start: one per core (the embedder runs in the main process)."""
    return max(1, os.cpu_count() or 1)
