"""The rows the indexer writes, built in one place: an item's row, a file's record and
a skip record (the pipeline and the Ray driver both build them here)."""

from __future__ import annotations

import time
from typing import TypedDict

from loupe.indexer.decode.results import FileResult, Item
from loupe.indexer.kinds import MediaKind
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
    }


def file_record(r: FileResult, rows: int, run_time: float) -> FileRecord:
    """The files-table record of a file whose ``rows`` items are all written."""
    return {
        "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns,
        "fingerprint": r.fingerprint, "media": r.kind, "rows": rows,
        "duration": r.duration, "problem": r.problem, "indexed_at": run_time,
        "sound": r.sound,
    }


def photo_record(path: str, size: int, mtime_ns: int, fingerprint: str | None,
                 run_time: float) -> FileRecord:
    """The record of a photo whose one row is already written (a run killed between
    the row's commit and the record's)."""
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "fingerprint": fingerprint,
            "media": MediaKind.IMAGE, "rows": 1, "duration": None, "problem": None,
            "indexed_at": run_time, "sound": False}


def skip_record(path: str, size: int | None, mtime_ns: int | None, kind: str | None,
                code: str | None, reason: str | None) -> SkipRecord:
    """The skipped-table record of a file not indexed, stamped now."""
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "kind": kind, "code": code,
            "reason": reason, "at": time.time()}
