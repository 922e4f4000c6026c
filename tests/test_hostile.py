"""Hostile inputs: broken, odd and malicious files made on the spot, indexed in-process,
through decode worker processes and through the CLI.

Every run must finish; good files get rows with the right (EXIF-oriented) size and the
pixels the encoder saw must be what a person sees; bad files are listed as skipped with a
reason; hidden files and non-media are neither indexed nor reported as problems.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.media import solid
from helpers.toys import PixelEncoder
from helpers.toys import seen_pixels as _seen_pixels
from PIL import Image

import loupe.indexer.decode.worker as worker_mod
from loupe.indexer.decode.results import DecodeSettings
from loupe.indexer.decode.worker import process_file_with
from loupe.indexer.encoders.spec import ImagePreprocess
from loupe.indexer.pipeline import IndexOptions, index_paths
from loupe.search.status import index_status
from loupe.search.store import Store


def _permissions_enforced() -> bool:
    """Does chmod 000 stop this process reading a file? (Not for root, nor CAP_DAC_*.)"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            probe.open("rb").close()
            return False
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)


CHMOD_IGNORED = not _permissions_enforced()  # root: fake the permission errors instead
SIDE = 8  # model input of the pixel encoder
UNICODE_NAME = "café\nphoto ☕ 写真.png"

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def seen_pixels(vec) -> np.ndarray:
    """The (SIDE, SIDE, 3) picture a PixelEncoder vector was made from."""
    return _seen_pixels(vec, SIDE)


# -- making hostile files -----------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_with_claimed_size(path: Path, width: int, height: int) -> Path:
    """A valid small PNG whose IHDR (CRC fixed up) claims ``width`` x ``height``."""
    solid(path, (9, 9, 9), size=(4, 4), fmt="PNG")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@functools.lru_cache(maxsize=4)
def _blank_bilevel_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of ``width`` x ``height`` black pixels, zlib-compressed."""
    row = b"\x00" * (1 + (width + 7) // 8)
    co = zlib.compressobj(9)
    idat = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def exif_rotated_jpeg(path: Path) -> Path:
    """40x20 stored pixels, left half red, right half blue, EXIF orientation 6.

    Shown upright it is 20 wide and 40 tall, red on top and blue below.
    """
    im = Image.new("RGB", (40, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, exif=exif, quality=95)
    return path


@functools.lru_cache(maxsize=1)
def _half_jpeg(src: str) -> bytes:
    data = Path(src).read_bytes()
    return data[: len(data) // 2]


@pytest.fixture
def hostile(tmp_path, corpus, monkeypatch) -> Callable[..., tuple[Path, dict, dict]]:
    """Build the hostile folder. Returns a maker:

    ``make(denied=...)`` -> (root, good {path: (w, h)}, bad {path: reason regex}).
    ``denied``: "real" (chmod; only works when not root), "simulated" (monkeypatched
    permission errors, in-process decode only), or None (leave those cases out).
    """
    locked_dirs: list[Path] = []

    def make(denied: str | None = "real") -> tuple[Path, dict, dict]:
        root = tmp_path / "hostile"
        good: dict[str, tuple[int, int]] = {}
        bad: dict[str, str] = {}

        def ok(p: Path, w: int, h: int) -> None:
            good[str(p)] = (w, h)

        ok(solid(root / "red.png", RED), 40, 30)
        # CMYK JPEG
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)
        ok(root / "cmyk.jpg", 40, 30)
        # 16-bit greyscale: 40000 / 257 -> 156
        Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(root / "grey16.png")
        assert Image.open(root / "grey16.png").mode == "I;16"
        ok(root / "grey16.png", 40, 30)
        # palette with a transparent colour: left half transparent black, right half red
        pal = Image.new("P", (40, 30), 0)
        pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
        pal.paste(1, (20, 0, 40, 30))
        pal.save(root / "palette.png", transparency=0)
        ok(root / "palette.png", 40, 30)
        # RGBA: half-transparent red over white -> (255, 127, 127)
        Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(root / "rgba.png")
        ok(root / "rgba.png", 40, 30)
        ok(exif_rotated_jpeg(root / "rotated.jpg"), 20, 40)
        # animated GIF: red frame, then blue
        frames = [Image.new("RGB", (40, 30), RED), Image.new("RGB", (40, 30), BLUE)]
        frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:],
                       duration=100, loop=0)
        ok(root / "animated.gif", 40, 30)
        # multipage TIFF (Pillow-readable): green page, then red
        pages = [Image.new("RGB", (40, 30), GREEN), Image.new("RGB", (40, 30), RED)]
        pages[0].save(root / "pages.tif", save_all=True, append_images=pages[1:])
        ok(root / "pages.tif", 40, 30)
        # multipage float TIFF, planar (the tifffile fallback): green page, then red
        import tifffile

        planar = np.zeros((2, 3, 30, 40), np.float32)
        planar[0, 1] = 1.0
        planar[1, 0] = 1.0
        for page in planar:
            tifffile.imwrite(root / "planar.tif", page, photometric="rgb",
                             planarconfig="separate", append=True)
        ok(root / "planar.tif", 40, 30)
        # real multipage TIFF and animated GIF from the corpus
        for name in ("multipage_rgb.tif", "no_time_for_that_tiny.gif"):
            shutil.copy(corpus / "photos" / name, root / name)
        ok(root / "multipage_rgb.tif", 10, 10)
        ok(root / "no_time_for_that_tiny.gif", 14, 25)
        # unicode and a newline in the name
        ok(solid(root / UNICODE_NAME, (10, 200, 30)), 40, 30)
        # a symlink to a file: indexed under its own name
        os.symlink(root / "red.png", root / "link-to-red.png")
        ok(root / "link-to-red.png", 40, 30)
        # symlink loops: a folder linking to itself and to its parent
        ok(solid(root / "sub" / "inner.png", GREEN), 40, 30)
        os.symlink(root / "sub", root / "sub" / "self-loop")
        os.symlink("..", root / "sub" / "up-loop")
        # hidden folder and hidden file: neither indexed nor reported
        solid(root / ".hidden" / "secret.png", BLUE)
        solid(root / ".secret.png", BLUE)
        # not media: ignored, not a problem
        (root / "notes.txt").write_text("shopping list: eggs, milk\n")
        # not regular files: a FIFO (opening it would hang a worker) and a dangling link
        os.mkfifo(root / "pipe.jpg")
        os.symlink(root / "no-such-target.jpg", root / "dangling.jpg")

        # -- the bad ones
        (root / "empty.jpg").write_bytes(b"")
        bad[str(root / "empty.jpg")] = r"empty"
        (root / "truncated.jpg").write_bytes(_half_jpeg(str(corpus / "photos" / "rocket.jpg")))
        bad[str(root / "truncated.jpg")] = r"truncated|corrupt"
        (root / "garbage.png").write_bytes(np.random.default_rng(7).bytes(5000))
        bad[str(root / "garbage.png")] = r"not a known image format|not a decodable image"
        # PNG magic, then garbage: gets past the sniffing, not past Pillow
        (root / "bad-magic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x13" * 200)
        bad[str(root / "bad-magic.png")] = r"not a decodable image"
        png_with_claimed_size(root / "bomb-header.png", 60000, 60000)
        bad[str(root / "bomb-header.png")] = r"refused.*pixels"
        # a genuine bomb: 400 M pixels that deflate from ~60 kB
        (root / "bomb-real.png").write_bytes(_blank_bilevel_png(20000, 20000))
        bad[str(root / "bomb-real.png")] = r"refused.*pixels"

        unreadable = solid(root / "unreadable.jpg", BLUE, fmt="JPEG")
        locked = solid(root / "locked" / "inside.png", RED).parent
        if denied == "real" and not CHMOD_IGNORED:
            unreadable.chmod(0)
            locked.chmod(0)
            locked_dirs.append(locked)
        elif denied == "simulated":
            real_open, real_scandir = open, os.scandir

            def fake_open(path, *a, **kw):
                if str(path) == str(unreadable):
                    raise PermissionError(13, "Permission denied", str(path))
                return real_open(path, *a, **kw)

            def fake_scandir(path="."):
                if str(path) == str(locked):
                    raise PermissionError(13, "Permission denied", str(path))
                return real_scandir(path)

            monkeypatch.setattr(worker_mod, "open", fake_open, raising=False)
            monkeypatch.setattr(os, "scandir", fake_scandir)
        else:
            denied = None
        if denied:
            bad[str(unreadable)] = r"cannot read.*[Pp]ermission denied"
            bad[str(locked)] = r"cannot list.*[Pp]ermission denied"
        else:  # leave the permission cases out
            unreadable.unlink()
            shutil.rmtree(locked)
        return root, good, bad

    yield make
    for d in locked_dirs:
        d.chmod(0o755)


def _rows(store: Store, column: str | None = None) -> dict[str, dict]:
    t = store.items(create=False)
    assert t is not None
    rows = t.to_arrow().to_pylist()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "duplicate rows"
    return {r["path"]: r for r in rows}


def _check_store(store: Store, root: Path, good: dict, bad: dict) -> dict[str, dict]:
    rows = _rows(store)
    assert set(rows) == set(good), (
        f"missing: {sorted(set(good) - set(rows))}, extra: {sorted(set(rows) - set(good))}")
    for p, (w, h) in good.items():
        assert (rows[p]["width"], rows[p]["height"]) == (w, h), p
        assert rows[p]["fingerprint"]
    st = index_status(store)
    skipped = {s["path"]: s["reason"] for s in st["skipped"]}
    assert set(skipped) == set(bad), (
        f"not listed: {sorted(set(bad) - set(skipped))}, "
        f"wrongly listed: {sorted(set(skipped) - set(bad))}")
    for p, pattern in bad.items():
        assert skipped[p] and "\n" not in skipped[p], p
        assert "object at 0x" not in skipped[p], (p, skipped[p])  # no Python reprs
        assert re.search(pattern, skipped[p]), (p, skipped[p])
    assert st["not_media"] == 1  # notes.txt: counted, not a problem
    parts = [Path(p).relative_to(root).parts for p in set(rows) | set(skipped)]
    assert not any(c.startswith(".") for ps in parts for c in ps), "a hidden file was seen"
    assert not any(c.endswith("-loop") for ps in parts for c in ps), "a loop was followed"
    return rows


def _close(a, b, tol: float) -> bool:
    return bool(np.all(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) <= tol))


def _check_pixels(rows: dict[str, dict], root: Path, column: str) -> None:
    """What the encoder saw is what a person sees."""
    seen = {Path(p).name: seen_pixels(r[column]) for p, r in rows.items()}
    assert _close(seen["red.png"], RED, 1)
    assert _close(seen["cmyk.jpg"], RED, 40), seen["cmyk.jpg"].mean(axis=(0, 1))
    assert _close(seen["grey16.png"], 156, 1.5), seen["grey16.png"].mean(axis=(0, 1))
    # transparent left half is composited on white, the opaque right half stays red
    assert _close(seen["palette.png"][:, 0], WHITE, 2)
    assert _close(seen["palette.png"][:, -1], RED, 2)
    assert _close(seen["rgba.png"], (255, 127, 127), 2)
    # EXIF orientation 6: red on top, blue at the bottom
    top, bottom = seen["rotated.jpg"][0], seen["rotated.jpg"][-1]
    assert _close(top, RED, 60) and _close(bottom, BLUE, 60), (top, bottom)
    assert _close(seen["animated.gif"], RED, 1)  # the first frame
    assert _close(seen["pages.tif"], GREEN, 1)  # the first page
    assert _close(seen["planar.tif"], GREEN, 1)
    assert _close(seen[UNICODE_NAME], (10, 200, 30), 1)
    assert _close(seen["link-to-red.png"], RED, 1)


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "workers"])
def test_hostile_folder_indexes_good_and_lists_bad(hostile, tmp_path, workers):
    if not CHMOD_IGNORED:
        denied = "real"
    else:  # chmod does not stop root: fake the permission errors where we can
        denied = "simulated" if workers == 0 else None
    root, good, bad = hostile(denied=denied)
    enc = PixelEncoder()
    store = Store(str(tmp_path / "db"), create=True)
    report = index_paths([str(root)], store, enc, IndexOptions(workers=workers, progress=False))
    assert report.skipped == len(bad)
    assert report.not_media == 1
    assert report.files_seen == len(good) + len(bad) + 1 - (1 if any(
        p.endswith("locked") for p in bad) else 0)
    # red.png and link-to-red.png share content: embedded once
    assert report.embedded == len(good) - 1 == enc.images_embedded
    rows = _check_store(store, root, good, bad)
    _check_pixels(rows, root, enc.spec.column)
    assert rows[str(root / "red.png")]["fingerprint"] == rows[
        str(root / "link-to-red.png")]["fingerprint"]

    # a second run changes nothing and looks at nothing again
    enc2 = PixelEncoder()
    again = index_paths([str(root)], Store(store.dir), enc2,
                        IndexOptions(workers=workers, progress=False))
    assert again.to_process == 0 and enc2.images_embedded == 0
    _check_store(Store(store.dir), root, good, bad)


def test_hostile_folder_through_cli(hostile, tmp_path, tiny_clip_dir):
    root, good, bad = hostile(denied="real" if not CHMOD_IGNORED else None)
    db = tmp_path / "cli-db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOUPE_DB": str(tmp_path / "unused-db")}
    script = Path(sys.executable).parent / "loupe"
    loupe = [str(script)] if script.exists() else [sys.executable, "-m", "loupe.search.cli"]
    proc = subprocess.run(
        [*loupe, "index", str(root), "--db", str(db), "--model", tiny_clip_dir,
         "--workers", "2", "--quiet", "--json"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped"] == len(bad) and report["not_media"] == 1
    assert report["embedded"] == len(good) - 1  # the symlinked copy reuses its vector

    proc = subprocess.run([*loupe, "status", "--db", str(db), "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["items"] == len(good) == st["counts"]["photo"]
    assert {s["path"] for s in st["skipped"]} == set(bad)
    assert str(root / UNICODE_NAME) not in {s["path"] for s in st["skipped"]}
    _check_store(Store(str(db)), root, good, bad)

    # the human-readable status survives the odd names too
    proc = subprocess.run([*loupe, "status", "--db", str(db)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped: {len(bad)} files" in proc.stdout


def test_decoded_pixels_follow_exif_orientation():
    """decode straight from the worker entry point: size swapped, picture turned."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = exif_rotated_jpeg(Path(d) / "r.jpg")
        for draft in (2.0, None):
            r = process_file_with(str(p), p.stat().st_size, p.stat().st_mtime_ns,
                                  DecodeSettings((ImagePreprocess(size=(16, 16)),),
                                                 draft_factor=draft))
            assert r.code is None, r.reason
            assert (r.width, r.height) == (20, 40)
            px = r.pixels[0].astype(int)
            assert _close(px[:4], RED, 60) and _close(px[-4:], BLUE, 60)


def test_large_legal_image_is_not_refused(tmp_path, toy):
    """A 92 MP image is under the 200 MP default limit: indexed, not called a bomb;
    --max-pixels is what decides, in both directions."""
    root = tmp_path / "pano"
    root.mkdir()
    (root / "panorama.png").write_bytes(_blank_bilevel_png(20000, 4600))
    small = solid(root / "small.png", RED)
    store = Store(str(tmp_path / "db"), create=True)
    report = index_paths([str(root)], store, toy, IndexOptions(workers=0, progress=False))
    assert report.skipped == 0, index_status(store)["skipped"]
    rows = _rows(store)
    assert (rows[str(root / "panorama.png")]["width"],
            rows[str(root / "panorama.png")]["height"]) == (20000, 4600)

    store2 = Store(str(tmp_path / "db2"), create=True)
    index_paths([str(root)], store2, toy,
                IndexOptions(workers=0, progress=False, max_pixels=1000))
    skipped = {s["path"]: s["reason"] for s in index_status(store2)["skipped"]}
    assert set(skipped) == {str(root / "panorama.png"), str(small)}
    assert all("refused" in r and "1,000" in r for r in skipped.values()), skipped


def test_symlinked_folder_inside_roots_keeps_real_paths(tmp_path):
    """A link that sorts before the folder it points to does not steal its files."""
    from loupe.indexer.scan import scan

    real = tmp_path / "root" / "z-real"
    solid(real / "p.png", (1, 2, 3))
    (tmp_path / "root" / "a-link").symlink_to(real, target_is_directory=True)
    outside = tmp_path / "elsewhere"
    solid(outside / "q.png", (4, 5, 6))
    (tmp_path / "root" / "b-outside").symlink_to(outside, target_is_directory=True)
    paths = sorted(e.path for e in scan([str(tmp_path / "root")]))
    assert paths == [str(tmp_path / "root" / "b-outside" / "q.png"), str(real / "p.png")]
