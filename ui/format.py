"""How the UI writes things for people: Markdown-safe text, sizes, dates, paths, media
types, model names, and the words for kinds of items."""

from __future__ import annotations

import mimetypes
import os
import time

from loupe.indexer import ItemKind, clock

__all__ = ["ITEM_NOUN", "KIND_FILTERS", "KIND_LABEL", "clock", "human_size", "md",
           "media_type", "model_label", "results_noun", "shown_path", "when"]

# The kind filter: label -> the Searcher's kind ("frame" is a video moment).
KIND_FILTERS = {"All": None, "Photo": ItemKind.PHOTO, "Video": ItemKind.FRAME,
                "Sound": ItemKind.AUDIO}
KIND_LABEL = {ItemKind.PHOTO: "Photo", ItemKind.FRAME: "Video", ItemKind.AUDIO: "Sound"}
ITEM_NOUN = {ItemKind.PHOTO: "photo", ItemKind.FRAME: "video moment",
             ItemKind.AUDIO: "sound window"}


def results_noun(kind: str | None, group: bool, n: int) -> str:
    """What the results are: "photos", "videos", "video moments", "sound files"..."""
    word = {None: "result", ItemKind.PHOTO: "photo",
            ItemKind.FRAME: "video" if group else "video moment",
            ItemKind.AUDIO: "sound file" if group else "sound window"}.get(kind, "result")
    return word if n == 1 else word + "s"


def md(text: object) -> str:
    """Plain text made safe to show inside Markdown (its special characters escaped)."""
    out = str(text)
    for ch in "\\`*_[]<>#|~$":
        out = out.replace(ch, "\\" + ch)
    return out


def human_size(n: int | None) -> str:
    """1.2 MB."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


def when(mtime_ns: int | None) -> str:
    """A file's date and time (local)."""
    if mtime_ns is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime_ns / 1e9))


def shown_path(path: str) -> str:
    """A path with the home folder as ~."""
    home = os.path.expanduser("~")
    if home and home != "/" and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
         ".webm": "video/webm", ".mkv": "video/x-matroska", ".wav": "audio/wav",
         ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
         ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4",
         ".aac": "audio/aac"}


def media_type(path: str, default: str) -> str:
    """The MIME type a browser player needs for a stored file."""
    ext = os.path.splitext(path)[1].lower()
    return _MIME.get(ext) or mimetypes.guess_type(path)[0] or default


def model_label(spec) -> str:
    """A short name for a model of the index (a folder's name rather than its path)."""
    model = spec.model.removeprefix("local-dir:").removeprefix("hf-hub:").rstrip("/")
    return f"{spec.backend} {os.path.basename(model) or model}"
