"""Decode image bytes with Pillow into model input (uint8 RGB at the encoder's size).

Handles EXIF orientation, every Pillow mode (CMYK, 16-bit, palette, alpha...),
the first frame of animations and multipage TIFFs, JPEG draft-mode decode for files
much larger than the model input, and a pixel limit against decompression bombs.
The resize/crop arithmetic matches torchvision's (which open_clip's preprocess uses),
so vectors equal open_clip's own ``preprocess`` + ``encode_image``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from loupe.indexer.encoders.spec import ImagePreprocess

DEFAULT_MAX_PIXELS = 200_000_000  # ~200 MP: large panoramas pass, bombs do not

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageDecodeError(Exception):
    """A file that is not a decodable image; the message is the reason recorded."""


@dataclass
class DecodedImage:
    """A decoded image ready for the encoder, plus facts about the original."""

    pixels: np.ndarray  # (H, W, 3) uint8 at the model input size
    width: int  # of the original image, after EXIF orientation
    height: int


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Alpha is composited on white (transparent logos look as people see them);
    16/32-bit and float greyscale are rescaled to 0..255 rather than clipped.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
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


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes lazily (header only), refusing anything above ``max_pixels``.

    ``max_pixels`` is the only limit: Pillow's own (about 89 MP, which would refuse
    legal panoramas below our default) is lifted while the header is read.
    """
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"refused: {e}") from e
    except Image.DecompressionBombWarning as e:
        raise ImageDecodeError(f"refused: {e}") from e
    except UnidentifiedImageError as e:  # its message is only "<_io.BytesIO object at 0x..>"
        raise ImageDecodeError(
            "not a decodable image: no decoder recognises it (damaged or cut short?)") from e
    except Exception as e:  # OSError, SyntaxError from plugins...
        raise ImageDecodeError(f"not a decodable image: {e}") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"image has an empty size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(
            f"refused: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb, or raise --max-pixels)"
        )
    return img


def upright_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                  draft: tuple[int, int] | None = None) -> tuple[Image.Image, int, int]:
    """Decode image bytes as people see them: first frame/page, EXIF orientation applied.

    Returns ``(image, width, height)``: the image in its file's mode (see :func:`to_rgb`),
    and the upright size of the *full* picture (the image itself is smaller when
    ``draft`` let libjpeg decode a JPEG at reduced scale, no smaller than ``draft``).
    Raises :class:`ImageDecodeError` with a one-line reason.
    """
    try:
        img = open_image(data, max_pixels)
    except ImageDecodeError as e:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and "refused" not in str(e):
            img = _tiff_fallback(data, max_pixels)  # float / planar TIFFs Pillow cannot read
        else:
            raise
    # Pillow's own limit would warn/raise on load; ours was already applied above.
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
        w, h = img.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        if draft and img.format == "JPEG":
            # draft() wants the size in the file's own orientation; a square target
            # makes that moot.
            img.draft("RGB" if img.mode != "CMYK" else img.mode, draft)
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img) if orientation != 1 else img
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, struct_error()) as e:
        raise ImageDecodeError(f"corrupt or truncated image: {e}") from e
    except Exception as e:  # a plugin bug must not stop a run
        raise ImageDecodeError(f"decoder failed: {type(e).__name__}: {e}") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    return img, w, h


def upright_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A file's picture as full-size upright RGB (for grounding, drawing, thumbnails)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from e
    img, _, _ = upright_image(data, max_pixels)
    return to_rgb(img)


def decode_image(
    data: bytes,
    pre: ImagePreprocess,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_factor: float | None = 2.0,
) -> DecodedImage:
    """Decode image bytes into the encoder's input.

    ``draft_factor``: for JPEGs, let libjpeg decode at a reduced scale as long as the
    result stays at least ``draft_factor`` times the model input (2.0 keeps vectors
    within cos 0.999 of a full decode; 1.0 is fastest; None disables draft mode).
    """
    draft = _draft_target(pre, draft_factor) if draft_factor else None
    img, w, h = upright_image(data, max_pixels, draft)
    try:
        pixels = to_model_input(img, pre)
    except (OSError, ValueError, MemoryError) as e:
        raise ImageDecodeError(f"corrupt or truncated image: {e}") from e
    except Exception as e:  # a plugin bug must not stop a run
        raise ImageDecodeError(f"decoder failed: {type(e).__name__}: {e}") from e
    return DecodedImage(pixels=pixels, width=w, height=h)


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
