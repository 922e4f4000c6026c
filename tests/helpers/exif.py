"""Pictures and videos that say what the camera knew, written by the real tools: JPEGs
whose EXIF Pillow writes, MP4s whose tags PyAV's FFmpeg muxer writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL = 0x010F, 0x0110
TAKEN, OFFSET, SUBSEC = 0x9003, 0x9011, 0x9291
LENS_MAKE, LENS_MODEL = 0xA433, 0xA434


def dms(d: float, m: float, s: float | IFDRational) -> tuple:
    """An EXIF GPS (degrees, minutes, seconds) triple of rationals."""
    return (IFDRational(d), IFDRational(m), s if isinstance(s, IFDRational) else IFDRational(s))


def gps(lat: tuple, lat_ref: str, lon: tuple, lon_ref: str) -> dict:
    """A GPS IFD: (d, m, s) of latitude and longitude with their N/S, E/W references."""
    return {1: lat_ref, 2: dms(*lat), 3: lon_ref, 4: dms(*lon)}


def exif_jpeg(path: Path, color: tuple[int, int, int], ifd0: dict | None = None,
              exif: dict | None = None, gps_ifd: dict | None = None) -> Path:
    """A solid 64x48 JPEG of ``color`` whose EXIF (IFD0, Exif IFD, GPS IFD) Pillow writes."""
    ex = Image.Exif()
    ex.update(ifd0 or {})
    if exif:
        ex.get_ifd(EXIF_IFD).update(exif)
    if gps_ifd:
        ex.get_ifd(GPS_IFD).update(gps_ifd)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path, "JPEG", exif=ex, quality=95)
    return path


def tagged_video(path: Path, metadata: dict[str, str], color=(0, 0, 0), frames: int = 3,
                 rate: int = 10) -> Path:
    """A short MP4 (solid ``color`` frames) whose container tags FFmpeg writes
    (``creation_time`` goes to mvhd, ``location`` to QuickTime's ©xyz)."""
    import av

    with av.open(str(path), "w") as c:
        c.metadata.update(metadata)
        s = c.add_stream("mpeg4", rate=rate)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        pixels = np.full((48, 64, 3), color, np.uint8)
        for _ in range(frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        c.mux(s.encode(None))
    return path
