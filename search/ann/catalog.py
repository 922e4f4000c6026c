"""What each position of a FAISS index holds: the item's id, path, kind and times.

A :class:`RowCatalog` is aligned with its index by position (position = the order rows
were added). It answers the questions searches and features ask about those rows
without touching FAISS: which positions pass a filter (:meth:`RowCatalog.mask`, cached),
which are still alive, and which frames of a video lie around a moment
(:meth:`RowCatalog.frames_near`).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.kinds import ItemKind

# The columns kept per position (saved beside the index as its ``.rows`` file)
ROW_COLUMNS = ["id", "path", "kind", "timestamp", "end", "mtime_ns", "indexed_at"]
MASK_CACHE = 64  # filter masks kept per catalog (cleared when full)


def with_row_columns(table: pa.Table) -> pa.Table:
    """``table`` with every row column present (nulls where a column is missing: rows
    read before the store had it, or an older saved index)."""
    for name, typ in (("path", pa.string()), ("kind", pa.string()),
                      ("timestamp", pa.float64()), ("end", pa.float64()),
                      ("mtime_ns", pa.int64()), ("indexed_at", pa.float64())):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
    return table


def _seconds(values: list, scale: float = 1.0) -> np.ndarray:
    return np.asarray([np.nan if v is None else v / scale for v in values], np.float64)


class RowCatalog:
    """Per index position: the item's ``ids``, ``paths``, ``kinds``, ``timestamps``
    (seconds into a video or sound file, NaN for a photo), ``ends``, ``mtimes`` (the
    file's modification time, seconds since the epoch; NaN: unknown) and ``alive``
    (False: the row is gone or was replaced since the index was built, never returned;
    None: all live). ``rows`` is the Arrow table they come from."""

    def __init__(self, rows: pa.Table, alive: np.ndarray | None = None):
        self.rows = rows
        self.alive = None if alive is None or alive.all() else alive
        self.ids = np.asarray(rows["id"].to_pylist(), dtype=object)
        self.paths = np.asarray(rows["path"].to_pylist(), dtype=object)
        self.kinds = np.asarray(rows["kind"].to_pylist(), dtype=object)
        ts = rows["timestamp"].to_pylist()
        self.timestamps = _seconds(ts)
        ends = rows["end"].to_pylist() if "end" in rows.column_names else [None] * len(ts)
        self.ends = _seconds(ends)
        mt = rows["mtime_ns"].to_pylist() if "mtime_ns" in rows.column_names else []
        self.mtimes = _seconds(mt, 1e9) if mt else np.full(len(ts), np.nan)
        self._masks: dict[tuple, np.ndarray | None] = {}
        self._positions: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def live(self) -> np.ndarray:
        """Whether each position is alive, as a boolean array (a copy)."""
        return np.ones(len(self), bool) if self.alive is None else self.alive.copy()

    def mask(self, kind: str | None = None, folder: str | None = None,
             since: float | None = None, until: float | None = None) -> np.ndarray | None:
        """Boolean mask of live positions passing the filters (None when there are none
        and every position is alive).

        ``since`` / ``until``: the file's modification time (seconds since the epoch) is
        at or after ``since`` and before ``until``. Masks are cached: the catalog
        belongs to one store version.
        """
        key = (kind, os.path.abspath(folder) if folder else None, since, until)
        if key not in self._masks:
            if len(self._masks) >= MASK_CACHE:
                self._masks.clear()
            m = self._compute_mask(*key)
            if self.alive is not None:
                m = self.alive if m is None else (m & self.alive)
            self._masks[key] = m
        return self._masks[key]

    def _compute_mask(self, kind: str | None, folder: str | None, since: float | None,
                      until: float | None) -> np.ndarray | None:
        m = None
        if kind:
            m = self.kinds == kind
        with np.errstate(invalid="ignore"):  # NaN (unknown date) passes no date filter
            for ok in ((self.mtimes >= since) if since is not None else None,
                       (self.mtimes < until) if until is not None else None):
                if ok is not None:
                    m = ok if m is None else (m & ok)
        if folder:
            prefix = folder.rstrip(os.sep) + os.sep
            paths = self.rows["path"]
            inside = pc.or_(pc.starts_with(paths, prefix), pc.equal(paths, folder))
            f = inside.to_numpy(zero_copy_only=False).astype(bool)
            m = f if m is None else (m & f)
        return m

    def position(self, item_id: str) -> int | None:
        """The live position holding ``item_id``, or None when the index has none."""
        if self._positions is None:
            alive = self.live()
            self._positions = {i: p for p, i in enumerate(self.ids.tolist()) if alive[p]}
        return self._positions.get(item_id)

    def frames_near(self, item_id: str, seconds: float) -> list[tuple[str, float]]:
        """(id, timestamp) of the live frames of the same video as the frame ``item_id``
        within ``seconds`` of it (itself included), in time order; empty when the index
        does not hold that frame."""
        p = self.position(item_id)
        if p is None or self.kinds[p] != ItemKind.FRAME or np.isnan(self.timestamps[p]):
            return []
        t = float(self.timestamps[p])
        sel = (self.paths == self.paths[p]) & (self.kinds == ItemKind.FRAME)
        if self.alive is not None:
            sel &= self.alive
        sel &= np.abs(np.nan_to_num(self.timestamps, nan=np.inf) - t) <= seconds + 1e-6
        pos = np.flatnonzero(sel)
        pos = pos[np.argsort(self.timestamps[pos], kind="stable")]
        return [(str(self.ids[q]), float(self.timestamps[q])) for q in pos]
