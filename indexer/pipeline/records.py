"""The rows the indexer writes, built in one place: an item's row, a file's record and
a skip record (the pipeline and the Ray driver both build them here).

An item row carries its file's capture (what the camera knew) as the decode worker read
it, its ``place`` left null: place names are given by :func:`name_places` in the main
process, a commit's rows at a time (the town table costs 70 MB, once: not in every
decode worker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import TypedDict

from loupe.indexer.decode.results import FileResult, Item
from loupe.indexer.kinds import MediaKind
from loupe.indexer.media.capture import NOTHING, places_of
from loupe.search.store import item_id


class ItemRow(TypedDict, total=False):
    """A row of the items table, without its vector columns (added by name)."""

    id: str
    path: str
    kind: str
    size: int | None
    mtime_ns: int | None
    fingerprint: str | None
    width: int | None
    height: int | None
    timestamp: float | None
    indexed_at: float
    end: float | None
    shot: int | None
    silent: bool | None
    taken_at: float | None  # the capture columns (loupe.search.store.CAPTURE_NAMES)
    taken_local: str | None
    taken_offset_min: int | None
    taken_source: str | None
    lat: float | None
    lon: float | None
    alt: float | None
    camera_make: str | None
    camera_model: str | None
    lens: str | None
    place: str | None


class FileRecord(TypedDict):
    """A row of the files table: a file whose items are all written."""

    path: str
    size: int | None
    mtime_ns: int | None
    fingerprint: str | None
    media: str | None
    rows: int
    duration: float | None
    problem: str | None
    indexed_at: float
    sound: bool | None
    decoded_from: str | None
    captured: bool | None  # its capture was read into its rows (None: not yet)


class SkipRecord(TypedDict):
    """A row of the skipped table: a file looked at and not indexed."""

    path: str
    size: int | None
    mtime_ns: int | None
    kind: str | None
    code: str | None
    reason: str | None
    at: float


def item_row(r: FileResult, item: Item, run_time: float) -> ItemRow:
    """The items-table row of one item of a file (without its vectors)."""
    return {
        "id": item_id(r.path, item.kind, item.timestamp), "path": r.path, "kind": item.kind,
        "size": r.size, "mtime_ns": r.mtime_ns, "fingerprint": r.fingerprint,
        "width": item.width, "height": item.height, "timestamp": item.timestamp,
        "indexed_at": run_time, "end": item.end, "shot": item.shot, "silent": item.silent,
        **(r.capture or NOTHING).to_row(),  # type: ignore[typeddict-item]
    }


def warm_places() -> None:
    """Start loading the town table on a thread of its own (once a process), so that a
    run's first commit with a point finds it loaded: the load (~0.5 s, importing
    scipy) overlaps with the workers' decoding instead of stalling the writer."""
    global _warming
    if _warming is None:
        _warming = threading.Thread(target=places_of, args=([(51.5, 0.0)],),
                                    name="loupe-towns", daemon=True)
        _warming.start()


_warming: threading.Thread | None = None


def name_places(rows: Iterable[dict]) -> None:
    """Fill the ``place`` of the rows that have a point (lat, lon) and no place name
    yet, in one lookup per distinct point (a video's frames share theirs)."""
    todo: dict[tuple[float, float], list[dict]] = {}
    for r in rows:
        if r.get("place") is None and r.get("lat") is not None and r.get("lon") is not None:
            todo.setdefault((r["lat"], r["lon"]), []).append(r)
    points: Sequence[tuple[float, float]] = list(todo)
    for point, name in zip(points, places_of(points), strict=True):
        for r in todo[point]:
            r["place"] = name


def file_record(r: FileResult, rows: int, run_time: float) -> FileRecord:
    """The files-table record of a file whose ``rows`` items are all written."""
    return {
        "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns,
        "fingerprint": r.fingerprint, "media": r.kind, "rows": rows,
        "duration": r.duration, "problem": r.problem, "indexed_at": run_time,
        "sound": r.sound, "decoded_from": r.decoded_from, "captured": r.capture is not None,
    }


def photo_record(path: str, size: int, mtime_ns: int, fingerprint: str | None,
                 run_time: float) -> FileRecord:
    """The record of a photo whose one row is already written (a run killed between
    the row's commit and the record's)."""
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "fingerprint": fingerprint,
            "media": MediaKind.IMAGE, "rows": 1, "duration": None, "problem": None,
            "indexed_at": run_time, "sound": False, "decoded_from": None, "captured": None}


def skip_record(path: str, size: int | None, mtime_ns: int | None, kind: str | None,
                code: str | None, reason: str | None) -> SkipRecord:
    """The skipped-table record of a file not indexed, stamped now."""
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "kind": kind, "code": code,
            "reason": reason, "at": time.time()}
