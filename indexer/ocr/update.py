"""The OCR pass of an indexing run: read the text of the photos and video frames that
have no reading from the current model and file content, drop the readings of items
that are gone, and keep the full-text index in step (like tags, after the embedding).

A video is decoded once, front to back, at its indexed frames' times. A frame of the
same shot as the last frame read, whose picture did not change (a title card held for
5 s, a static shot), shares that reading instead of being read again; frames of one
shot whose text reads the same are one reading (one moment) even when the picture moved.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from loupe.indexer.kinds import PICTURE_KINDS, ItemKind
from loupe.indexer.ocr.reader import OCR_MODEL, READ_SIDE, Line, TextReader, load_reader
from loupe.search.store import Store
from loupe.search.text.index import TextIndex
from loupe.search.text.normalise import squash
from loupe.search.text.table import (
    DEFAULT_MIN_SCORE,
    delete_texts,
    ocr_config,
    text_rows,
    upsert_texts,
)

# Two frames of one shot show the same picture when their 64x64 grey copies differ by at
# most this much on average (0-255): codec noise on a still frame is well under 1.
SAME_PICTURE = 2.0
COMMIT_ITEMS = 64  # readings written per commit (or every COMMIT_SECONDS)
COMMIT_SECONDS = 10.0


@dataclass
class OcrStats:
    """What an OCR pass did."""

    read: int = 0  # pictures the models looked at
    shared: int = 0  # frames that took the reading of an unchanged frame before them
    with_text: int = 0  # pictures showing text (a line at or above the confidence floor)
    lines: int = 0  # lines found at or above the floor
    unreadable: int = 0  # pictures that did not decode (recorded with the reason)
    removed: int = 0  # readings of items gone from the index


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BILINEAR),
                      np.int16)


def _row(item: dict, lines: list[Line], read_from: str, problem: str | None = None) -> dict:
    return {"id": item["id"], "path": item["path"], "timestamp": item["timestamp"],
            "fingerprint": item["fingerprint"], "model": OCR_MODEL, "read_from": read_from,
            "lines": [x.as_dict() for x in lines], "problem": problem, "read_at": time.time()}


def _counted(stats: OcrStats, lines: list[Line], floor: float) -> list[Line]:
    """``lines``, just read, counted into ``stats``."""
    stats.read += 1
    sure = sum(x.score >= floor for x in lines)
    stats.with_text += bool(sure)
    stats.lines += sure
    return lines


def _read_photo(reader: TextReader, item: dict, stats: OcrStats, floor: float) -> list[dict]:
    from loupe.indexer.media.image import ImageDecodeError, to_rgb, upright_picture

    try:
        with open(item["path"], "rb") as f:
            data = f.read()
        image, w, h, _ = upright_picture(data, draft=(READ_SIDE, READ_SIDE))
        lines = reader.read(to_rgb(image), (w, h))
    except (OSError, ImageDecodeError) as e:
        stats.unreadable += 1
        return [_row(item, [], item["id"], f"cannot read: {e}")]
    return [_row(item, _counted(stats, lines, floor), item["id"])]


def _text_key(lines: list[Line]) -> str:
    return "\n".join(squash(x.text) for x in lines)


def _read_video(reader: TextReader, frames: list[dict], stats: OcrStats,
                floor: float) -> list[dict]:
    """Read a video's frames in one pass. A frame of the same shot as the last one read
    whose picture did not change takes that reading unread; one whose picture changed
    but whose text reads the same (a pan across a sign) is read, keeps its own boxes,
    and joins the same reading (one document, one moment, searched by its first frame).
    """
    from loupe.indexer.media.video import VideoDecodeError, frames_at

    frames = sorted(frames, key=lambda r: r["timestamp"] or 0.0)
    by_time = {r["timestamp"] or 0.0: r for r in frames}
    rows: list[dict] = []
    last = None  # (shot, grey copy of the last frame read, its lines, its reading)
    try:
        for ts, image in frames_at(frames[0]["path"], list(by_time)):
            item = by_time[ts]
            grey = _grey(image)
            same_shot = last is not None and last[0] == item["shot"]
            if same_shot and float(np.abs(grey - last[1]).mean()) <= SAME_PICTURE:
                rows.append(_row(item, last[2], last[3]))
                stats.shared += 1
                continue
            lines = _counted(stats, reader.read(image), floor)
            reading = item["id"]
            if same_shot and lines and _text_key(lines) == _text_key(last[2]):
                reading = last[3]
            last = (item["shot"], grey, lines, reading)
            rows.append(_row(item, lines, reading))
    except VideoDecodeError as e:
        done = {r["id"] for r in rows}
        for item in frames:
            if item["id"] not in done:
                stats.unreadable += 1
                rows.append(_row(item, [], item["id"], f"cannot read: {e}"))
    return rows


def update_texts(store: Store, reader_factory: Callable[[], TextReader] = load_reader,
                 on_progress: Callable[[int, int], None] | None = None,
                 progress: bool = False) -> OcrStats:
    """Read the text of every photo and frame not read yet (from this model and this
    file content), drop the readings of items that are gone, and bring the full-text
    index up to date. Committed every ``COMMIT_ITEMS`` readings: a killed pass keeps
    what it read, and the next run reads the rest. Cheap when nothing changed."""
    stats = OcrStats()
    if not ocr_config(store):
        return stats
    index = TextIndex(store)
    stamp = [store.version(), OCR_MODEL]
    if store.meta.get("ocr_done") == stamp:
        index.ensure_fresh()
        return stats
    items = store.item_rows(["id", "path", "kind", "timestamp", "fingerprint", "shot"])
    items = items.filter(pc.is_in(items["kind"], pa.array([str(k) for k in PICTURE_KINDS])))
    have = text_rows(store, ["id", "path", "model", "fingerprint"]).to_pylist()
    known = {r["id"]: (r["model"], r["fingerprint"]) for r in have}
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in items.to_pylist():
        by_path[r["path"]].append(r)
    todo = {p: rs for p, rs in by_path.items()
            if any(known.get(r["id"]) != (OCR_MODEL, r["fingerprint"]) for r in rs)}
    current = {r["id"] for rs in by_path.values() for r in rs}
    gone = [r for r in have if r["id"] not in current]
    if gone:
        before = index.stamp()
        delete_texts(store, [r["id"] for r in gone])
        paths = {r["path"] for r in gone} - set(todo)
        kept = [r for r in text_rows(store).to_pylist() if r["path"] in paths] if paths else []
        index.replace_paths(paths, kept, before)
        stats.removed = len(gone)
    total = sum(len(rs) for rs in todo.values())
    if total:
        _read_all(store, index, todo, total, reader_factory(), stats, on_progress, progress)
    index.ensure_fresh()
    store.meta.update(ocr_done=stamp)
    return stats


def _read_all(store: Store, index: TextIndex, todo: dict[str, list[dict]], total: int,
              reader: TextReader, stats: OcrStats,
              on_progress: Callable[[int, int], None] | None, progress: bool) -> None:
    from tqdm import tqdm

    floor = (ocr_config(store) or {}).get("min_score", DEFAULT_MIN_SCORE)
    bar = tqdm(total=total, unit="picture", desc="reading text", file=sys.stderr,
               disable=not progress, leave=False)
    pending: list[dict] = []
    paths: set[str] = set()
    last_commit = time.monotonic()
    done = 0

    def commit() -> None:
        nonlocal last_commit
        if pending:
            before = index.stamp()
            upsert_texts(store, pending)
            index.replace_paths(paths, pending, before)
            pending.clear()
            paths.clear()
        last_commit = time.monotonic()

    try:
        for path, rows in todo.items():
            if rows[0]["kind"] == ItemKind.FRAME:
                out = _read_video(reader, rows, stats, floor)
            else:
                out = [r for item in rows for r in _read_photo(reader, item, stats, floor)]
            pending.extend(out)
            paths.add(path)
            done += len(rows)
            bar.update(len(rows))
            if on_progress:
                on_progress(done, total)
            if len(pending) >= COMMIT_ITEMS or time.monotonic() - last_commit > COMMIT_SECONDS:
                commit()
        commit()
    finally:
        bar.close()
