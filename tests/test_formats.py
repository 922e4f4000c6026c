"""Every picture format Pillow reads is indexed, told by its content whatever its name;
the ones Loupe must not open (Ghostscript's, and the oddities of NOT_INDEXED) are not;
HEIC (libheif) and camera raws (LibRaw) decode as people see them, turned once.

The list of formats is Pillow's own (``Image.OPEN``): a format Loupe forgets, or a new
Pillow's new opener with no sample here, fails. Samples: written by Pillow where it
writes the format, by ImageMagick (tests/fixtures/formats, see make.sh there) or built
after the format's layout (tests/helpers/formats.py) where it does not.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import formats as F
from PIL import Image

from loupe.indexer.decode.results import DecodeSettings
from loupe.indexer.decode.worker import process_file_with
from loupe.indexer.encoders.spec import ImagePreprocess
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.media.image import (
    INDEX_FORMATS,
    NOT_INDEXED,
    QUERY_FORMATS,
    ImageDecodeError,
    decode_image,
    identify,
    to_model_input,
)
from loupe.indexer.media.raw import camera_raw
from loupe.indexer.media.sniff import GHOSTSCRIPT, JPEG_XL, sniff
from loupe.search.cli import main as loupe
from loupe.search.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
PRE = ImagePreprocess(size=(8, 8), resize_mode="squash")
OPENERS = sorted(Image.OPEN)  # image.py registered pillow-heif's HEIF opener on import
GREY_L, GREY_R = (60,) * 3, (200,) * 3
BLACK, WHITE = (0,) * 3, (255,) * 3
LOSSY = {"JPEG", "MPO", "WEBP", "AVIF", "HEIF"}
# Pillow writes these from a picture of its mode (the others from RGB).
MODES = {"MSP": "1", "XBM": "1", "SPIDER": "L", "BLP": "P"}


def _written(fmt: str) -> tuple[bytes, tuple, tuple]:
    """A picture Pillow writes in ``fmt``, and the colours of its two halves."""
    mode = MODES.get(fmt, "RGB")
    if mode == "1":
        img, left, right = F.halves(0, 255, mode="1"), BLACK, WHITE
    elif mode == "L":
        img, left, right = F.halves(60, 200, mode="L"), GREY_L, GREY_R
    else:
        img, left, right = F.halves(), F.LEFT, F.RIGHT
        img = img.quantize(2) if mode == "P" else img
    buf = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.from_pillow(img).save(buf, quality=95)  # libheif's encoder (x265)
    else:
        img.save(buf, fmt)
    return buf.getvalue(), left, right


READ_ONLY = {  # formats Pillow reads but does not write: samples made otherwise
    "CUR": lambda: (F.cur(), F.LEFT, F.RIGHT),
    "DCX": lambda: ((FIXTURES / "picture.dcx").read_bytes(), F.LEFT, F.RIGHT),
    "FITS": lambda: ((FIXTURES / "picture.fits").read_bytes(), GREY_L, GREY_R),
    "FLI": lambda: (F.fli(), F.LEFT, F.RIGHT),
    "FTEX": lambda: (F.ftex(), F.LEFT, F.RIGHT),
    "GBR": lambda: (F.gbr(), F.LEFT, F.RIGHT),
    "IMT": lambda: (F.imt(), GREY_L, GREY_R),
    "MCIDAS": lambda: (F.mcidas(), GREY_L, GREY_R),
    # PhotoYCC luma 140 is 1.3584 * 140 = 190 in RGB (Kodak's scale), chroma neutral
    "PCD": lambda: (F.photocd(), (190,) * 3, (190,) * 3),
    "PIXAR": lambda: (F.pixar(), F.LEFT, F.RIGHT),
    "PSD": lambda: ((FIXTURES / "layers.psd").read_bytes(), F.LEFT, F.RIGHT),
    "SUN": lambda: ((FIXTURES / "picture.ras").read_bytes(), F.LEFT, F.RIGHT),
    "XPM": lambda: (F.xpm(), F.LEFT, F.RIGHT),
    "XVTHUMB": lambda: (F.xvthumb(), F.XV_LEFT, F.XV_RIGHT),
    # not indexed: a sample Pillow takes for the format, to show Loupe does not
    "BUFR": lambda: (b"BUFR" + bytes(60), None, None),
    "GRIB": lambda: (b"GRIB\0\0\0\x01" + bytes(56), None, None),
    "HDF5": lambda: (b"\x89HDF\r\n\x1a\n" + bytes(56), None, None),
    "IPTC": lambda: (F.iptc(), None, None),
    "WMF": lambda: (F.wmf(), None, None),
}


def _mpeg(path: Path) -> Path:
    """An MPEG-1 video elementary stream written by FFmpeg's encoder (through PyAV)."""
    import av

    with av.open(str(path), "w", format="mpeg1video") as c:
        s = c.add_stream("mpeg1video", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for _ in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), F.LEFT, np.uint8),
                                               format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def sample(fmt: str, tmp: Path) -> tuple[bytes, tuple | None, tuple | None]:
    """A file in Pillow format ``fmt`` and the colours of its halves (None: not indexed)."""
    if fmt == "MPEG":
        return _mpeg(tmp / "sample.m1v").read_bytes(), None, None
    if fmt in READ_ONLY:
        return READ_ONLY[fmt]()
    if fmt in Image.SAVE:
        data, left, right = _written(fmt)
        return (data, None, None) if fmt in NOT_INDEXED else (data, left, right)
    raise AssertionError(f"Pillow reads {fmt} and this test has no sample of it: make one "
                         "(tests/helpers/formats.py), or refuse it in NOT_INDEXED with why")


def _halves_seen(data: bytes) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    dec = decode_image(data, PRE)
    left = dec.pixels[:, :3].reshape(-1, 3).mean(axis=0)
    right = dec.pixels[:, 5:].reshape(-1, 3).mean(axis=0)
    return left, right, (dec.width, dec.height)


def _near(seen: np.ndarray, want: tuple, tol: float) -> bool:
    return bool(np.all(np.abs(seen - np.asarray(want, np.float64)) <= tol))


@pytest.mark.parametrize("fmt", OPENERS)
def test_each_format_pillow_reads_decodes_as_a_person_sees_it_or_is_refused(fmt, tmp_path):
    data, left, right = sample(fmt, tmp_path)
    with Image.open(io.BytesIO(data)) as im:  # the sample is what it claims to be
        assert im.format.upper() == fmt
    taken = sniff(data[:64]) == MediaKind.IMAGE or identify(io.BytesIO(data)) is not None
    if fmt in NOT_INDEXED:
        assert fmt not in INDEX_FORMATS and NOT_INDEXED[fmt]
        assert not taken
        with pytest.raises(ImageDecodeError):
            decode_image(data, PRE)
        return
    assert fmt in INDEX_FORMATS and taken
    seen_left, seen_right, _ = _halves_seen(data)
    tol = 40 if fmt in LOSSY else 3
    assert _near(seen_left, left, tol) and _near(seen_right, right, tol), (
        fmt, seen_left.round(), seen_right.round())


def test_the_allow_list_is_every_opener_but_the_refused():
    assert INDEX_FORMATS >= set(Image.OPEN) - set(NOT_INDEXED)
    assert not INDEX_FORMATS & set(NOT_INDEXED)
    assert NOT_INDEXED["EPS"] == GHOSTSCRIPT
    # refusing one more format is a decision this test is changed for, with its reason
    assert set(NOT_INDEXED) == {"EPS", "WMF", "MPEG", "IPTC", "BUFR", "GRIB", "HDF5"}
    assert QUERY_FORMATS == {"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP"}  # as it was


EXTS = ["", ".jpg", ".dat", ".png"]  # no extension, or a misleading one


@pytest.fixture
def every_format(tmp_path) -> tuple[Path, dict[str, str], dict[str, str]]:
    """A folder with a file of every format Pillow reads (and an MPO, a PostScript, a PDF
    and a JPEG XL). Returns (folder, {indexed path: format}, {path: format} of the files
    not indexed as photos)."""
    root = tmp_path / "archive"
    root.mkdir()
    indexed, refused = {}, {}
    for i, fmt in enumerate(OPENERS):
        data, left, _ = sample(fmt, tmp_path)
        # (a file not indexed whose name claims a picture would be listed as damaged)
        ext = EXTS[i % len(EXTS)] if left is not None else ".bin"
        path = root / f"{i:02d}-{fmt.lower()}{ext}"
        path.write_bytes(data)
        (indexed if left is not None else refused)[str(path)] = fmt
    frames = [F.halves(), F.halves(F.RIGHT, F.LEFT)]
    frames[0].save(root / "stereo.mpo", "MPO", save_all=True, append_images=frames[1:])
    indexed[str(root / "stereo.mpo")] = "MPO"
    F.halves().save(root / "page.pdf", "PDF")
    (root / "flyer.png").write_bytes(b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    shutil.copy(FIXTURES / "picture.jxl", root / "picture.jxl")
    refused.update({str(root / "page.pdf"): "PDF", str(root / "flyer.png"): "PS",
                    str(root / "picture.jxl"): "JXL"})
    return root, indexed, refused


def test_a_folder_of_every_format_is_indexed_by_content_through_the_cli(
        every_format, tmp_path, tiny_clip_dir, capsys):
    root, indexed, refused = every_format
    db = tmp_path / "db"
    assert loupe(["index", str(root), "--db", str(db), "--model", tiny_clip_dir,
                  "--workers", "2", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    store = Store(str(db))
    rows = store.item_rows(["path", "kind", "width", "height"]).to_pylist()
    photos = {r["path"] for r in rows if r["kind"] == ItemKind.PHOTO}
    assert photos == set(indexed), (
        f"not indexed: {sorted(indexed[p] for p in set(indexed) - photos)}, "
        f"wrongly indexed: {sorted(refused.get(p, p) for p in photos - set(indexed))}")
    # the MPEG is a video: its frames are rows
    mpeg = next(p for p, f in refused.items() if f == "MPEG")
    assert {r["kind"] for r in rows if r["path"] == mpeg} == {ItemKind.FRAME}
    skipped = {s["path"]: s for s in store.skipped_rows()}
    for path, fmt in refused.items():
        if fmt in ("EPS", "PS", "PDF", "JXL"):  # refused by name, not "bad"
            assert skipped[path]["code"] == SkipCode.UNSUPPORTED, (fmt, skipped[path])
            assert skipped[path]["reason"] == (JPEG_XL if fmt == "JXL" else GHOSTSCRIPT)
            assert skipped[path]["kind"] is None  # so no later run tries it again
        elif fmt != "MPEG":  # the oddities are no media of ours: not a problem either
            assert path not in skipped or skipped[path]["code"] == SkipCode.NOT_MEDIA, (
                fmt, skipped.get(path))
    assert report["skipped"] == 0  # nothing was taken for a damaged file


def test_a_psd_is_indexed_by_its_composite():
    data = (FIXTURES / "layers.psd").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        # Pillow opens a PSD at its composite (its layers are frames 1 and 2): the seek(0)
        # Loupe did before decoding a picture of several frames fails on it
        assert im.format == "PSD" and im.n_frames == 2
        with pytest.raises(EOFError):
            im.seek(0)
    left, right, size = _halves_seen(data)
    assert size == (F.W, F.H)
    assert _near(left, F.LEFT, 3) and _near(right, F.RIGHT, 3)  # not a layer (green, yellow)


def _settings() -> DecodeSettings:
    return DecodeSettings(preprocesses=(PRE,))


def test_a_targa_without_extension_and_a_photocd_are_photos_not_sounds(tmp_path):
    pcd = F.photocd()
    assert sniff(pcd[:64]) is None  # was "audio": 0xFF 0xFF passed for an MP3 frame
    assert sniff(b"\xff\xfb\x90\x64" + bytes(60)) == MediaKind.AUDIO  # a real MP3 frame
    assert sniff(b"\xff\xf1\x50\x80" + bytes(60)) == MediaKind.AUDIO  # AAC ADTS
    (tmp_path / "IMG0001.PCD").write_bytes(pcd)
    F.halves().save(tmp_path / "texture", "TGA")
    for name, size in (("IMG0001.PCD", (768, 512)), ("texture", (F.W, F.H))):
        path = tmp_path / name
        res = process_file_with(str(path), path.stat().st_size, 0, _settings())
        assert (res.kind, res.code) == (MediaKind.IMAGE, None), (name, res.reason)
        assert [(i.kind, i.width, i.height) for i in res.items] == [(ItemKind.PHOTO, *size)]


def test_a_missing_heif_or_raw_decoder_is_named_and_not_taken_for_damage(tmp_path, monkeypatch):
    data, _, _ = _written("HEIF")
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(data)
    monkeypatch.delitem(Image.OPEN, "HEIF")  # as without pillow-heif
    res = process_file_with(str(path), len(data), 0, _settings())
    # unsupported with kind "image": the next run tries it again, once it is installed
    assert res.code == SkipCode.UNSUPPORTED and res.kind == MediaKind.IMAGE
    assert res.reason == "HEIC/HEIF needs pillow-heif: pip install pillow-heif"
    path = tmp_path / "IMG_0002.DNG"
    path.write_bytes(F.dng(F.mosaic()))
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as without rawpy
    res = process_file_with(str(path), path.stat().st_size, 0, _settings())
    assert res.code == SkipCode.UNSUPPORTED and res.kind == MediaKind.IMAGE
    assert res.reason == "camera RAW needs rawpy: pip install rawpy"


# -- HEIC ---------------------------------------------------------------------------------
def _expected(img: Image.Image) -> np.ndarray:
    return to_model_input(img, PRE).astype(np.float64)


def test_a_rotated_heic_written_by_libheif_comes_out_upright_once(tmp_path):
    import pillow_heif

    src = F.halves(size=(64, 32))
    src.paste((0, 200, 0), (0, 0, 16, 8))  # a green corner: every turn and flip differs
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, as a phone held upright writes it
    for orientation, want in ((1, src), (6, src.transpose(Image.Transpose.ROTATE_270))):
        buf = io.BytesIO()
        pillow_heif.from_pillow(src).save(
            buf, quality=95, exif=exif.tobytes() if orientation == 6 else None)
        data = buf.getvalue()
        assert data[4:12] == b"ftypheic"
        # libheif writes the turn as the HEIF irot box (EXIF orientation is ignored by
        # HEIF readers), and libheif applies it when decoding
        assert (b"irot" in data) == (orientation == 6)
        dec = decode_image(data, PRE)
        assert (dec.width, dec.height) == want.size
        seen = dec.pixels.astype(np.float64)
        assert np.abs(seen - _expected(want)).max() <= 40, orientation
        for wrong in (src.transpose(Image.Transpose.ROTATE_90),  # turned the other way
                      src.transpose(Image.Transpose.ROTATE_180)):  # or turned twice
            if wrong.size == want.size:
                assert np.abs(seen - _expected(wrong)).max() > 100


# -- camera raws --------------------------------------------------------------------------
def test_camera_raws_are_told_apart_from_tiffs_by_content(tmp_path):
    assert camera_raw(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(52)) == "CR2"
    assert camera_raw(b"\x00\x00\x00\x18ftypcrx " + bytes(52)) == "CR3"
    assert camera_raw(b"FUJIFILMCCD-RAW 0201FF383501" + bytes(36)) == "RAF"
    assert camera_raw(b"IIRO\x08\x00\x00\x00" + bytes(56)) == "ORF"
    assert camera_raw(b"IIU\x00\x08\x00\x00\x00" + bytes(56)) == "RW2"
    assert sniff(b"\x00\x00\x00\x18ftypcrx " + bytes(52)) == MediaKind.IMAGE  # not a video
    cfa = F.mosaic()
    assert camera_raw(F.dng(cfa)) == "DNG"
    assert camera_raw(F.dng(cfa, np.zeros((8, 8, 3), np.uint8))) == "DNG"
    # a NEF's layout: a preview IFD, the CFA in its SubIFD, no DNGVersion
    assert camera_raw(F.dng(cfa, np.zeros((8, 8, 3), np.uint8), make=b"NIKON CORPORATION",
                            dng_version=False)) == "NEF"
    # a scanner's TIFF that names the same maker is a TIFF
    buf = io.BytesIO()
    info = Image.Exif()
    info[0x010F] = "NIKON"
    F.halves().save(buf, "TIFF", exif=info)
    assert camera_raw(buf.getvalue()) is None
    assert camera_raw(buf.getvalue()[:200]) is None  # cut short: not a raw, no error
    # the query path (uploads) keeps its short list
    with pytest.raises(ImageDecodeError, match="DNG camera raw content"):
        decode_image(F.dng(cfa), PRE, formats=QUERY_FORMATS)


def _jpeg(img: Image.Image, orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _dominant(pixels: np.ndarray) -> str:
    r, _, b = pixels.reshape(-1, 3).mean(axis=0)
    return "red" if r > b + 60 else "blue" if b > r + 60 else "neither"


def test_raws_decode_from_their_preview_or_a_half_size_demosaic_upright_and_say_which(
        tmp_path, tiny_clip_dir, capsys):
    """The tiny model's input is 64 px: a preview is used from a short side of 128."""
    import rawpy

    root = tmp_path / "raws"
    root.mkdir()
    cfa = F.mosaic()  # 96x64, red left, blue right
    sideways = F.halves(size=(192, 128))  # the preview, stored as the sensor lies
    files = {  # name: (bytes, orientation of the picture, note expected)
        "jpeg-preview.dng": (F.dng(cfa, _jpeg(sideways)), 1, "raw preview 192x128"),
        "bitmap-preview.dng": (F.dng(cfa, np.asarray(sideways)), 1, "raw preview 192x128"),
        "small-preview.dng": (F.dng(cfa, _jpeg(F.halves(size=(60, 40)))), 1,
                              "raw half-size demosaic"),
        "no-preview.dng": (F.dng(cfa), 1, "raw half-size demosaic"),
        # turned by the raw's orientation (LibRaw's flip)...
        "turned-preview.dng": (F.dng(cfa, _jpeg(sideways), orientation=6), 6,
                               "raw preview 128x192"),
        "turned-demosaic": (F.dng(cfa, orientation=6), 6, "raw half-size demosaic"),
        # ... and only once when the preview JPEG says it as well
        "preview-says-it-too.dng": (F.dng(cfa, _jpeg(sideways, 6), orientation=6), 6,
                                    "raw preview 128x192"),
    }
    for name, (data, _, _) in files.items():
        (root / name).write_bytes(data)
    with rawpy.imread(str(root / "jpeg-preview.dng")) as raw:  # LibRaw reads what we wrote
        assert raw.extract_thumb().format == rawpy.ThumbFormat.JPEG
        assert raw.sizes.flip == 0 and (raw.sizes.width, raw.sizes.height) == (96, 64)
    with rawpy.imread(str(root / "bitmap-preview.dng")) as raw:
        assert raw.extract_thumb().format == rawpy.ThumbFormat.BITMAP
    with rawpy.imread(str(root / "turned-demosaic")) as raw:
        assert raw.sizes.flip == 6

    db = tmp_path / "db"
    assert loupe(["index", str(root), "--db", str(db), "--model", tiny_clip_dir,
                  "--workers", "0", "--quiet"]) == 0
    capsys.readouterr()
    store = Store(str(db))
    records = {Path(f["path"]).name: f for f in store.file_rows()}
    items = {Path(r["path"]).name: r for r in store.item_rows(
        ["path", "kind", "width", "height"]).to_pylist()}
    assert set(records) == set(items) == set(files)
    for name, (data, orientation, note) in files.items():
        assert records[name]["decoded_from"] == note, name
        assert records[name]["media"] == MediaKind.IMAGE and records[name]["problem"] is None
        size = (64, 96) if orientation == 6 else (96, 64)  # the sensor's picture, upright
        assert (items[name]["kind"], items[name]["width"], items[name]["height"]) == (
            ItemKind.PHOTO, *size), name
        dec = decode_image(data, ImagePreprocess(size=(64, 64), resize_mode="squash"))
        assert dec.decoded_from == note
        px = dec.pixels
        if orientation == 1:  # red on the left, blue on the right
            halves = _dominant(px[:, :24]), _dominant(px[:, 40:])
        else:  # turned a quarter clockwise: red on top, blue at the bottom
            halves = _dominant(px[:24]), _dominant(px[40:])
        assert halves == ("red", "blue"), (name, px[:, :, 0].mean(), px[:, :, 2].mean())


def test_a_raw_over_the_pixel_limit_is_refused_before_it_is_demosaiced():
    with pytest.raises(ImageDecodeError, match="refused: 96x64 = 6,144 pixels"):
        decode_image(F.dng(F.mosaic()), PRE, max_pixels=5000)
