"""Classify files by content (magic bytes), not by extension."""

from __future__ import annotations

import os

from loupe.indexer.kinds import MediaKind

IMAGE_EXTS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp",
    ".heic", ".heif", ".avif", ".ppm", ".pgm", ".pbm", ".ico", ".jp2", ".tga", ".psd",
}
VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".wmv", ".flv"}
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".aiff"}
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS | AUDIO_EXTS

HEAD_BYTES = 64


def sniff(head: bytes) -> str | None:
    """The media kind of a file from its first bytes, or None if it is not media we know.

    Returns "image", "video" or "audio". Ogg and Matroska/WebM containers are
    ambiguous from the header alone; Ogg is taken as audio, Matroska as video.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return MediaKind.IMAGE  # JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaKind.IMAGE
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return MediaKind.IMAGE
    if head[:2] == b"BM" and len(head) >= 14:
        return MediaKind.IMAGE
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return MediaKind.IMAGE  # TIFF / BigTIFF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return MediaKind.AUDIO
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaKind.VIDEO
    if head[:4] == b"\x00\x00\x01\x00":
        return MediaKind.IMAGE  # ICO
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return MediaKind.IMAGE  # PNM
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return MediaKind.IMAGE  # JPEG 2000
    if head[:4] == b"8BPS":
        return MediaKind.IMAGE  # PSD
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif",
                     b"avis"):
            return MediaKind.IMAGE
        if brand in (b"M4A ", b"M4B ", b"M4P ", b"F4A "):
            return MediaKind.AUDIO
        return MediaKind.VIDEO  # isom, mp41, mp42, qt, 3gp...
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MediaKind.VIDEO  # Matroska / WebM
    if head[:4] == b"OggS":
        return MediaKind.AUDIO
    if head[:4] == b"fLaC":
        return MediaKind.AUDIO
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return MediaKind.AUDIO  # MP3 / AAC ADTS
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
