"""Decode image bytes with Pillow into model input (uint8 RGB at the encoder's size).

Handles EXIF orientation, every Pillow mode (CMYK, 16-bit, palette, alpha...),
the first frame of animations and multipage TIFFs, JPEG draft-mode decode for files
much larger than the model input, and a pixel limit against decompression bombs.
Only the picture formats of an allow-list are ever opened, chosen by the content's
magic bytes or, where those say nothing (Targa, PhotoCD...), by Pillow's identification
restricted to that list; Ghostscript is never run. HEIC/HEIF through pillow-heif, camera
raws through rawpy (media/raw.py).
The resize/crop arithmetic matches torchvision's (which open_clip's preprocess uses),
so vectors equal open_clip's own ``preprocess`` + ``encode_image``.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import EpsImagePlugin, Image, ImageOps, UnidentifiedImageError

from loupe.indexer.encoders.spec import ImagePreprocess
from loupe.indexer.media.raw import (
    RawDecoderMissing,
    RawError,
    camera_raw,
    read_raw,
    turn_upright,
)
from loupe.indexer.media.sniff import GHOSTSCRIPT, HEAD_BYTES, picture_format, refused_format

DEFAULT_MAX_PIXELS = 200_000_000  # ~200 MP: large panoramas pass, bombs do not
QUERY_MAX_PIXELS = 50_000_000  # a query picture (an upload) is decoded at most this big
RAW_PREVIEW_FACTOR = 2.0  # a raw's preview is used when its short side is 2x the model's


def forbid_ghostscript() -> None:
    """Make Pillow unable to run Ghostscript in this process (it would render PostScript
    given by anyone): its EPS plugin then neither looks for ``gs`` nor runs it."""
    EpsImagePlugin.gs_binary = False


def _register_plugins() -> None:
    """Every Pillow opener, and pillow-heif's HEIF one when it is installed."""
    Image.init()
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()


forbid_ghostscript()  # on import: everything that decodes pictures imports this module
_register_plugins()

# Pillow's registered openers that the indexer never uses, and why. Every other one is
# used: a new Pillow's new opener is taken (tests/test_formats.py then asks for a sample).
NOT_INDEXED = {
    "EPS": GHOSTSCRIPT,
    "WMF": "WMF/EMF are not indexed: Pillow draws them only through Windows GDI",
    "MPEG": "MPEG is a video (indexed as one): Pillow reads only its header",
    "IPTC": ("IPTC/NAA records are not indexed: Pillow opens the picture inside one with "
             "every decoder it has, past Loupe's list"),
    **dict.fromkeys(("BUFR", "GRIB", "HDF5"), (
        "BUFR/GRIB/HDF5 are not indexed: science data that Pillow only names (reading "
        "it needs a handler Loupe does not install)")),
}
# Pillow format names a query picture may be (an upload: a short list, checked by magic
# bytes), and those an indexed file may be: every registered opener but NOT_INDEXED,
# HEIF even without pillow-heif (to say it is missing) and "RAW" (media/raw.py).
# MPO: JPEG's opener reads it.
QUERY_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP"})
INDEX_FORMATS = frozenset(Image.OPEN).union({"MPO", "HEIF", "RAW"}) - set(NOT_INDEXED)
_OPENERS = {"HEIF": ("HEIF", "AVIF"), "AVIF": ("AVIF", "HEIF")}  # either plugin may read it
_MISSING = {  # why a picture whose opener is not installed is not indexed
    "HEIF": "HEIC/HEIF needs pillow-heif: pip install pillow-heif",
}
# What the fast magic-byte check names (picture_format): never asked of Pillow again.
_BY_MAGIC = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM",
                       "JPEG2000", "PSD", "HEIF", "AVIF"})

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageDecodeError(Exception):
    """A file that is not a decodable image; the message is the reason recorded."""


class MissingDecoder(ImageDecodeError):
    """A picture Loupe reads with a package that is not installed, or one it refuses by
    name (PostScript): not a damaged file."""


@dataclass
class DecodedImage:
    """A decoded image ready for the encoder, plus facts about the original."""

    pixels: np.ndarray  # (H, W, 3) uint8 at the model input size
    width: int  # of the original image, after EXIF orientation
    height: int
    decoded_from: str | None = None  # a camera raw's: "raw preview WxH" or "... demosaic"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Alpha is composited on white (transparent logos look as people see them);
    16/32-bit and float greyscale are rescaled to 0..255 rather than clipped.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16"):
        # Integers, not floats: (x + 128) // 257 is round(x / 257) (no ties), at 6 bytes
        # a pixel instead of float64's 30 or so.
        wide = np.asarray(img).astype(np.uint32)
        wide += 128
        wide //= 257
        return Image.fromarray(wide.astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if hi <= 255 and lo >= 0:
            pass
        elif hi <= 65535 and lo >= 0:
            arr = arr / 257.0
        else:
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _resized_size(width: int, height: int, pre: ImagePreprocess) -> tuple[int, int]:
    """Output (w, h) of the resize step, with torchvision's rounding."""
    th, tw = pre.size
    if pre.resize_mode == "squash":
        return tw, th
    if pre.resize_mode == "longest":
        scale = min(th / height, tw / width)
        return max(1, round(width * scale)), max(1, round(height * scale))
    if th != tw:  # shortest edge to the matching target dim (open_clip's ResizeKeepRatio)
        scale = max(th / height, tw / width)
        return max(1, round(width * scale)), max(1, round(height * scale))
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = th, int(th * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _centre_crop_or_pad(img: Image.Image, th: int, tw: int, fill: int) -> Image.Image:
    w, h = img.size
    if w < tw or h < th:
        canvas = Image.new("RGB", (max(w, tw), max(h, th)), (fill, fill, fill))
        canvas.paste(img, ((max(w, tw) - w) // 2, (max(h, th) - h) // 2))
        img, (w, h) = canvas, canvas.size
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def to_model_input(img: Image.Image, pre: ImagePreprocess) -> np.ndarray:
    """Resize + crop an image to the encoder's input: (H, W, 3) uint8 RGB."""
    img = to_rgb(img)
    th, tw = pre.size
    new_w, new_h = _resized_size(img.width, img.height, pre)
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), _RESAMPLE.get(pre.interpolation, Image.BICUBIC))
    if img.size != (tw, th):
        img = _centre_crop_or_pad(img, th, tw, pre.fill_color)
    return np.array(img, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)


def _draft_target(pre: ImagePreprocess, draft_factor: float) -> tuple[int, int]:
    th, tw = pre.size
    side = int(max(th, tw) * draft_factor)
    return side, side


_lifting = threading.Lock()
_lifted = [0, Image.MAX_IMAGE_PIXELS]  # (decodes under way, Pillow's limit to restore)


@contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Pillow's own pixel limit off (ours is checked instead), restored by the last of
    the threads decoding at once (the UI decodes uploads in parallel)."""
    with _lifting:
        if _lifted[0] == 0:
            _lifted[1] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _lifted[0] += 1
    try:
        yield
    finally:
        with _lifting:
            _lifted[0] -= 1
            if _lifted[0] == 0:
                Image.MAX_IMAGE_PIXELS = _lifted[1]


def _openers(data: bytes, formats: frozenset[str]) -> list[str]:
    """The Pillow openers allowed to read ``data``: those of the format its magic bytes
    show, when ``formats`` allows it; when they show none, every opener of ``formats``
    that has no magic bytes of ours (Targa, PhotoCD...), for Pillow's identification.
    ImageDecodeError (MissingDecoder for a refused or missing format) otherwise."""
    head = data[:HEAD_BYTES]
    fmt = picture_format(head)
    if fmt is None and (why := refused_format(head)) is not None:
        raise MissingDecoder(f"not a picture Loupe reads here: {why}")
    if fmt is None:
        fallback = [f for f in Image.ID if f in formats and f not in _BY_MAGIC]
        if fallback:
            return fallback
    if fmt is None or fmt not in formats:
        takes = ", ".join(sorted(formats & _BY_MAGIC - {"MPO"}))
        seen = f"{fmt} content" if fmt else "its content is not a picture format"
        raise ImageDecodeError(f"not a picture Loupe reads here: {seen} (takes {takes})")
    openers = [f for f in _OPENERS.get(fmt, (fmt,)) if f in formats and f in Image.OPEN]
    if fmt == "HEIF" and "HEIF" not in openers and head[8:12] not in (b"mif1", b"msf1"):
        openers = []  # HEVC (heic, heix...): only pillow-heif decodes it, not Pillow's AVIF
    if not openers:
        raise MissingDecoder(_MISSING.get(fmt, f"no decoder for {fmt} pictures is installed"))
    return openers


def identify(src: str | BinaryIO, formats: frozenset[str] = INDEX_FORMATS) -> str | None:
    """Pillow's name of the picture format of a file (a path, or a binary file object
    read from its start) whose magic bytes did not decide (``sniff`` said None):
    Pillow's own identification, by the openers of ``formats`` only, reading no more than
    their headers; None when none of them takes it. (Given a path, Pillow opens its own
    handle: some openers close the one they are given.)
    """
    openers = [f for f in Image.ID if f in formats and f not in _BY_MAGIC]
    try:
        with _pillow_limit_lifted(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not identify because..." notes
            with Image.open(src, formats=openers) as img:
                return img.format
    except Exception:  # noqa: BLE001 - not identified, whatever the plugin raised
        return None


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               formats: frozenset[str] = INDEX_FORMATS) -> Image.Image:
    """Open image bytes lazily (header only), refusing anything above ``max_pixels``
    before a pixel is decoded, and anything whose magic bytes are not one of
    ``formats`` (Pillow format names: :data:`INDEX_FORMATS`, :data:`QUERY_FORMATS`).

    ``max_pixels`` is the only limit: Pillow's own (about 89 MP, which would refuse
    legal panoramas below our default) is lifted while the header is read.
    """
    openers = _openers(data, formats)
    try:
        with _pillow_limit_lifted(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not identify because..." notes
            img = Image.open(io.BytesIO(data), formats=openers)
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"refused: {e}") from e
    except UnidentifiedImageError as e:  # its message is only "<_io.BytesIO object at 0x..>"
        raise ImageDecodeError(
            "not a decodable image: no decoder recognises it (damaged or cut short?)") from e
    except Exception as e:  # OSError, SyntaxError from plugins...
        raise ImageDecodeError(f"not a decodable image: {e}") from e
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"image has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"refused: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb?)"
        )
    return img


def upright_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                  draft: tuple[int, int] | None = None,
                  formats: frozenset[str] = INDEX_FORMATS) -> tuple[Image.Image, int, int]:
    """Decode image bytes as people see them: first frame/page, EXIF orientation applied.

    Returns ``(image, width, height)``: the image in its file's mode (see :func:`to_rgb`),
    and the upright size of the *full* picture (the image itself is smaller when
    ``draft`` let libjpeg decode a JPEG at reduced scale, no smaller than ``draft``, or
    when a camera raw's preview or half-size demosaic stood for it: see
    :func:`upright_picture`). ``formats``: as :func:`open_image`. Raises
    :class:`ImageDecodeError` with a one-line reason.
    """
    img, w, h, _ = upright_picture(data, max_pixels, draft, formats)
    return img, w, h


def upright_picture(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                    draft: tuple[int, int] | None = None,
                    formats: frozenset[str] = INDEX_FORMATS,
                    raw_side: int | None = None) -> tuple[Image.Image, int, int, str | None]:
    """:func:`upright_image`, and how a camera raw was decoded (None for other files).

    A raw (when ``formats`` holds "RAW") is decoded from its embedded preview when that
    is at least ``raw_side`` on its short side (default: ``draft``'s side, else 1024),
    else by a half-size demosaic (:func:`loupe.indexer.media.raw.read_raw`).
    """
    raw = camera_raw(data)
    if raw is not None:
        if "RAW" not in formats:
            takes = ", ".join(sorted(formats & _BY_MAGIC - {"MPO"}))
            raise ImageDecodeError(
                f"not a picture Loupe reads here: {raw} camera raw content (takes {takes})")
        side = raw_side if raw_side is not None else max(draft) if draft else 1024
        return _raw_picture(data, side, max_pixels)
    try:
        img = open_image(data, max_pixels, formats)
    except ImageDecodeError as e:
        if (picture_format(data[:HEAD_BYTES]) == "TIFF" and "TIFF" in formats
                and "refused" not in str(e)):
            img = _tiff_fallback(data, max_pixels)  # float / planar TIFFs Pillow cannot read
        else:
            raise
    # Pillow's own limit would warn/raise on load; ours was already applied above.
    try:
        with _pillow_limit_lifted():
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            w, h = img.size
            if orientation in (5, 6, 7, 8):
                w, h = h, w
            if draft and img.format == "JPEG":
                # draft() wants the size in the file's own orientation; a square target
                # makes that moot.
                img.draft("RGB" if img.mode != "CMYK" else img.mode, draft)
            # No seek: Pillow opens every file at its first picture (a PSD at its
            # composite, which is not a frame that seek(0) could reach).
            img.load()
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, struct_error()) as e:
        raise ImageDecodeError(f"corrupt or truncated image: {e}") from e
    except Exception as e:  # a plugin bug must not stop a run
        raise ImageDecodeError(f"decoder failed: {type(e).__name__}: {e}") from e
    return img, w, h, None


def _raw_picture(data: bytes, side: int, max_pixels: int
                 ) -> tuple[Image.Image, int, int, str | None]:
    """:func:`upright_picture` of a camera raw."""
    try:
        raw = read_raw(data, side, max_pixels)
    except RawDecoderMissing as e:
        raise MissingDecoder(str(e)) from e
    except RawError as e:
        raise ImageDecodeError(str(e)) from e
    if raw.image is not None:
        return raw.image, raw.width, raw.height, raw.note
    assert raw.jpeg is not None
    # decoded at a reduced scale when much larger than needed, as photos are
    img, _, _ = upright_image(raw.jpeg, max_pixels, (side, side), frozenset({"JPEG"}))
    return turn_upright(img, raw.turn), raw.width, raw.height, raw.note


def upright_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                       formats: frozenset[str] = INDEX_FORMATS) -> Image.Image:
    """A file's picture as full-size upright RGB (for grounding, drawing, thumbnails);
    ``max_pixels`` and ``formats`` as :func:`open_image`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from e
    img, _, _ = upright_image(data, max_pixels, formats=formats)
    return to_rgb(img)


def decode_image(
    data: bytes,
    pre: ImagePreprocess,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_factor: float | None = 2.0,
    formats: frozenset[str] = INDEX_FORMATS,
) -> DecodedImage:
    """Decode image bytes into the encoder's input.

    ``draft_factor``: for JPEGs, let libjpeg decode at a reduced scale as long as the
    result stays at least ``draft_factor`` times the model input (2.0 keeps vectors
    within cos 0.999 of a full decode; 1.0 is fastest; None disables draft mode).
    ``max_pixels`` and ``formats``: as :func:`open_image`.
    """
    draft = _draft_target(pre, draft_factor) if draft_factor else None
    if camera_raw(data) is None:
        img, w, h = upright_image(data, max_pixels, draft, formats)
        decoded_from = None
    else:
        raw_side = _draft_target(pre, RAW_PREVIEW_FACTOR)[0]
        img, w, h, decoded_from = upright_picture(data, max_pixels, draft, formats, raw_side)
    try:
        pixels = to_model_input(img, pre)
    except (OSError, ValueError, MemoryError) as e:
        raise ImageDecodeError(f"corrupt or truncated image: {e}") from e
    except Exception as e:  # a plugin bug must not stop a run
        raise ImageDecodeError(f"decoder failed: {type(e).__name__}: {e}") from e
    return DecodedImage(pixels=pixels, width=w, height=h, decoded_from=decoded_from)


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale any numeric array to 0..255 uint8 (floats in [0, 1] and 16-bit by range)."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(a)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    elif arr.dtype.itemsize >= 2:
        a = a / (np.iinfo(arr.dtype).max / 255.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _tiff_fallback(data: bytes, max_pixels: int) -> Image.Image:
    """First page of a TIFF that Pillow cannot read (float samples, planar layouts...)."""
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            axes = page.axes
            shape = dict(zip(axes, page.shape, strict=True))
            w, h = shape.get("X", 0), shape.get("Y", 0)
            if w * h > max_pixels:
                raise ImageDecodeError(
                    f"refused: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,}")
            arr = page.asarray()
    except ImageDecodeError:
        raise
    except Exception as e:
        raise ImageDecodeError(f"not a decodable TIFF: {type(e).__name__}: {e}") from e
    if "S" in axes and axes.index("S") != len(axes) - 1:
        arr = np.moveaxis(arr, axes.index("S"), -1)
    arr = np.squeeze(_array_to_uint8(arr))
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ImageDecodeError(f"TIFF page has an unsupported shape {page.shape} ({axes})")
    return Image.fromarray(arr)


def struct_error() -> type[Exception]:
    """struct.error, raised by some Pillow plugins on truncated headers."""
    import struct

    return struct.error


def decode_image_file(path: str, pre: ImagePreprocess, **kwargs) -> DecodedImage:
    """:func:`decode_image` on a file path."""
    with open(path, "rb") as f:
        return decode_image(f.read(), pre, **kwargs)
