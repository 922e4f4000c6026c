"""Pictures in formats that Pillow reads but cannot write, built byte by byte after their
layouts (the simple ones: the readers in Pillow's plugins say what they take), and a
writer of small DNGs with the tags LibRaw reads. tests/test_formats.py indexes them.

Every picture is the same two halves (left ``LEFT``, right ``RIGHT``) unless its format
has no colour, so that a test can check what was decoded, not only that it was.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

W, H = 16, 12
LEFT, RIGHT = (200, 30, 30), (30, 30, 200)


def halves(left=LEFT, right=RIGHT, size: tuple[int, int] = (W, H), mode: str = "RGB"
           ) -> Image.Image:
    """The test picture: ``left`` on the left half, ``right`` on the right."""
    img = Image.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def _rgb_rows() -> bytes:
    return np.asarray(halves(), np.uint8).tobytes()


def _grey_rows(left: int, right: int) -> bytes:
    return np.asarray(halves(left, right, mode="L"), np.uint8).tobytes()


def fli() -> bytes:
    """Autodesk FLC: one frame, a 256-colour palette chunk and an uncompressed (COPY)
    chunk of palette indices (0 = LEFT, 1 = RIGHT)."""
    palette = bytes(LEFT) + bytes(RIGHT) + bytes(3 * 254)
    colours = struct.pack("<IHHBB", 6 + 4 + len(palette), 4, 1, 0, 0) + palette
    pixels = np.asarray(halves(0, 1, mode="L"), np.uint8).tobytes()
    copy = struct.pack("<IH", 6 + len(pixels), 16) + pixels
    frame = struct.pack("<IHH8x", 16 + len(colours) + len(copy), 0xF1FA, 2) + colours + copy
    header = struct.pack("<IHHHHHHI", 128 + len(frame), 0xAF12, 1, W, H, 8, 3, 5)
    return header.ljust(128, b"\0") + frame


def ftex() -> bytes:
    """Independence War 2 texture, uncompressed RGB, one mipmap."""
    data = _rgb_rows()
    return b"FTEX" + struct.pack("<i2i2i2ii", 1, W, H, 1, 1, 1, 32, len(data)) + data


def gbr() -> bytes:
    """GIMP brush, version 2, RGBA."""
    name = b"loupe\0"
    rgba = np.asarray(halves().convert("RGBA"), np.uint8).tobytes()
    return struct.pack(">5I", 28 + len(name), 2, W, H, 4) + b"GIMP" + struct.pack(
        ">I", 10) + name + rgba


def imt(left: int = 60, right: int = 200) -> bytes:
    """IM Tools: a text header, a form feed, then 8-bit grey rows."""
    return b"width %d\nheight %d\npixel n8\n\x0c" % (W, H) + _grey_rows(left, right)


def mcidas(left: int = 60, right: int = 200) -> bytes:
    """McIdas area file: 64 big-endian words (1-based: 2 = type 4, 9 = lines,
    10 = elements, 11 = bytes per element, 14 = bands, 34 = data offset), 8-bit grey."""
    words = [0] * 64
    words[1], words[8], words[9], words[10], words[13], words[33] = 4, H, W, 1, 1, 256
    return struct.pack(">64i", *words) + _grey_rows(left, right)


def pixar() -> bytes:
    """Pixar PXR: a 1024-byte header (height at 416, width at 418, RGB layout at 424)."""
    head = bytearray(1024)
    head[:4] = b"\x80\xe8\x00\x00"
    struct.pack_into("<HH", head, 416, H, W)
    struct.pack_into("<HH", head, 424, 14, 2)
    return bytes(head) + _rgb_rows()


XV_LEFT, XV_RIGHT = (182, 36, 0), (0, 36, 170)  # the 3-3-2 palette colours nearest ours


def xvthumb() -> bytes:
    """XV thumbnail: "P7 332", comments, the size, then 3-3-2 palette indices."""
    left, right = 5 * 32 + 1 * 4 + 0, 0 * 32 + 1 * 4 + 2
    pixels = np.asarray(halves(left, right, mode="L"), np.uint8).tobytes()
    return (b"P7 332\n#XVVERSION:Version 2.28\n#END_OF_COMMENTS\n%d %d 255\n" % (W, H)
            + pixels)


def xpm() -> bytes:
    """X pixmap (text): two colours, one character a pixel."""
    row = b'"' + b"r" * (W // 2) + b"b" * (W // 2) + b'",\n'
    return (b'/* XPM */\nstatic char *picture[] = {\n"%d %d 2 1",\n' % (W, H)
            + b'"r c #%02X%02X%02X",\n' % LEFT + b'"b c #%02X%02X%02X",\n' % RIGHT
            + row * H + b"};\n")


def cur() -> bytes:
    """A Windows cursor: Pillow writes the icon (a BMP inside), a cursor differs in its
    type field (2) and reads the same."""
    buf = io.BytesIO()
    halves(size=(16, 16)).save(buf, "ICO", sizes=[(16, 16)], bitmap_format="bmp")
    data = bytearray(buf.getvalue())
    data[2:4] = b"\x02\x00"
    return bytes(data)


def photocd() -> bytes:
    """A Kodak PhotoCD image pack as the discs hold them: 2048 bytes of 0xFF (which an
    MPEG audio sync check takes for MP3), "PCD_IPI" at 2048, the 768x512 base picture in
    PhotoYCC (per two rows: two rows of Y, then a row each of C1 and C2) at 96 * 2048.
    A grey of Y = 140 (C1, C2 at their neutral 156 and 137)."""
    head = bytearray(b"\xff" * 2048 + b"PCD_IPI").ljust(96 * 2048, b"\0")
    pair = bytes([140]) * (768 * 2) + bytes([156]) * 384 + bytes([137]) * 384
    return bytes(head) + pair * 256


def iptc() -> bytes:
    """An IPTC/NAA record holding a raw 8-bit grey picture (the news-wire format)."""
    def field(record: int, tag: int, value: bytes) -> bytes:
        return struct.pack(">BBBH", 0x1C, record, tag, len(value)) + value

    return (field(3, 60, b"\x01\x00") + field(3, 20, struct.pack(">H", W))
            + field(3, 30, struct.pack(">H", H)) + field(3, 120, b"\x01")
            + field(8, 10, _grey_rows(60, 200)))


def wmf() -> bytes:
    """The start of a placeable Windows metafile (Aldus header, then a WMF header)."""
    aldus = struct.pack("<IHhhhhHIH", 0x9AC6CDD7, 0, 0, 0, W * 10, H * 10, 1440, 0, 0)
    return aldus + struct.pack("<HHHIHIH", 1, 9, 0x300, 100, 0, 10, 0) + bytes(64)


# -- DNG ---------------------------------------------------------------------------------
_CODES = {1: "B", 3: "H", 4: "I"}


def _ifd(entries: list[tuple[int, int, tuple[int, ...] | bytes]], at: int) -> bytes:
    """A little-endian IFD at offset ``at``, its longer values right after it."""
    extra_at = at + 2 + 12 * len(entries) + 4
    head, extra = struct.pack("<H", len(entries)), b""
    for tag, typ, vals in sorted(entries):
        if typ == 2:
            raw, count = bytes(vals) + b"\0", len(vals) + 1
        else:
            raw, count = struct.pack("<" + _CODES[typ] * len(vals), *vals), len(vals)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", extra_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
        head += struct.pack("<HHI", tag, typ, count) + field
    return head + struct.pack("<I", 0) + extra


def mosaic(left=LEFT, right=RIGHT, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """An RGGB Bayer mosaic (16-bit) of the two halves picture."""
    rgb = np.asarray(halves(left, right, size), np.float64) / 255 * 65535
    cfa = np.zeros(rgb.shape[:2], np.uint16)
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[0::2, 1::2] = rgb[0::2, 1::2, 1]
    cfa[1::2, 0::2] = rgb[1::2, 0::2, 1]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return cfa


def dng(cfa: np.ndarray, preview: bytes | np.ndarray | None = None, orientation: int = 1,
        make: bytes = b"Loupe", dng_version: bool = True) -> bytes:
    """A DNG of a CFA mosaic (DNGVersion 1.4, PhotometricInterpretation CFA, an RGGB
    CFARepeatPatternDim/CFAPattern, 16 bits, uncompressed, WhiteLevel 65535).

    With ``preview`` (a JPEG's bytes, or an (H, W, 3) uint8 bitmap) IFD0 is the preview
    (NewSubFileType 1) and the raw lies in its SubIFD, as cameras and Adobe's converter
    write them; without, IFD0 is the raw. ``dng_version=False`` leaves DNGVersion out
    (a TIFF-based raw of another make, such as a NEF, is laid out the same way).
    """
    h, w = cfa.shape
    raw = cfa.astype("<u2").tobytes()
    camera = [(271, 2, make), (272, 2, b"Test"), (274, 3, (orientation,))]
    if dng_version:
        camera += [(50706, 1, (1, 4, 0, 0)), (50708, 2, b"Loupe Test")]

    def raw_ifd(offset: int) -> list:
        return [(254, 4, (0,)), (256, 4, (w,)), (257, 4, (h,)), (258, 3, (16,)),
                (259, 3, (1,)), (262, 3, (32803,)), (273, 4, (offset,)), (277, 3, (1,)),
                (278, 4, (h,)), (279, 4, (len(raw),)), (284, 3, (1,)),
                (33421, 3, (2, 2)), (33422, 1, (0, 1, 1, 2)), (50717, 4, (65535,))]

    if preview is None:
        size = len(_ifd(raw_ifd(0) + camera, 8))
        return b"II*\0" + struct.pack("<I", 8) + _ifd(raw_ifd(8 + size) + camera, 8) + raw
    if isinstance(preview, bytes):
        (pw, ph), data, compression, photometric = Image.open(io.BytesIO(preview)).size, \
            preview, 7, 6
    else:
        (ph, pw), data, compression, photometric = preview.shape[:2], \
            np.ascontiguousarray(preview, np.uint8).tobytes(), 1, 2

    def ifd0(sub: int, offset: int) -> list:
        return [(254, 4, (1,)), (256, 4, (pw,)), (257, 4, (ph,)), (258, 3, (8, 8, 8)),
                (259, 3, (compression,)), (262, 3, (photometric,)), (273, 4, (offset,)),
                (277, 3, (3,)), (278, 4, (ph,)), (279, 4, (len(data),)), (284, 3, (1,)),
                (330, 4, (sub,))] + camera

    sub = 8 + len(_ifd(ifd0(0, 0), 8))
    at = sub + len(_ifd(raw_ifd(0), sub))
    return (b"II*\0" + struct.pack("<I", 8) + _ifd(ifd0(sub, at), 8)
            + _ifd(raw_ifd(at + len(data)), sub) + data + raw)
