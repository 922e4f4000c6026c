"""Pictures and videos that show known text, drawn with Pillow's own scalable font
(``ImageFont.load_default(size)``, in every Pillow wheel), for the real OCR models."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from helpers.media import CORPUS


def draw_sign(image: Image.Image, text: str, xy: tuple[int, int] = (30, 40), size: int = 48,
              fill="white", stroke="black") -> tuple[int, int, int, int]:
    """Draw ``text`` on ``image`` (in place); its bounding box (left, top, right, bottom)."""
    d = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=size)
    d.text(xy, text, font=font, fill=fill, stroke_width=max(1, size // 16), stroke_fill=stroke)
    return d.textbbox(xy, text, font=font, stroke_width=max(1, size // 16))


def photo(name: str = "chelsea.png", size: tuple[int, int] | None = None) -> Image.Image:
    """A real corpus photo as RGB (resized to ``size``)."""
    im = Image.open(CORPUS / "photos" / name).convert("RGB")
    return im.resize(size) if size else im


def sign_photo(path: Path, text: str, base: str | tuple = "chelsea.png",
               size: tuple[int, int] = (480, 320), **kw) -> tuple[int, int, int, int]:
    """A photo (a corpus one, or a plain colour) showing ``text``, saved; the text's box."""
    im = Image.new("RGB", size, base) if isinstance(base, tuple) else photo(base, size)
    box = draw_sign(im, text, **kw)
    im.save(path)
    return box


def title_card_video(path: Path, shots: list[tuple[str | Image.Image, float]],
                     fps: int = 10, size: tuple[int, int] = (480, 320)) -> None:
    """An H.264 video of ``shots``: (a title card's text, or a picture, seconds) each."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for what, seconds in shots:
            if isinstance(what, str):
                im = Image.new("RGB", size, "black")
                draw_sign(im, what, (40, size[1] // 2 - 30), 56, "white", "black")
            else:
                im = what.resize(size)
            frame = av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")
            for _ in range(int(round(seconds * fps))):
                for p in s.encode(frame):
                    out.mux(p)
        for p in s.encode():
            out.mux(p)


def bounds(box: list[float] | tuple[float, ...]) -> tuple[float, float, float, float]:
    """An OCR line's four corners as (left, top, right, bottom)."""
    xs, ys = box[0::2], box[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
