"""An item's file, opened only while it is still the file that was indexed.

The stored path of an item is not trusted at read time: the file may have been edited,
moved away, or swapped for a link to something else since the run that indexed it.
:func:`open_item` opens it and checks, on the open descriptor, that it is the same
file: its real path lies under a root the index was built from, and its size, mtime
and content fingerprint are those of the file's record. Whatever reads the file (the
web UI's player, thumbnails, grounding) reads it through that descriptor, so a swap
after the check is never read.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import threading
from dataclasses import dataclass
from typing import BinaryIO

from loupe.indexer.errors import LoupeError
from loupe.indexer.fingerprint import fingerprint_open
from loupe.indexer.kinds import MediaKind
from loupe.search.store import Store, sql_str

CHANGED = "this file changed since it was indexed: re-index to see it"
GONE = "this file is no longer there: re-index to update the index"

# The types a file is served as, by its name; anything else gets its media kind's
# default. Only media types: a file named .html or .svg is never served as a page.
MEDIA_TYPES = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
    ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
    ".webm": "video/webm", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".aac": "audio/aac",
}
DEFAULT_TYPES = {MediaKind.IMAGE: "application/octet-stream", MediaKind.VIDEO: "video/mp4",
                 MediaKind.AUDIO: "audio/wav"}


class FileChanged(LoupeError):
    """An item's file is not the one that was indexed (edited, replaced, linked away)."""

    def __init__(self, message: str = CHANGED):
        super().__init__(message)


class FileGone(FileChanged):
    """An item's file is no longer at its stored path."""

    def __init__(self, message: str = GONE):
        super().__init__(message)


@dataclass
class ItemFile:
    """An item's file, open and checked (close it, or use it in a ``with`` block)."""

    file: BinaryIO  # unbuffered, positioned at 0
    size: int
    media_type: str
    row: dict  # the item's stored row
    path: str  # the stored path

    def fileno(self) -> int:
        """The open descriptor."""
        return self.file.fileno()

    def fd_path(self) -> str:
        """A path that opens this very file (not whatever lies at its stored path now),
        for decoders that take a path."""
        self.file.seek(0)
        fd = self.fileno()
        proc = f"/proc/self/fd/{fd}"
        return proc if os.path.exists(proc) else f"/dev/fd/{fd}"

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> ItemFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def item_row(store: Store, item_id: str) -> dict:
    """The stored row of ``item_id``; LoupeError when the index has no such item."""
    if not isinstance(item_id, str) or not item_id.isalnum():
        raise LoupeError("not an item id")
    row = store.get_items([item_id]).get(item_id)
    if row is None:
        raise LoupeError(f"no item {item_id} in this index")
    return row


def media_type(path: str, media: str | None) -> str:
    """The MIME type to serve a stored file as: by its name, else by its media kind
    (a MediaKind), always a media type."""
    ext = os.path.splitext(path)[1].lower()
    guess = MEDIA_TYPES.get(ext)
    if guess is None:
        guess = mimetypes.guess_type(path)[0]
        if not guess or guess.split("/")[0] not in ("image", "video", "audio") or (
                "svg" in guess):
            guess = None
    return guess or DEFAULT_TYPES.get(media or "", "application/octet-stream")


def open_item(store: Store, item_id: str) -> ItemFile:
    """Open the file of item ``item_id`` if it is still the file that was indexed.

    Checked on the open descriptor: it is a regular file, the same (device, inode) as
    its real path, which lies under a root of the index (an index from before roots were
    kept: its stored path passes through no symlink); its size and mtime are the file
    record's, and so is its fingerprint. LoupeError for an id that is not an item;
    :class:`FileGone` / :class:`FileChanged` (polite, one line) when the file is not the
    indexed one any more.
    """
    row = item_row(store, item_id)
    path = row["path"]
    record = _record(store, row)
    real = os.path.realpath(path)
    # (O_NONBLOCK: a fifo put there must not hang the open; a regular file ignores it)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError as e:
        raise FileGone() from e
    except OSError as e:  # a link put there since realpath, no permission...
        raise FileChanged() from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileChanged()
    f = os.fdopen(fd, "rb", buffering=0)
    try:
        try:
            now = os.stat(real)
        except OSError:
            now = None
        if (now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
                or not _placed(store, record, path, _opened_path(fd) or real)
                or st.st_size != record["size"] or st.st_mtime_ns != record["mtime_ns"]
                or not _same_content(f, st, record["fingerprint"])):
            raise FileChanged()
        f.seek(0)
        return ItemFile(f, st.st_size, media_type(path, record.get("media")), row, path)
    except BaseException:
        f.close()
        raise


def _record(store: Store, row: dict) -> dict:
    """The file record of a row's file (a photo may have only its row: a run killed
    between the two commits; the row carries the same facts)."""
    rows = store.file_rows(f"path = {sql_str(row['path'])}")
    if rows:
        return rows[0]
    return {"size": row["size"], "mtime_ns": row["mtime_ns"], "indexed_at": row["indexed_at"],
            "fingerprint": row["fingerprint"], "media": None}


def _opened_path(fd: int) -> str | None:
    """Where the kernel says the open file is (Linux), None elsewhere."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _placed(store: Store, record: dict, path: str, real: str) -> bool:
    """Whether a file whose real path is ``real`` may be served for stored ``path``."""
    roots = store.meta.roots
    if roots is None or not _under(real, roots):
        store.meta.reload()  # roots only grow: another run may have added one
        roots = store.meta.roots
    if roots is not None and _under(real, roots):
        return True
    since = store.meta.roots_since
    legacy = roots is None or (since is not None and (record.get("indexed_at") or 0) < since)
    # Indexed before roots were kept: its stored path must not pass through a link.
    return legacy and real == os.path.abspath(path)


# Fingerprints already checked, by (device, inode, size, mtime, ctime): a write to the
# file, or setting its mtime back, moves its ctime, so an entry never vouches for new
# content. Saves hashing a file again for each range request of a player.
_CHECKED: dict[tuple[int, int, int, int, int], str] = {}
_CHECKED_LOCK = threading.Lock()
_CHECKED_MAX = 4096


def _same_content(f: BinaryIO, st: os.stat_result, fingerprint: str | None) -> bool:
    if fingerprint is None:  # the indexer always records one: a row written by hand
        return False
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _CHECKED_LOCK:
        if _CHECKED.get(key) == fingerprint:
            return True
    if fingerprint_open(f, st.st_size) != fingerprint:
        return False
    with _CHECKED_LOCK:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = fingerprint
    return True
