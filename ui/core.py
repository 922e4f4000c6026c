"""The UI's plain-Python helpers: no Streamlit here, so tests can call them directly.

Everything the UI does to an index goes through the library the CLI uses
(the public names of loupe.search and loupe.search.explain); this module
only turns widget values into library calls and library answers into display values.
Nothing here opens a file named by a person: the query box is text only, uploads are
written to private temporary files, and stored files are reached by item id.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from loupe.indexer import ItemKind, LoupeError, Modality
from loupe.search import Hit, Searcher, Term, parse_query, thumbs
from loupe.search.explain import describe as explain_describe
from loupe.search.store import Store, default_db_dir

# What an upload may be (the uploaders' `type=` lists; checked again here).
IMAGE_UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "tif", "tiff", "bmp"]
SOUND_UPLOAD_TYPES = ["wav", "mp3", "ogg", "oga", "flac", "m4a", "opus"]

DEDUPE = 0.95  # cosine at which "Hide near-duplicates" hides a hit (as the CLI's default)


@dataclass(frozen=True)
class AppArgs:
    """What `loupe ui` passes after `--`."""

    db: str
    grounding_model: str | None = None
    allow_indexing: bool = True  # off when the UI is served beyond this machine


def parse_args(argv: Sequence[str]) -> AppArgs:
    """The app's arguments (``streamlit run ui/app.py -- --db DIR [--grounding-model M]``).

    Unknown arguments are ignored (under a test runner ``sys.argv`` is the runner's);
    ``--db`` falls back to $LOUPE_DB, then the per-user data directory.
    """
    p = argparse.ArgumentParser(prog="loupe-ui", add_help=False, allow_abbrev=False)
    p.add_argument("--db", default=None)
    p.add_argument("--grounding-model", default=None)
    p.add_argument("--no-indexing", action="store_true")
    args, _ = p.parse_known_args(list(argv))
    db = args.db or default_db_dir()
    return AppArgs(os.path.abspath(os.path.expanduser(db)), args.grounding_model or None,
                   not args.no_indexing)


# -- queries ---------------------------------------------------------------------------
def _never_a_file(_: str) -> bool:
    return False


def text_terms(text: str) -> list[Term]:
    """The query box's terms: the CLI's arithmetic (``dog + 2:beach - people``), text only.

    The box never reaches the file system: a token is never taken for a file, and
    ``image:``/``audio:`` terms are refused (uploads are how pictures and sounds come in).
    """
    text = (text or "").strip()
    if not text:
        return []
    try:
        tokens = shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise LoupeError(f"cannot read the query: {e} (close the quote)") from e
    if not tokens:
        return []
    try:
        return parse_query(tokens, is_file=_never_a_file)
    except LoupeError as e:
        msg = str(e)
        if "not found" in msg:  # image:... / audio:... / beach.jpg typed in the box
            raise LoupeError(
                "the query box takes words only: add pictures and sounds with the uploaders "
                "(write text:NAME to search for a file name as words)") from e
        raise


@dataclass(frozen=True)
class Upload:
    """A picture or sound given to the query: its bytes, name and weight."""

    kind: str  # "image" or "audio"
    name: str
    data: bytes
    weight: float = 1.0


def _suffix(upload: Upload) -> str:
    ext = os.path.splitext(upload.name)[1].lower().lstrip(".")
    allowed = IMAGE_UPLOAD_TYPES if upload.kind == Modality.IMAGE else SOUND_UPLOAD_TYPES
    if ext not in allowed:
        what = "picture" if upload.kind == Modality.IMAGE else "sound"
        raise LoupeError(f"{upload.name or 'the upload'} is not a {what} Loupe takes "
                         f"({', '.join(allowed)})")
    return "." + ext


@contextmanager
def upload_terms(uploads: Sequence[Upload]) -> Iterator[list[Term]]:
    """Terms for uploads, each written to a private temporary file that is removed on exit.

    The folder is made by ``tempfile.mkdtemp`` (readable by this user only); files get a
    fixed name and the upload's (checked) extension, never the uploaded name.
    """
    if not uploads:
        yield []
        return
    folder = tempfile.mkdtemp(prefix="loupe-query-")
    try:
        terms = []
        for i, u in enumerate(uploads):
            if u.kind not in (Modality.IMAGE, Modality.AUDIO):
                raise LoupeError(f"unknown upload kind {u.kind!r}")
            if not u.data:
                raise LoupeError(f"{u.name or 'the upload'} is empty")
            if not math.isfinite(u.weight) or u.weight == 0:
                raise LoupeError(f"the weight of {u.name} must be a number other than 0")
            path = os.path.join(folder, f"query-{i}{_suffix(u)}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(u.data)
            terms.append(Term(float(u.weight), u.kind, path))
        yield terms
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def days_to_range(days) -> tuple[float | None, float | None]:
    """A date_input range (first and last day, both included; one day, or none) as
    [since, until) seconds since the epoch, local time."""
    import datetime as dt

    days = [d for d in (days if isinstance(days, list | tuple) else [days]) if d]
    if not days:
        return None, None
    first, last = min(days), max(days)
    since = dt.datetime.combine(first, dt.time()).timestamp()
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time()).timestamp()
    return since, until


def describe(searcher: Searcher, item_id: str, vocabulary: str = "everyday"):
    """A stored picture's tags and style (``loupe.search.explain.describe``) with the
    searcher's first model that embeds pictures and text."""
    column = searcher.column_for({Modality.IMAGE, Modality.TEXT})
    return explain_describe(searcher.store, searcher.encoder_of(column), column, item_id,
                            vocabulary)


# -- items -----------------------------------------------------------------------------
def check_item(store: Store, item_id: object) -> dict:
    """The stored row of an item id that came from a person (URL, session); LoupeError
    when it is not an item of this index. Only the store is read: no file is opened."""
    if not isinstance(item_id, str) or not item_id or len(item_id) > 64:
        raise LoupeError("that is not an item of this index")
    try:
        return thumbs.item_row(store, item_id)
    except LoupeError as e:
        raise LoupeError("that link does not point to an item of this index "
                         "(it may have been removed by a re-index)") from e


def neighbour_frames(searcher: Searcher, item_id: str, seconds: float,
                     limit: int = 16) -> list[tuple[str, float]]:
    """(id, timestamp) of the frames of the same video within ``seconds`` of a frame
    (itself included), in time order, from the searcher's index of the default column.

    The loaded index's row catalog lists them (RowCatalog.frames_near: no file is opened).
    """
    row = thumbs.item_row(searcher.store, item_id)
    if row["kind"] != ItemKind.FRAME or row["timestamp"] is None:
        raise LoupeError("only a video moment has surrounding frames")
    t = float(row["timestamp"])
    out: list[tuple[str, float]] = []
    for col in searcher.store.meta.encoders:
        out = searcher.index_of(col).catalog.frames_near(item_id, seconds)
        if out:
            break
    if len(out) > limit:  # the ones nearest in time
        out = sorted(sorted(out, key=lambda p: abs(p[1] - t))[:limit], key=lambda p: p[1])
    return out


def folder_choices(paths: Sequence[str] | np.ndarray, limit: int = 5000) -> list[str]:
    """Folders to filter by: every folder holding indexed files, and the folders above
    them down to the archive's roots (the common part of all paths), sorted."""
    dirs = {os.path.dirname(str(p)) for p in set(paths)}
    if not dirs:
        return []
    try:
        top = os.path.commonpath(list(dirs))
    except ValueError:  # mixed drives
        top = ""
    out = set()
    for d in dirs:
        while d and d not in out:
            out.add(d)
            if d == top or os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
    return sorted(out)[:limit]


def hit_record(hit: Hit) -> dict:
    """A hit as the session keeps it (plain data)."""
    return hit.as_dict()
