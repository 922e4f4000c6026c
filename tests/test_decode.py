"""Decoding: modes to RGB, frames, pixel limit, TIFF fallback, content sniffing."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from loupe.indexer.encoders.spec import ImagePreprocess
from loupe.indexer.media.image import ImageDecodeError, decode_image, to_model_input, to_rgb
from loupe.indexer.media.sniff import sniff

PRE = ImagePreprocess(size=(16, 16))


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_16bit_grey_is_scaled_not_clipped():
    arr = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    rgb = np.asarray(to_rgb(img))
    assert rgb.shape == (2, 2, 3)
    assert rgb[..., 0].tolist() == [[0, 128], [255, 1]]


def test_alpha_is_composited_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((0, 0), (255, 0, 0, 255))
    rgb = np.asarray(to_rgb(img))
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[1, 1].tolist() == [255, 255, 255]


def test_palette_with_transparency_and_cmyk():
    p = Image.new("P", (2, 2), 0)
    p.putpalette([0, 0, 255, 10, 20, 30] + [0] * 762)
    p.info["transparency"] = 0
    assert np.asarray(to_rgb(p))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (2, 2), (255, 0, 0, 0))  # cyan
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [0, 255, 255]


def test_cmyk_jpeg_decodes(tmp_path):
    buf = io.BytesIO()
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(buf, "JPEG", quality=95)  # red
    dec = decode_image(buf.getvalue(), PRE)
    assert (dec.width, dec.height) == (64, 48)
    r, g, b = dec.pixels.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60


def _bomb_png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * 64) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="refused"):
        decode_image(_bomb_png(60000, 60000), PRE)
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(_png(Image.new("RGB", (100, 100))), PRE, max_pixels=5000)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    dec = decode_image(buf.getvalue(), ImagePreprocess(size=(20, 20), resize_mode="squash"))
    assert (dec.width, dec.height) == (20, 40)
    top, bottom = dec.pixels[:5].reshape(-1, 3).mean(0), dec.pixels[-5:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # red on top after a clockwise turn
    assert bottom[2] > 200 and bottom[0] < 60


def test_first_frame_of_animation(corpus):
    data = (corpus / "photos" / "no_time_for_that_tiny.gif").read_bytes()
    im = Image.open(io.BytesIO(data))
    assert im.n_frames > 1
    im.seek(0)
    expected = to_model_input(im.convert("RGB"), PRE)
    assert np.array_equal(decode_image(data, PRE).pixels, expected)
    im.seek(1)
    assert not np.array_equal(expected, to_model_input(im.convert("RGB"), PRE))


def test_float_planar_multipage_tiff_first_page(corpus):
    import tifffile

    path = corpus / "photos" / "multipage_rgb.tif"
    dec = decode_image(path.read_bytes(), ImagePreprocess(size=(10, 10)))
    page0 = np.moveaxis(tifffile.imread(path, key=0), 0, -1)  # (3, 10, 10) float in [0, 1]
    assert (dec.width, dec.height) == (10, 10)
    assert np.abs(dec.pixels.astype(float) - page0 * 255).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0" + b"\x00" * 20, b"garbage" * 10,
                                  _png(Image.new("RGB", (8, 8)))[:40]])
def test_bad_bytes_raise_decode_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data, PRE)


def test_sniff(corpus):
    assert sniff((corpus / "photos" / "rocket.jpg").read_bytes()[:64]) == "image"
    assert sniff((corpus / "photos" / "coffee.png").read_bytes()[:64]) == "image"
    assert sniff((corpus / "photos" / "multipage_rgb.tif").read_bytes()[:64]) == "image"
    assert sniff((corpus / "video" / "three_shots.mp4").read_bytes()[:64]) == "video"
    assert sniff((corpus / "video" / "three_shots_10s.webm").read_bytes()[:64]) == "video"
    assert sniff((corpus / "sounds" / "bell.oga").read_bytes()[:64]) == "audio"
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio"
    assert sniff(b"hello world, not media") is None
