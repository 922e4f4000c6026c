"""How the UI writes things for people: Markdown-safe text, sizes, dates, paths, model
names, and the words for kinds of items."""

from __future__ import annotations

import os
import time

from loupe.indexer import ItemKind, clock

__all__ = ["ITEM_NOUN", "KIND_FILTERS", "KIND_LABEL", "SORTS", "capture_facts", "clock",
           "human_size", "md", "model_label", "results_noun", "shown_path", "when"]

# The kind filter: label -> the Searcher's kind ("frame" is a video moment).
KIND_FILTERS = {"All": None, "Photo": ItemKind.PHOTO, "Video": ItemKind.FRAME,
                "Sound": ItemKind.AUDIO}
KIND_LABEL = {ItemKind.PHOTO: "Photo", ItemKind.FRAME: "Video", ItemKind.AUDIO: "Sound"}
ITEM_NOUN = {ItemKind.PHOTO: "photo", ItemKind.FRAME: "video moment",
             ItemKind.AUDIO: "sound window"}
# The order of results: label -> the Searcher's sort.
SORTS = {"Most relevant": "relevance", "Newest taken": "newest", "Oldest taken": "oldest"}


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


def model_label(spec) -> str:
    """A short name for a model of the index (a folder's name rather than its path)."""
    model = spec.model.removeprefix("local-dir:").removeprefix("hf-hub:").rstrip("/")
    return f"{spec.backend} {os.path.basename(model) or model}"


def capture_facts(row: dict) -> list[tuple[str, str]]:
    """What the camera knew of an item, as (label, text) facts (none where unknown)."""
    facts = []
    if row.get("taken_local"):
        when_taken = row["taken_local"].replace("T", " ")
        offset = row.get("taken_offset_min")
        if offset is not None:
            sign = "-" if offset < 0 else "+"
            when_taken += f" (UTC{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d})"
        facts.append(("Taken", when_taken))
    elif row.get("taken_at") is not None:
        facts.append(("Taken", time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                             time.gmtime(row["taken_at"]))))
    if row.get("place"):
        facts.append(("Place", row["place"]))
    if row.get("lat") is not None and row.get("lon") is not None:
        where = f"{row['lat']:.5f}, {row['lon']:.5f}"
        if row.get("alt") is not None:
            where += f", {row['alt']:.0f} m"
        facts.append(("Position", where))
    make, model = row.get("camera_make") or "", row.get("camera_model") or ""
    # "Canon" + "Canon EOS R5" reads "Canon EOS R5"
    camera = model if make and model.lower().startswith(make.lower()) else (
        f"{make} {model}".strip())
    if camera:
        facts.append(("Camera", camera))
    if row.get("lens"):
        facts.append(("Lens", row["lens"]))
    return facts
