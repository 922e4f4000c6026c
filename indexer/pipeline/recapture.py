"""What the camera knew, for files indexed before Loupe read it: read from each file's
metadata alone and written into its rows, without decoding a picture or running a model.

An index made before captures were read has files recorded without ``captured``; a run
that finds such a file unchanged on disk reads its capture here (a JPEG's first
segments, a TIFF's IFDs, a container's tags: ~0.1 ms a photo, 1-2 ms a video), names
the places in one batch, and writes the capture columns of all of the file's rows at
once (:meth:`loupe.search.store.Store.write_captures`: the vectors are not rewritten).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from loupe.indexer.kinds import MediaKind
from loupe.indexer.media.capture import Capture, capture_of_image, capture_of_video, capture_rows
from loupe.search.store import Store

RECAPTURE_BATCH = 10_000  # files per commit
RECAPTURE_THREADS = 4  # reads in flight: a cold disk answers several at once


def read_capture(path: str, media: str | None) -> Capture:
    """The capture of one indexed file from its metadata (never raises)."""
    if media == MediaKind.IMAGE:
        return capture_of_image(path)
    return capture_of_video(path)  # videos, and sound files' containers (M4A, MKA...)


def read_captures(files: Sequence[tuple[str, str | None]]) -> list[Capture]:
    """:func:`read_capture` of each of ``files`` ((path, media)), in order."""
    return [read_capture(path, media) for path, media in files]


def read_all(files: Sequence[tuple[str, str | None]], pool: ThreadPoolExecutor,
             threads: int) -> list[Capture]:
    """:func:`read_capture` of ``files``, in order, on ``threads`` threads of ``pool`` (a
    slice each: few hand-offs, the file reads overlapping)."""
    step = max(1, -(-len(files) // threads))
    parts = pool.map(read_captures, [files[i:i + step] for i in range(0, len(files), step)])
    return [c for part in parts for c in part]


def recapture(store: Store, files: Sequence[tuple[str, str | None]],
              threads: int = RECAPTURE_THREADS) -> int:
    """Read the capture of ``files`` ((path, media) of unchanged, indexed files) and
    write it into their rows, a batch per commit. Returns the files read."""
    done = 0
    threads = max(1, threads)
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(files), RECAPTURE_BATCH):
            batch = files[start:start + RECAPTURE_BATCH]
            rows = capture_rows(read_all(batch, pool, threads))
            for row, (path, _) in zip(rows, batch, strict=True):
                row["path"] = path
            store.write_captures(rows)
            done += len(batch)
    return done
