"""What each position of a FAISS index holds: the item's id, path, kind, times and what
the camera knew.

A :class:`RowCatalog` is aligned with its index by position (position = the order rows
were added). It answers the questions searches and features ask about those rows
without touching FAISS: which positions pass a filter (:meth:`RowCatalog.mask`, cached),
which are still alive, which frames of a video lie around a moment
(:meth:`RowCatalog.frames_near`), and what a hit's camera knew
(:meth:`RowCatalog.captures_at`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.kinds import ItemKind
from loupe.search.ann.capture_filter import (
    CaptureFilter,
    camera_text,
    distinct,
    local_clock,
    near_mask,
    points,
    taken_clock,
    text_mask,
    to_epoch,
    unit_vectors,
)
from loupe.search.store import CAPTURE_FIELDS
from loupe.search.store.tables import read_columns, sql_str

# What the camera knew, per position: what hits show and capture filters read
CATALOG_CAPTURE = ["taken_at", "taken_local", "lat", "lon", "alt", "camera_make",
                   "camera_model", "lens", "place"]
# The columns kept per position (saved beside the index as its ``.rows`` file)
ROW_COLUMNS = ["id", "path", "kind", "timestamp", "end", "mtime_ns", "indexed_at",
               *CATALOG_CAPTURE]
MASK_CACHE = 64  # filter masks kept per catalog (cleared when full)
_CAPTURE_TYPES = {f.name: f.type for f in CAPTURE_FIELDS}


def with_row_columns(table: pa.Table) -> pa.Table:
    """``table`` with every row column present (nulls where a column is missing: rows
    read before the store had it, or an older saved index)."""
    for name, typ in (("path", pa.string()), ("kind", pa.string()),
                      ("timestamp", pa.float64()), ("end", pa.float64()),
                      ("mtime_ns", pa.int64()), ("indexed_at", pa.float64()),
                      *((c, _CAPTURE_TYPES[c]) for c in CATALOG_CAPTURE)):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
    return table


def _ns_at_least(seconds: float) -> int:
    """The smallest integer ``t`` (nanoseconds) with ``t / 1e9 >= seconds`` as the catalog
    computes it (float division): ``mtime_ns >= t`` in SQL keeps what the mask keeps."""
    lo = math.floor(seconds * 1e9) - (1 << 20)
    hi = lo + (1 << 21)
    while lo / 1e9 >= seconds:
        lo -= 1 << 21
    while hi / 1e9 < seconds:
        hi += 1 << 21
    while hi - lo > 1:  # invariant: lo fails, hi passes
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mid / 1e9 >= seconds else (mid, hi)
    return hi


def filter_sql(kind: str | None, folder: str | None, since: float | None,
               until: float | None) -> str | None:
    """The SQL filter on the items table that keeps the rows :meth:`RowCatalog.mask`
    keeps for these filters (None: no filter), for a backend that filters in the table
    (LanceDB's prefilter). ``folder`` is absolute, as the mask's key has it."""
    parts = []
    if kind:
        parts.append(f"kind = {sql_str(kind)}")
    if since is not None:  # a null mtime (unknown) passes no date filter, as NaN does
        parts.append(f"mtime_ns >= {_ns_at_least(since)}")
    if until is not None:
        parts.append(f"mtime_ns < {_ns_at_least(until)}")
    if folder:
        prefix = folder.rstrip(os.sep) + os.sep
        parts.append(f"(starts_with(path, {sql_str(prefix)}) OR path = {sql_str(folder)})")
    return " AND ".join(parts) or None


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
        self._where: dict[int, tuple[np.ndarray, str]] = {}  # id(mask) -> (mask, its SQL)
        self._positions: dict[str, int] | None = None
        self._derived: dict[str, object] = {}  # arrays made on first use (capture filters)

    def __len__(self) -> int:
        return len(self.ids)

    def live(self) -> np.ndarray:
        """Whether each position is alive, as a boolean array (a copy)."""
        return np.ones(len(self), bool) if self.alive is None else self.alive.copy()

    def mask(self, kind: str | None = None, folder: str | None = None,
             since: float | None = None, until: float | None = None,
             capture: CaptureFilter | None = None) -> np.ndarray | None:
        """Boolean mask of live positions passing the filters (None when there are none
        and every position is alive).

        ``since`` / ``until``: the file's modification time (seconds since the epoch) is
        at or after ``since`` and before ``until``. ``capture``: what the camera knew
        (:class:`~loupe.search.ann.capture_filter.CaptureFilter`). Masks are cached (and
        each capture filter's parts on their own): the catalog belongs to one store
        version.
        """
        capture = capture if capture != CaptureFilter() else None
        key = (kind, os.path.abspath(folder) if folder else None, since, until, capture)
        if key not in self._masks:
            if len(self._masks) >= MASK_CACHE:
                self._masks.clear()
                self._where.clear()
            m = self._compute_mask(*key[:4])
            if capture is not None:
                c = self._capture_mask(capture)
                m = c if m is None else (m & c)
            if self.alive is not None:
                m = self.alive if m is None else (m & self.alive)
            self._masks[key] = m
            sql = filter_sql(*key[:4]) if capture is None else None
            if sql and m is not None and m is not self.alive:
                self._where[id(m)] = (m, sql)
        return self._masks[key]

    def where_of(self, mask: np.ndarray | None) -> str | None:
        """The SQL filter equivalent to ``mask`` when it is a mask this catalog made from
        kind / folder / dates (dead positions aside: the table no longer has their rows);
        None for any other (captures, tags, text shown, or combined by the caller)."""
        got = self._where.get(id(mask)) if mask is not None else None
        return got[1] if got is not None and got[0] is mask else None

    def _derive(self, name: str, make: Callable[[], object]):
        """An array made from the rows on first use, kept (the catalog does not change)."""
        if name not in self._derived:
            self._derived[name] = make()
        return self._derived[name]

    def taken_clock(self) -> np.ndarray:
        """Each position's capture time on the camera's wall clock (seconds; NaN: none),
        see loupe.search.ann.capture_filter."""
        return self._derive("taken", lambda: taken_clock(self.rows))  # type: ignore[return-value]

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 and float64 unit vectors of every position's point, made once (see
        capture_filter.near_mask)."""
        def make():
            lat, lon = points(self.rows)
            return unit_vectors(lat, lon), unit_vectors(lat, lon, np.float64)
        return self._derive("points", make)  # type: ignore[return-value]

    def _part(self, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        """One part of a capture mask, cached by its own key."""
        key = ("part", *key)
        if key not in self._masks:
            if len(self._masks) >= MASK_CACHE:
                self._masks.clear()
            self._masks[key] = make()
        return self._masks[key]  # type: ignore[return-value]

    def _capture_mask(self, f: CaptureFilter) -> np.ndarray:
        """The positions passing ``f``: its parts' cached masks, combined (never
        changed in place: they are shared)."""
        parts = []
        if f.dated:
            parts.append(self._part(("taken", f.taken_since, f.taken_until, f.or_modified),
                                    lambda: self._taken_mask(f)))
        if f.near is not None:
            parts.append(self._part(("near", *f.near, f.within_km), lambda: near_mask(
                *self._points(), f.near, f.within_km)))  # type: ignore[arg-type]
        if f.camera:
            parts.append(self._part(("camera", f.camera.casefold()), lambda: text_mask(
                self._derive("camera", lambda: distinct(camera_text(self.rows))),  # type: ignore[arg-type]
                f.camera)))
        if f.lens:
            parts.append(self._part(("lens", f.lens.casefold()), lambda: text_mask(
                self._derive("lens", lambda: distinct(self.rows["lens"])),  # type: ignore[arg-type]
                f.lens)))
        if not parts:  # only or_modified: it changes the date order, not what passes
            return np.ones(len(self), bool)
        return parts[0] if len(parts) == 1 else np.logical_and.reduce(parts)

    def _taken_mask(self, f: CaptureFilter) -> np.ndarray:
        taken = self.taken_clock()
        lo = -np.inf if f.taken_since is None else f.taken_since
        hi = np.inf if f.taken_until is None else f.taken_until
        with np.errstate(invalid="ignore"):  # NaN (no capture time) passes no date
            m = (taken >= lo) & (taken < hi)
            if f.or_modified:  # the others by their mtime, on this machine's clock
                lo_e = -np.inf if f.taken_since is None else to_epoch(f.taken_since)
                hi_e = np.inf if f.taken_until is None else to_epoch(f.taken_until)
                m |= np.isnan(taken) & (self.mtimes >= lo_e) & (self.mtimes < hi_e)
        return m

    def date_keys(self, positions: np.ndarray, or_modified: bool = False) -> np.ndarray:
        """The dates ``positions`` sort by (wall-clock seconds, NaN: no date): their
        capture time, else (``or_modified``) their file's mtime on this machine's clock."""
        keys = self.taken_clock()[positions]
        if or_modified:
            missing = np.isnan(keys)
            keys[missing] = local_clock(self.mtimes[positions][missing])
        return keys

    def captures_at(self, positions: list[int]) -> list[dict]:
        """What the camera knew of the items at ``positions``: {column: value} of
        :data:`CATALOG_CAPTURE` each (None where unknown)."""
        return self.rows.select(CATALOG_CAPTURE).take(pa.array(positions, pa.int64())
                                                      ).to_pylist()

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


def catalog_with_captures(cat: RowCatalog, store) -> RowCatalog:
    """``cat`` with its capture columns read again from the store's items (captures
    written into existing rows, whose vectors did not change), joined by id."""
    t = store.items(create=False)
    have = [c for c in CATALOG_CAPTURE if t is not None and c in t.schema.names]
    if not have:
        return cat
    got = read_columns(t, ["id", *have])
    at = pa.table({"id": cat.rows["id"], "_at": pa.array(np.arange(len(cat)), pa.int64())})
    joined = at.join(got, "id", join_type="left outer").sort_by("_at")
    rows = cat.rows
    for c in have:
        rows = rows.set_column(rows.schema.get_field_index(c), rows.schema.field(c),
                               joined[c].cast(rows.schema.field(c).type))
    return RowCatalog(rows.combine_chunks(), cat.alive)
