"""The API's items: their records, thumbnails and files, read with Stores of their own."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from loupe.search import Store, open_item, thumbs
from loupe.search.ann import CATALOG_CAPTURE
from loupe.search.explain import tags_of
from loupe.ui.api.common import PREFIX, item_row_or_404

READERS = 4  # Stores reading records, thumbnails and files at once


class Readers:
    """Stores of their own for item records, thumbnails and files, one per request at a
    time (at most ``READERS``): those never wait on a search, nor a search on them, and
    a thumbnail being made holds up only its own request."""

    def __init__(self, db: str):
        self.db = db
        self._free: queue.LifoQueue[Store] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(store, *args)`` with a Store no other thread is using."""
        store = self._take()
        try:
            return fn(store, *args)
        finally:
            self._free.put(store)

    def _take(self) -> Store:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < READERS:
                self._made += 1
                return Store(self.db)
        return self._free.get()


def record(store: Store, item_id: str) -> dict:
    """An item's record: its row's facts, what the camera knew, its stored tags."""
    row = item_row_or_404(store, item_id)
    tags = tags_of(store, [item_id]).get(item_id)
    mtime = row.get("mtime_ns")
    out = {name: row.get(name) for name in ("id", "path", "kind", "timestamp", "end",
                                            "width", "height", "size", "indexed_at")}
    out.update({name: row.get(name) for name in CATALOG_CAPTURE})
    out["mtime"] = None if mtime is None else mtime / 1e9
    out["tags"] = None if tags is None else [{"label": t.label, "share": t.share}
                                             for t in tags]
    out["thumbnail"] = f"{PREFIX}/items/{item_id}/thumbnail"
    out["file"] = f"{PREFIX}/items/{item_id}/file"
    return out


def thumbnail(store: Store, item_id: str, side: int) -> bytes:
    """JPEG bytes of an item's thumbnail (made once, kept in the index folder)."""
    item_row_or_404(store, item_id)
    return thumbs.thumbnail(store, item_id, side)


def opened(store: Store, item_id: str):
    """The item's file, open and checked (FileChanged / FileGone when it is not the file
    that was indexed)."""
    item_row_or_404(store, item_id)
    return open_item(store, item_id)
