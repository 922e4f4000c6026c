"""Filters on what the camera knew (when, where, with what), as masks over the positions
of an index (its :class:`~loupe.search.ann.catalog.RowCatalog` computes and caches them).

**When.** A picture's date is the camera's own wall clock (``taken_local``, what its
EXIF says, in the zone it was taken in), else, for a file that gives only a UTC time (a
video's container), that time in UTC. Dates to filter by are calendar times on the same
clock: "taken since 2021-06-01" keeps a photo whose camera said 1 June 2021 at 00:30,
in Tokyo as in Lisbon; no zone is guessed. (Sorting by date uses the same clock, so two
pictures taken in different zones may sort a few hours apart from their true order.)
Only with ``or_modified`` does a file without a capture time fall back to its
modification time, read on this machine's clock.

**Where.** Within ``within_km`` of a point, on the globe (great circle): a unit vector
per position (float32, made once per index version) against the point's; the few
positions near the threshold are then measured exactly.

**With what.** ``camera``: a case-insensitive substring of "make model" ("canon",
"EOS R5", "nikon d850"); ``lens``: a case-insensitive substring of the lens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.errors import LoupeError

EARTH_KM = 6371.0088  # mean radius
DEFAULT_WITHIN_KM = 25.0
# float32 unit vectors' dot products are good to under 5e-7: positions this close to
# the threshold are measured again, in float64 (for a 25 km radius: 23 to 27 km away)
_DOT_SLACK = 1e-6


def wall_seconds(value: date | datetime | str) -> float:
    """A calendar time as wall-clock seconds: seconds since 1970-01-01T00:00 on the same
    clock (a zone it carries is dropped, not converted). A string is ISO 8601
    ("2021-06-01", "2021-06-01T14:03")."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as e:
            raise ValueError(f"not a date: {value!r} (write it as 2021-06-01 or "
                             "2021-06-01T14:03)") from e
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC).timestamp()


def day_range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """Local calendar days (YYYY-MM-DD, both included) as [since, until) epoch seconds:
    the ``--since`` / ``--until`` filters on a file's modification time (``loupe search``
    and the JSON API read them with this, so both say the same about a bad day)."""
    def day(text: str, flag: str) -> datetime:
        try:
            return datetime.strptime(text, "%Y-%m-%d")
        except (TypeError, ValueError) as e:
            raise LoupeError(f"{flag} wants a day like 2024-06-30, not {text!r}") from e

    lo = day(since, "--since").timestamp() if since else None
    hi = (day(until, "--until") + timedelta(days=1)).timestamp() if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise LoupeError("--since is after --until")
    return lo, hi


def _day_end(value: date | datetime | str) -> float:
    """The wall-clock end (exclusive) of ``value``: a day given without a time counts
    whole."""
    if isinstance(value, str) and len(value.strip()) <= 10:
        value = datetime.fromisoformat(value.strip()).date()
    if isinstance(value, date) and not isinstance(value, datetime):
        return wall_seconds(value) + 86400.0
    return wall_seconds(value)


@dataclass(frozen=True)
class CaptureFilter:
    """What a search keeps, by what the camera knew (see the module docstring); every
    field None (or False) keeps everything. Times are wall-clock seconds
    (:func:`wall_seconds`); build one from dates and place names with :meth:`of`."""

    taken_since: float | None = None  # taken at or after (wall clock)
    taken_until: float | None = None  # taken before (wall clock)
    or_modified: bool = False  # no capture time: the file's mtime instead
    near: tuple[float, float] | None = None  # (lat, lon) in degrees
    within_km: float = DEFAULT_WITHIN_KM
    camera: str | None = None  # substring of "make model", any case
    lens: str | None = None  # substring of the lens, any case

    @classmethod
    def of(cls, taken_since: date | datetime | str | None = None,
           taken_until: date | datetime | str | None = None, or_modified: bool = False,
           near: str | tuple[float, float] | None = None,
           within_km: float = DEFAULT_WITHIN_KM, camera: str | None = None,
           lens: str | None = None) -> CaptureFilter:
        """A filter from calendar times (``taken_until`` a day without a time: that
        whole day included) and a place: a town's name ("Lisbon", "Paris, Texas":
        :func:`loupe.indexer.media.places.find_place`), "LAT,LON", or (lat, lon).
        Raises ValueError (LoupeError for an unknown town) on what it cannot read."""
        point = near_point(near) if near is not None else None
        if not within_km > 0:
            raise ValueError("the radius must be a positive number of km")
        lo = wall_seconds(taken_since) if taken_since is not None else None
        hi = _day_end(taken_until) if taken_until is not None else None
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError("the first date is after the last")
        return cls(lo, hi, or_modified, point, float(within_km), camera or None,
                   lens or None)

    @property
    def dated(self) -> bool:
        """Whether it filters by date."""
        return self.taken_since is not None or self.taken_until is not None


def near_point(near: str | tuple[float, float]) -> tuple[float, float]:
    """(lat, lon) of "LAT,LON", of (lat, lon), or of a town's name."""
    if isinstance(near, str):
        parts = near.split(",")
        try:
            lat, lon = (float(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lat = lon = None
        if lat is None or lon is None:
            from loupe.indexer.media.places import find_place

            place = find_place(near)
            return place.lat, place.lon
        near = (lat, lon)
    lat, lon = float(near[0]), float(near[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"not a point on Earth: {lat}, {lon}")
    return lat, lon


# -- the arrays the masks are made of (one per index version) ---------------------------
def taken_clock(rows: pa.Table) -> np.ndarray:
    """Each row's capture time on the wall clock (see the module docstring), NaN when
    unknown: ``taken_local`` read as such, else ``taken_at``."""
    local = rows["taken_local"].combine_chunks()
    try:  # ISO strings, sub-seconds cut to microseconds
        stamps = pc.cast(pc.utf8_slice_codeunits(local, 0, 26), pa.timestamp("us"))
        wall = pc.divide(pc.cast(pc.cast(stamps, pa.int64()), pa.float64()), 1e6)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a string Arrow cannot read
        wall = pa.array([_iso_wall(v) for v in local.to_pylist()], pa.float64())
    at = rows["taken_at"].combine_chunks().cast(pa.float64())
    both = pc.coalesce(wall, at)
    return both.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _iso_wall(text: str | None) -> float | None:
    try:
        return wall_seconds(text) if text else None
    except ValueError:
        return None


def local_clock(mtimes: np.ndarray) -> np.ndarray:
    """Modification times (epoch seconds, NaN unknown) as this machine's wall clock."""
    out = np.full(len(mtimes), np.nan)
    for i, t in enumerate(mtimes):
        if not np.isnan(t):
            out[i] = t + datetime.fromtimestamp(t).astimezone().utcoffset().total_seconds()
    return out


def to_epoch(wall: float) -> float:
    """A wall-clock time on this machine's clock as epoch seconds (for mtimes)."""
    return (datetime(1970, 1, 1) + timedelta(seconds=wall)).timestamp()  # naive: local


def points(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of the rows as float64 arrays in degrees, NaN without a point."""
    return tuple(rows[c].to_numpy(zero_copy_only=False).astype(np.float64)  # type: ignore[return-value]
                 for c in ("lat", "lon"))


def unit_vectors(lat: np.ndarray, lon: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(3, n) unit vectors of n points (degrees), NaN without a point; laid out by
    coordinate, so that a dot product with all of them runs over three contiguous
    arrays (an (n, 3) array's is ten times slower)."""
    la, lo = np.radians(lat.astype(dtype)), np.radians(lon.astype(dtype))
    out = np.empty((3, len(la)), dtype)
    cos_lat = np.cos(la)
    np.multiply(cos_lat, np.cos(lo), out=out[0])
    np.multiply(cos_lat, np.sin(lo), out=out[1])
    np.sin(la, out=out[2])
    return out


def _unit(point: tuple[float, float]) -> np.ndarray:
    return unit_vectors(np.array([point[0]]), np.array([point[1]]), np.float64)[:, 0]


def great_circle_km(lat: np.ndarray, lon: np.ndarray, point: tuple[float, float]
                    ) -> np.ndarray:
    """Haversine distances (km) from ``point`` to each (lat, lon), in float64."""
    la, lo = np.radians(lat), np.radians(lon)
    pla, plo = math.radians(point[0]), math.radians(point[1])
    h = (np.sin((la - pla) / 2) ** 2
         + math.cos(pla) * np.cos(la) * np.sin((lo - plo) / 2) ** 2)
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def near_mask(units: np.ndarray, exact: np.ndarray, point: tuple[float, float],
              km: float) -> np.ndarray:
    """Whether each point lies within ``km`` of ``point`` on the globe (the angle
    between them at most km / Earth's radius). ``units``: the points' float32
    :func:`unit_vectors`, whose dot product decides all but those in a thin ring about
    the radius; ``exact``: their float64 ones, which decide the ring."""
    q = _unit(point)
    cos_r = math.cos(min(km / EARTH_KM, math.pi))
    with np.errstate(invalid="ignore"):  # NaN (no point) is never near
        # by hand, not BLAS: its threads make a 1M-point product take 0.3 to 6 ms
        dots = units[0] * np.float32(q[0])
        dots += units[1] * np.float32(q[1])
        dots += units[2] * np.float32(q[2])
        inside = dots >= cos_r + _DOT_SLACK
        ring = np.flatnonzero(dots >= cos_r - _DOT_SLACK)
    ring = ring[~inside[ring]]
    if len(ring):
        inside[ring] = q @ exact[:, ring] >= cos_r
    return inside


def distinct(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(the distinct values, each row's index into them, -1 for null): an archive holds
    a few hundred cameras and lenses, so a filter looks at those, not at every row."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    enc = pc.dictionary_encode(column)
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return enc.dictionary, codes


def text_mask(values: tuple[pa.Array, np.ndarray], text: str) -> np.ndarray:
    """Whether each row's value (:func:`distinct`) holds ``text`` (any case); a null
    does not."""
    dictionary, codes = values
    hit = pc.match_substring(dictionary, text, ignore_case=True)
    ok = np.append(hit.fill_null(False).to_numpy(zero_copy_only=False).astype(bool), False)
    return ok[codes]  # -1 (null) takes the appended False


def camera_text(rows: pa.Table) -> pa.ChunkedArray:
    """ "make model" per row (null when both are)."""
    make, model = rows["camera_make"], rows["camera_model"]
    joined = pc.binary_join_element_wise(make.fill_null(""), model.fill_null(""), " ")
    return pc.if_else(pc.and_(make.is_null(), model.is_null()),
                      pa.scalar(None, pa.string()), pc.utf8_trim_whitespace(joined))
