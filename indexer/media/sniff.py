"""Classify files by content (magic bytes), not by extension."""

from __future__ import annotations

import os

from loupe.indexer.kinds import MediaKind

IMAGE_EXTS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
    ".heic", ".heif", ".hif", ".avif", ".ppm", ".pgm", ".pbm", ".ico", ".jp2", ".tga", ".psd",
    ".dds", ".qoi", ".sgi", ".pcx", ".icns", ".xpm", ".xbm", ".cur", ".pcd", ".ras",
} | {  # camera raws (decoded with rawpy, see media/raw.py)
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw",
}
VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".wmv", ".flv",
              ".mpg", ".mpeg"}
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".aiff"}
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS | AUDIO_EXTS

HEAD_BYTES = 64


def picture_format(head: bytes) -> str | None:
    """Pillow's name of the picture format a file's first bytes show ("JPEG", "PNG",
    "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "JPEG2000", "PSD", "HEIF", "AVIF"), or
    None when they do not show one of these (then, for the indexer, Pillow's own
    identification decides: see :func:`loupe.indexer.media.image.identify`).

    An MPO (a JPEG with more pictures) is "JPEG": Pillow's JPEG opener reads it.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"  # and BigTIFF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return "PPM"  # PBM, PGM, PPM
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG2000"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIF"
    return None


def raw_format(head: bytes) -> str | None:
    """The camera raw a file's first bytes show by themselves ("CR2", "CR3", "RAF",
    "ORF", "RW2"), or None. Raws that are plain TIFFs from the outside (DNG, NEF, ARW,
    PEF, SRW...) need their IFDs read: see :func:`loupe.indexer.media.raw.camera_raw`."""
    if head[:4] == b"II*\x00" and head[8:11] == b"CR\x02":
        return "CR2"
    if head[4:8] == b"ftyp" and head[8:12] == b"crx ":
        return "CR3"
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if head[:4] == b"IIU\x00":
        return "RW2"
    return None


# Pictures refused by name (never decoded): what the skipped table says about them.
GHOSTSCRIPT = "PostScript/EPS/PDF are not indexed: decoding them runs Ghostscript"
JPEG_XL = ("JPEG XL is not indexed: its Pillow plugin (pillow-jxl-plugin) decodes the "
           "whole picture before Loupe can check its size")


def refused_format(head: bytes) -> str | None:
    """Why a file whose first bytes show PostScript, EPS (also DOS EPS), PDF or JPEG XL
    (codestream or container) is not indexed, or None for any other content."""
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6", b"%PDF-")):
        return GHOSTSCRIPT
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return JPEG_XL
    return None


def _mpeg_audio(head: bytes) -> bool:
    """An MPEG audio frame header (MP3...) or an AAC ADTS header, with legal fields: a run
    of 0xFF bytes (a Kodak PhotoCD file starts with 2048 of them) is neither."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    if head[1] & 0x06 == 0:  # layer 0: ADTS; its sampling-rate index stops at 12
        return head[1] & 0xF0 == 0xF0 and (head[2] >> 2) & 0x0F <= 12
    version, bitrate, rate = (head[1] >> 3) & 3, head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and bitrate != 15 and rate != 3


def sniff(head: bytes) -> str | None:
    """The media kind of a file from its first bytes, or None if it is not media we know.

    Returns "image", "video" or "audio". Ogg and Matroska/WebM containers are
    ambiguous from the header alone; Ogg is taken as audio, Matroska as video. Pictures
    without magic bytes (Targa, PhotoCD...) are None here: the decode worker asks
    Pillow's own identification about those.
    """
    if picture_format(head) is not None or raw_format(head) is not None:
        return MediaKind.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return MediaKind.AUDIO
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaKind.VIDEO
    if head[4:8] == b"ftyp":
        if head[8:12] in (b"M4A ", b"M4B ", b"M4P ", b"F4A "):
            return MediaKind.AUDIO
        return MediaKind.VIDEO  # isom, mp41, mp42, qt, 3gp...
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MediaKind.VIDEO  # Matroska / WebM
    if head[:4] == b"OggS":
        return MediaKind.AUDIO
    if head[:4] == b"fLaC":
        return MediaKind.AUDIO
    if head[:3] == b"ID3" or _mpeg_audio(head):
        return MediaKind.AUDIO  # MP3 / AAC ADTS
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return MediaKind.VIDEO  # MPEG program stream / MPEG-1/2 video (PyAV reads them)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return MediaKind.AUDIO
    if head[:4] == b"\x30\x26\xb2\x75":
        return MediaKind.VIDEO  # ASF / WMV
    return None


def kind_from_extension(path: str) -> str | None:
    """The media kind an extension claims, or None."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTS:
        return MediaKind.IMAGE
    if ext in VIDEO_EXTS:
        return MediaKind.VIDEO
    if ext in AUDIO_EXTS:
        return MediaKind.AUDIO
    return None
