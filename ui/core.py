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

from loupe.indexer import (
    QUERY_FORMATS,
    QUERY_MAX_PIXELS,
    ItemKind,
    LoupeError,
    MediaKind,
    Modality,
    picture_format,
    sniff,
)
from loupe.search import Hit, QueryLimits, Searcher, Term, parse_query, thumbs
from loupe.search.explain import describe as explain_describe
from loupe.search.store import Store, default_db_dir

OCR = "ocr"  # a Term's kind for text shown in the pictures (``ocr:"hotel lisboa"``)

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
    allow_hosts: tuple[str, ...] = ()  # more names the server answers to (--allow-host)
    password_file: str | None = None  # beyond loopback: the password viewers sign in with
    auth: str | None = None  # "oidc": viewers sign in with the identity provider (st.login)
    oidc_secrets: str | None = None  # the TOML file with its [auth] settings
    max_upload_pixels: int = QUERY_MAX_PIXELS  # a query picture's, checked before decoding
    max_sound_seconds: float = 60.0  # of a query sound, only the first are used
    watch: bool = False  # keep the index's folders indexed (ui/watching.py)
    poll: float | None = None  # with watch: seconds between polls instead of events

    @property
    def query_limits(self) -> QueryLimits:
        """What one viewer's query may cost (terms, text, picture pixels, sound)."""
        return QueryLimits(pixels=self.max_upload_pixels,
                           sound_seconds=self.max_sound_seconds)


def parse_args(argv: Sequence[str]) -> AppArgs:
    """The app's arguments (``streamlit run ui/app.py -- --db DIR [--grounding-model M]``).

    Unknown arguments are ignored (under a test runner ``sys.argv`` is the runner's);
    ``--db`` falls back to $LOUPE_DB, then the per-user data directory.
    """
    p = argparse.ArgumentParser(prog="loupe-ui", add_help=False, allow_abbrev=False)
    p.add_argument("--db", default=None)
    p.add_argument("--grounding-model", default=None)
    p.add_argument("--no-indexing", action="store_true")
    p.add_argument("--allow-host", action="append", default=[])
    p.add_argument("--password-file", default=None)
    p.add_argument("--auth", choices=["oidc"], default=None)
    p.add_argument("--oidc-secrets", default=None)
    p.add_argument("--max-upload-pixels", type=int, default=QUERY_MAX_PIXELS)
    p.add_argument("--max-sound-seconds", type=float, default=60.0)
    p.add_argument("--watch", action="store_true")
    p.add_argument("--poll", type=float, default=None)
    args, _ = p.parse_known_args(list(argv))
    db = args.db or default_db_dir()
    return AppArgs(os.path.abspath(os.path.expanduser(db)), args.grounding_model or None,
                   not args.no_indexing, tuple(args.allow_host), args.password_file or None,
                   max_upload_pixels=max(1, args.max_upload_pixels),
                   max_sound_seconds=max(0.1, args.max_sound_seconds),
                   auth=args.auth, oidc_secrets=args.oidc_secrets, watch=args.watch,
                   poll=args.poll if args.poll and args.poll > 0 else None)


# -- queries ---------------------------------------------------------------------------
def _never_a_file(_: str) -> bool:
    return False


def text_terms(text: str, limits: QueryLimits | None = None) -> list[Term]:
    """The query box's terms: the CLI's arithmetic (``dog + 2:beach - people``), text only.

    The box is split as a shell splits a command line, so ``ocr:"hotel lisboa"`` is one
    term (the text shown in the pictures, "hotel lisboa") as it is on the command line.
    The box never reaches the file system: a token is never taken for a file, and
    ``image:``/``audio:`` terms are refused (uploads are how pictures and sounds come in).
    A box over ``limits`` (its characters, its terms) is refused in one line.
    """
    text = (text or "").strip()
    if not text:
        return []
    limits = limits or QueryLimits()
    if len(text) > limits.text_chars:
        raise LoupeError(f"the query is {len(text):,} characters long: at most "
                         f"{limits.text_chars:,} are taken")
    try:
        tokens = shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise LoupeError(f"cannot read the query: {e} (close the quote)") from e
    if not tokens:
        return []
    try:
        return parse_query(tokens, is_file=_never_a_file, limits=limits)
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


def _check_content(upload: Upload) -> None:
    """Refuse an upload whose bytes are not what its kind may be (by magic bytes, not by
    name): a picture is JPEG, PNG, WebP, GIF, TIFF or BMP (never PostScript or PDF), a
    sound is an audio file or a video's soundtrack."""
    head = upload.data[:64]
    if upload.kind == Modality.IMAGE:
        if picture_format(head) not in QUERY_FORMATS:
            raise LoupeError(f"{upload.name or 'the upload'} is not a picture Loupe takes: "
                             "its content is not JPEG, PNG, WebP, GIF, TIFF or BMP")
    elif sniff(head) not in (MediaKind.AUDIO, MediaKind.VIDEO):
        raise LoupeError(f"{upload.name or 'the upload'} is not a sound Loupe takes: its "
                         "content is not a sound file Loupe knows")


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
            _check_content(u)
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


FOLDERS_SHOWN = 50  # folders offered at once by the folder filter


def match_folders(folders: Sequence[str], text: str,
                  limit: int = FOLDERS_SHOWN) -> tuple[list[str], int]:
    """The first ``limit`` of ``folders`` whose path holds every word of ``text`` (any
    case; no words: every folder), in their order, and how many match in all."""
    words = (text or "").lower().split()
    if not words:
        return list(folders[:limit]), len(folders)
    shown: list[str] = []
    total = 0
    for f in folders:
        low = f.lower()
        if all(w in low for w in words):
            total += 1
            if len(shown) < limit:
                shown.append(f)
    return shown, total


def hit_record(hit: Hit) -> dict:
    """A hit as the session keeps it (plain data)."""
    return hit.as_dict()


# -- text shown in the pictures (ocr: terms) ----------------------------------------------
TEXT_BOX_COLOUR = (255, 0, 255)  # magenta: reads on light and dark pictures, rare in photos


def matched_lines(records: Sequence[dict], item_id: str) -> list[dict]:
    """The lines an ``ocr:`` term matched in one picture (a photo, or one video frame),
    from the session's hit records (``Hit.as_dict()``): ``[]`` when none did."""
    out: list[dict] = []
    for r in records:
        for line in r.get("text") or []:
            if line.get("item") == item_id and line not in out:
                out.append(line)
    return out


def draw_text_boxes(image, lines: Sequence[dict], size: tuple[int, int] | None = None):
    """A copy of ``image`` with each line's box (four corners, in the pixels of the
    picture it was read in, ``size`` = (width, height); default ``image``'s own) outlined,
    as grounding boxes are drawn: scaled to ``image``, so a thumbnail can be drawn on as
    well as the picture itself."""
    from PIL import ImageDraw

    out = image.convert("RGB")  # always a copy
    if not lines:
        return out
    w, h = size or out.size
    sx, sy = out.width / max(1, w), out.height / max(1, h)
    side = min(out.width, out.height)
    width = max(3, round(side / 120))  # (a thumbnail's JPEG blurs a thinner line away)
    draw = ImageDraw.Draw(out)
    for line in lines:
        box = [float(v) for v in line["box"]]
        points = [(box[i] * sx, box[i + 1] * sy) for i in range(0, 8, 2)]
        draw.polygon(points, outline=TEXT_BOX_COLOUR, width=width)
    return out


def shown_texts(lines: Sequence) -> list[tuple[str, float]]:
    """(text, confidence) of the lines read in a picture (``texts_of``'s Line objects or
    dicts), in the order they were read (top to bottom), as its panel lists them."""
    def get(line, name):
        return line[name] if isinstance(line, dict) else getattr(line, name)

    return [(str(get(ln, "text")), float(get(ln, "score"))) for ln in lines]
