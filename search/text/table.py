"""The ``texts`` table: what was read in each photo and video frame (store of record).

One row per picture item: its lines (text, confidence, box), the fingerprint of the file
it was read from (a changed file is read again), and ``read_from``: the item whose pixels
were actually read; frames of one shot whose picture did not change share the reading of
the first of them, and are searched as one moment (:mod:`loupe.search.text.index`).
The index's OCR settings live in its meta (``ocr``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence

import pyarrow as pa

from loupe.indexer.errors import LoupeError
from loupe.indexer.ocr.reader import OCR_MODEL, Line
from loupe.search.store import Store, read_columns, scan, upsert, where_in

TEXTS = "texts"
LINE_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("score", pa.float32()),
    pa.field("box", pa.list_(pa.float32(), 8)),
])
TEXTS_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),  # the item (photo or frame)
    pa.field("path", pa.string()),
    pa.field("timestamp", pa.float64()),  # frames: seconds into the video
    pa.field("fingerprint", pa.string()),  # the file's, when read
    pa.field("model", pa.string()),  # what read it (OCR_MODEL)
    pa.field("read_from", pa.string()),  # the item whose pixels were read (itself, or shared)
    pa.field("lines", pa.list_(LINE_TYPE)),
    pa.field("problem", pa.string()),  # why nothing could be read (the file did not decode)
    pa.field("read_at", pa.float64()),
])
DEFAULT_MIN_SCORE = 0.5  # lines read with less confidence are kept but not searched
INDEX_FILE = "text.sqlite"  # the derived full-text index, in the index folder


def _table(store: Store, create: bool = False):
    return store.table(TEXTS, lambda: TEXTS_SCHEMA, create)


def ocr_config(store: Store) -> dict | None:
    """The index's OCR settings (``min_score``), or None: it does not read text."""
    return store.meta.get("ocr")


def require_ocr(store: Store) -> dict:
    """The OCR settings, or LoupeError saying how to turn OCR on."""
    cfg = ocr_config(store)
    if not cfg:
        raise LoupeError("this index has not read the text in its pictures: index with --ocr "
                         "(`loupe index DIR --ocr`) to read it, then search with ocr:\"words\"")
    return cfg


def set_ocr(store: Store, on: bool, min_score: float | None = None) -> dict | None:
    """Turn reading text on (kept up to date by every indexing run from now on) or off
    (the settings, the table and the text index are dropped)."""
    if not on:
        store.meta.update(ocr=None, ocr_done=None)
        store.drop_table(TEXTS)
        remove_index_file(store)
        return None
    current = ocr_config(store) or {}
    score = current.get("min_score", DEFAULT_MIN_SCORE) if min_score is None else min_score
    if not 0 <= score < 1:
        raise LoupeError("the OCR confidence floor must be in [0, 1)")
    cfg = {"min_score": float(score), "model": OCR_MODEL}
    store.meta.update(ocr=cfg)
    return cfg


def index_path(store: Store) -> str:
    """Where the derived full-text index lives."""
    return os.path.join(store.dir, INDEX_FILE)


def remove_index_file(store: Store) -> None:
    """Delete the derived full-text index (rebuilt from the table when next needed)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(index_path(store) + suffix)
        except FileNotFoundError:
            pass
    shutil.rmtree(index_path(store) + ".tmp", ignore_errors=True)


def table_version(store: Store) -> int:
    """The texts table's version (0 when there is none): the text index is in step with
    the table when built at this version."""
    t = _table(store)
    if t is None:
        return 0
    t.checkout_latest()
    return int(t.version)


def text_rows(store: Store, columns: Sequence[str] | None = None,
              where: str | None = None) -> pa.Table:
    """Stored readings (all columns, or ``columns``), optionally filtered."""
    names = list(columns or TEXTS_SCHEMA.names)
    t = _table(store)
    if t is None:
        return TEXTS_SCHEMA.empty_table().select(names)
    return scan(t, names, where)


def upsert_texts(store: Store, rows: list[dict]) -> None:
    """Insert or replace readings by item id, in one commit."""
    if rows:
        upsert(_table(store, create=True), "id", rows, TEXTS_SCHEMA)


def delete_texts(store: Store, ids: Iterable[str]) -> None:
    """Drop the readings of these items."""
    t = _table(store)
    if t is not None:
        for where in where_in("id", ids):
            t.delete(where)


def lines_of(row_lines: list[dict] | None) -> list[Line]:
    """A stored row's lines as :class:`Line`."""
    return [Line(x["text"], float(x["score"]), tuple(float(v) for v in x["box"]))
            for x in row_lines or ()]


def texts_of(store: Store, item_ids: Sequence[str]) -> dict[str, list[Line]]:
    """{item id: every line read in it, whatever its confidence} of these items (those
    read; an index without OCR gives {})."""
    if not item_ids or not ocr_config(store):
        return {}
    out: dict[str, list[Line]] = {}
    for where in where_in("id", item_ids):
        for row in text_rows(store, ["id", "lines"], where).to_pylist():
            out[row["id"]] = lines_of(row["lines"])
    return out


def read_count(store: Store) -> tuple[int, int]:
    """(pictures with a reading, lines read: a reading shared by frames counts once)."""
    t = _table(store)
    if t is None:
        return 0, 0
    import pyarrow.compute as pc

    a = read_columns(t, ["id", "read_from", "lines"])
    own = a.filter(pc.equal(a["id"], a["read_from"]))
    return a.num_rows, int(pc.sum(pc.list_value_length(own["lines"])).as_py() or 0)
