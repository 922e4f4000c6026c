"""What the UI's panels list about an index (counts, tag labels, folders, the Index page's
status and its lists of files), computed once per version of the tables each comes from
and shared by every session. No Streamlit here.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from loupe.search import index_status, indexed_folders, status_rows
from loupe.search.explain import tag_labels, tagging_config
from loupe.search.store import Store

PAGE_ROWS = 200  # rows of a file list shown at once on the Index page


class IndexSummaries:
    """The panels' lists of one index, each cached under the versions of the tables it
    is read from (and the meta file's time, for what the meta says).

    It has its own Store and lock: building a list never waits for a search, and a
    search never waits for a list. The lists are read with narrow column projections
    and LanceDB row counts, never whole tables.
    """

    def __init__(self, db: str):
        self.db = db
        self.lock = threading.Lock()
        self._store: Store | None = None
        self._cache: dict[str, tuple[tuple, Any]] = {}

    def _get(self, name: str, tables: tuple[str, ...] | None, meta: bool,
             compute: Callable[[Store], Any], faiss: bool = False) -> Any:
        """``compute(store)``, again only when the versions of ``tables`` (None: every
        table) have changed since it was kept, or with ``meta`` the meta file (it is
        then read again), or with ``faiss`` the saved search indexes."""
        with self.lock:
            if self._store is None:
                self._store = Store(self.db)
            store = self._store
            try:
                versions = store.versions()
                key = tuple(sorted(versions.items() if tables is None else
                                   ((t, versions.get(t)) for t in tables)))
                if meta:
                    key += (_mtime(store.meta.path),)
                if faiss:  # a saved index is renamed into its folder when it is built
                    key += (_mtime(os.path.join(store.dir, "faiss")),)
                kept = self._cache.get(name)
                if kept is not None and kept[0] == key:
                    return kept[1]
                if meta:
                    store.meta.reload()
                value = compute(store)
            except Exception:
                self._store = None  # a table dropped and made again: open it afresh
                raise
            self._cache[name] = (key, value)
            return value

    def counts(self) -> dict[str, int]:
        """{kind: items}."""
        return self._get("counts", ("items",), False, lambda s: s.counts())

    def tag_labels(self) -> list[str]:
        """The labels the stored tags use (for the tag filter); empty when the index is
        not tagged."""
        return self._get("tag_labels", ("tags",), True,
                         lambda s: tag_labels(s) if tagging_config(s) else [])

    def folders(self) -> list[str]:
        """Every folder holding indexed files and those above them, sorted."""
        return self._get("folders", ("files",), False, indexed_folders)

    def status(self) -> dict:
        """``index_status`` without its lists (their sizes are in it): the Index page's."""
        return self._get("status", None, True, lambda s: index_status(s, lists=False),
                         faiss=True)

    def rows(self, which: str) -> pa.Table:
        """One of the status's file lists (``status_rows``), whole."""
        return self._get(f"rows:{which}", ("files", "skipped"), False,
                         lambda s: status_rows(s, which))

    def count(self, which: str) -> int:
        """How many files a file list has."""
        return self.rows(which).num_rows

    def page(self, which: str, page: int, size: int = PAGE_ROWS) -> tuple[list[dict], int]:
        """Page ``page`` (from 0) of ``size`` rows of a file list, and its length."""
        table = self.rows(which)
        return table.slice(page * size, size).to_pylist(), table.num_rows

    def csv(self, which: str) -> bytes:
        """A file list, whole, as CSV (built when a download asks for it)."""
        buf = io.BytesIO()
        pacsv.write_csv(self.rows(which), buf)
        return buf.getvalue()


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
