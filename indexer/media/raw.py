"""Camera raw files through rawpy (LibRaw): CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2, PEF,
SRW, and other TIFF-based raws.

Told apart by content: CR3, RAF, ORF and RW2 by their first bytes, CR2 by the "CR" that
follows its TIFF header; DNG, NEF, ARW, PEF and SRW look like plain TIFFs from outside,
so their IFDs are read: a DNGVersion tag, or an IFD (the first, or one of its SubIFDs)
holding a sensor mosaic (PhotometricInterpretation CFA or LinearRaw), makes a raw. A
TIFF from a scanner, even one whose Make is NIKON, has neither.

A raw is decoded from its embedded preview (the camera's JPEG, or a bitmap) when that is
large enough for the model (no demosaic: fast), else by LibRaw's half-size demosaic with
the camera's white balance; :func:`read_raw` says which, for the file's record.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loupe.indexer.media.sniff import HEAD_BYTES, raw_format

if TYPE_CHECKING:
    from PIL import Image

_TIFF = (b"II*\x00", b"MM\x00*")
_DNG_VERSION, _SUB_IFDS, _PHOTOMETRIC, _MAKE = 0xC612, 0x014A, 0x0106, 0x010F
_MOSAIC = (32803, 34892)  # PhotometricInterpretation: CFA, LinearRaw
_MAKERS = {b"NIKON": "NEF", b"SONY": "ARW", b"PENTAX": "PEF", b"RICOH": "PEF",
           b"SAMSUNG": "SRW"}
# LibRaw's sizes.flip -> the EXIF orientation that says the same turn.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def camera_raw(data: bytes) -> str | None:
    """The kind of camera raw ``data`` is ("DNG", "NEF", "CR3"...; "RAW" for a TIFF-based
    raw of another make), or None when it is no raw (a plain TIFF, any other file)."""
    name = raw_format(data[:HEAD_BYTES])
    if name is not None or data[:4] not in _TIFF:
        return name
    try:
        return _tiff_raw(data, "<" if data[:2] == b"II" else ">")
    except (struct.error, ValueError):  # IFDs that point past the end: not a raw we read
        return None


def _ifd(data: bytes, e: str, offset: int) -> dict[int, tuple[int, int, bytes]]:
    """{tag: (type, count, 4-byte value field)} of the IFD at ``offset``."""
    (n,) = struct.unpack_from(e + "H", data, offset)
    if n > 4096:
        raise ValueError("not an IFD")
    out = {}
    for i in range(n):
        tag, typ, count, value = struct.unpack_from(e + "HHI4s", data, offset + 2 + 12 * i)
        out[tag] = (typ, count, value)
    return out


def _ints(data: bytes, e: str, entry: tuple[int, int, bytes] | None) -> list[int]:
    """The SHORT/LONG/IFD values of an entry (at most 16 of them)."""
    if entry is None or entry[0] not in (3, 4, 13) or not 0 < entry[1] <= 16:
        return []
    typ, count, value = entry
    code = "H" if typ == 3 else "I"
    size = struct.calcsize(code) * count
    buf = value if size <= 4 else data[struct.unpack(e + "I", value)[0]:][:size]
    return list(struct.unpack_from(e + code * count, buf))


def _tiff_raw(data: bytes, e: str) -> str | None:
    ifd0 = _ifd(data, e, struct.unpack_from(e + "I", data, 4)[0])
    if _DNG_VERSION in ifd0:
        return "DNG"
    photometrics = _ints(data, e, ifd0.get(_PHOTOMETRIC))
    for offset in _ints(data, e, ifd0.get(_SUB_IFDS)):
        photometrics += _ints(data, e, _ifd(data, e, offset).get(_PHOTOMETRIC))
    if not any(p in _MOSAIC for p in photometrics):
        return None
    make = b""
    if (entry := ifd0.get(_MAKE)) is not None and entry[0] == 2:
        typ, count, value = entry
        make = value if count <= 4 else data[struct.unpack(e + "I", value)[0]:][:count]
    return next((n for k, n in _MAKERS.items() if make.upper().startswith(k)), "RAW")


class RawError(Exception):
    """A raw LibRaw cannot decode, or one refused; the message is the reason recorded."""


class RawDecoderMissing(RawError):
    """rawpy is not installed."""


@dataclass
class RawPicture:
    """A camera raw read by LibRaw: the picture, or the embedded JPEG preview to decode."""

    width: int  # the upright size of the full picture (the sensor's output)
    height: int
    note: str  # "raw preview WxH" or "raw half-size demosaic"
    image: Image.Image | None = None  # upright RGB: a bitmap preview, or the demosaic
    jpeg: bytes | None = None  # else the preview JPEG, to decode and then turn by...
    turn: int = 1  # ...this EXIF orientation (1 when the JPEG's own EXIF turns it)


def read_raw(data: bytes, min_side: int, max_pixels: int) -> RawPicture:
    """Read a camera raw: its embedded preview (the camera's JPEG, or a bitmap) when that
    is at least ``min_side`` on its short side, else LibRaw's half-size demosaic with the
    camera's white balance, 8 bits. Orientation: LibRaw turns its demosaic itself (by the
    raw's orientation, ``sizes.flip``); a preview is turned by its own EXIF orientation
    when it has one, else by the raw's.

    Raises RawError (RawDecoderMissing without rawpy), refusing a raw of more than
    ``max_pixels`` before anything is demosaiced.
    """
    try:
        import rawpy
    except ImportError as e:
        raise RawDecoderMissing("camera RAW needs rawpy: pip install rawpy") from e
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            s = raw.sizes
            if s.raw_width * s.raw_height > max_pixels:
                raise RawError(
                    f"refused: {s.raw_width}x{s.raw_height} = {s.raw_width * s.raw_height:,} "
                    f"pixels is over the limit of {max_pixels:,} (a decompression bomb?)")
            w, h = (s.height, s.width) if s.flip & 4 else (s.width, s.height)
            turn = _FLIP_TO_ORIENTATION.get(s.flip, 1)
            picture = _preview(raw, turn, min_side, w, h)
            if picture is not None:
                return picture
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except RawError:
        raise
    except (rawpy.LibRawError, OSError, ValueError, MemoryError) as e:
        raise RawError(f"not a decodable camera raw: {e}") from e
    from PIL import Image

    return RawPicture(w, h, "raw half-size demosaic", image=Image.fromarray(rgb))


def _preview(raw, turn: int, min_side: int, w: int, h: int) -> RawPicture | None:
    """The embedded preview when it has a short side of ``min_side`` or more."""
    import rawpy
    from PIL import Image

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, OSError, ValueError):  # none, or one LibRaw cannot give
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            with Image.open(io.BytesIO(thumb.data), formats=["JPEG"]) as probe:
                (pw, ph), own = probe.size, probe.getexif().get(0x0112, 1)
        except (OSError, SyntaxError, ValueError):
            return None
        if own != 1:
            turn = own  # upright_image turns it by its own EXIF: nothing more to do
        if turn in (5, 6, 7, 8):
            pw, ph = ph, pw
        if min(pw, ph) < min_side:
            return None
        return RawPicture(w, h, f"raw preview {pw}x{ph}", jpeg=thumb.data,
                          turn=1 if own != 1 else turn)
    if thumb.format != rawpy.ThumbFormat.BITMAP or min(thumb.data.shape[:2]) < min_side:
        return None
    img = turn_upright(Image.fromarray(thumb.data), turn)
    return RawPicture(w, h, f"raw preview {img.width}x{img.height}", image=img)


def turn_upright(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` turned as EXIF ``orientation`` says (1: as it is)."""
    from PIL import Image

    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return img if method is None else img.transpose(method)
