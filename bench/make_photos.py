"""Generate N realistic camera-sized JPEG photos from the test corpus (benchmark input).

What it makes: photos of 3-12 MP (e.g. 2000x1500 .. 4000x3000; landscape, portrait, 4:3,
3:2, 16:9 and 1:1), JPEG quality ~88-94 with 4:2:0 chroma subsampling, like a camera or
phone writes them. Content comes from the real photos in ``/work/shared/corpus/photos``:
each file is a random crop of one of them, maybe mirrored, colour-jittered (brightness,
contrast, saturation, a colour cast), upscaled to the target size, with Gaussian sensor
noise added (so file sizes, and therefore entropy-decode cost, are those of real photos
rather than of smooth upscales). Some files (``--rotated``, 10 % by default) are stored
sideways with an EXIF orientation tag, as phones do. Every file differs. Output is
deterministic for a given ``--seed`` whatever the number of processes.

Run (defaults: 2000 photos into /tmp/loupe-bench/photos, all cores)::

    source .venv/bin/activate
    python bench/make_photos.py                       # 2000 photos
    python bench/make_photos.py -n 300 --out /tmp/p300 --seed 7
    python bench/make_photos.py -n 20000 --min-mp 8 --max-mp 24

Prints the time taken, files/s, total size and the mean file size / megapixels.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "photos"
DEFAULT_OUT = "/tmp/loupe-bench/photos"
ASPECTS = [(4, 3)] * 5 + [(3, 2)] * 3 + [(16, 9)] * 1 + [(1, 1)] * 1  # weights by repetition

NOISE_SIDE = 4800  # side of the shared noise tile: 12 MP at 16:9 is 4624x2608

_sources: list[Image.Image] = []
_noise: np.ndarray | None = None


def load_sources(corpus: Path) -> list[Image.Image]:
    """Every readable photo of the corpus as an RGB image (alpha composited on white)."""
    out = []
    for p in sorted(corpus.iterdir()):
        try:
            with Image.open(p) as im:
                im.seek(0)
                im.load()
                if im.mode in ("RGBA", "LA", "P"):
                    im = im.convert("RGBA")
                    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(bg, im)
                out.append(im.convert("RGB"))
        except Exception:  # noqa: BLE001 - skip what Pillow cannot read (e.g. odd TIFFs)
            continue
    if not out:
        raise SystemExit(f"no readable photos in {corpus}")
    return out


def _init(corpus: str, seed: int, noise_sigma: float) -> None:
    global _sources, _noise
    _sources = load_sources(Path(corpus))
    if noise_sigma > 0:
        rng = np.random.default_rng([seed, 0xC0FFEE])
        n = rng.standard_normal((NOISE_SIDE, NOISE_SIDE, 3), dtype=np.float32)
        _noise = np.clip(np.rint(n * noise_sigma), -127, 127).astype(np.int8)
    else:
        _noise = None


def target_size(rng: np.random.Generator, min_mp: float, max_mp: float) -> tuple[int, int]:
    """(width, height) of a photo: megapixels uniform in [min_mp, max_mp], a camera aspect."""
    mp = rng.uniform(min_mp, max_mp) * 1e6
    a, b = ASPECTS[rng.integers(len(ASPECTS))]
    w = math.sqrt(mp * a / b)
    h = w * b / a
    w, h = max(16, int(round(w / 16)) * 16), max(16, int(round(h / 16)) * 16)
    if max(w, h) > NOISE_SIDE:  # only with --max-mp above ~13: shrink to fit the noise tile
        f = NOISE_SIDE / max(w, h)
        w, h = int(w * f) // 16 * 16, int(h * f) // 16 * 16
    if rng.random() < 0.3:
        w, h = h, w  # portrait
    return w, h


def make_one(task: tuple) -> tuple[str, int, int, int]:
    """Write photo ``i``; returns (path, bytes, width, height)."""
    i, out_dir, seed, min_mp, max_mp, rotated, qmin, qmax = task
    rng = np.random.default_rng([seed, i])
    src = _sources[rng.integers(len(_sources))]
    w, h = target_size(rng, min_mp, max_mp)
    # Random crop of the source with the target's aspect, covering 45-100 % of it.
    sw, sh = src.size
    scale = rng.uniform(0.45, 1.0)
    cw = min(sw, sh * w / h) * scale
    ch = cw * h / w
    x0 = rng.uniform(0, sw - cw)
    y0 = rng.uniform(0, sh - ch)
    img = src.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Colour jitter on the small crop (cheap), before upscaling.
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.75, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.75, 1.3))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
    cast = rng.uniform(0.9, 1.1, size=3)
    img = img.point([min(255, int(v * cast[c])) for c in range(3) for v in range(256)])
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    if _noise is not None:
        oy, ox = rng.integers(0, NOISE_SIDE - h + 1), rng.integers(0, NOISE_SIDE - w + 1)
        arr = np.asarray(img, dtype=np.int16)
        arr += _noise[oy:oy + h, ox:ox + w]
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x010F] = "LoupeBench"  # Make
    exif[0x0110] = f"Synthetic {seed}"  # Model
    exif[0x0132] = f"2024:{1 + i % 12:02d}:{1 + i % 28:02d} 12:{i % 60:02d}:{(i * 7) % 60:02d}"
    if rng.random() < rotated:
        # Stored sideways, displayed upright: orientation 6 = rotate 90 CW to display.
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    else:
        exif[0x0112] = 1
    quality = int(rng.integers(qmin, qmax + 1))
    path = os.path.join(out_dir, f"IMG_{i:06d}.jpg")
    tmp = path + ".part"
    img.save(tmp, "JPEG", quality=quality, subsampling=2, exif=exif.tobytes())
    os.replace(tmp, path)
    return path, os.path.getsize(path), img.width, img.height


def make_photos(n: int, out: str, seed: int = 0, corpus: str = str(DEFAULT_CORPUS),
                min_mp: float = 3.0, max_mp: float = 12.0, rotated: float = 0.1,
                quality: tuple[int, int] = (88, 94), noise: float = 5.0,
                processes: int | None = None, verbose: bool = True) -> dict:
    """Write ``n`` photos into ``out`` (existing IMG_*.jpg files are kept); returns stats."""
    os.makedirs(out, exist_ok=True)
    tasks = [(i, out, seed, min_mp, max_mp, rotated, quality[0], quality[1]) for i in range(n)
             if not os.path.exists(os.path.join(out, f"IMG_{i:06d}.jpg"))]
    processes = max(1, processes or os.cpu_count() or 1)
    t0 = time.perf_counter()
    total_bytes = total_px = done = 0
    if tasks:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes, initializer=_init, initargs=(corpus, seed, noise)) as pool:
            for _, nbytes, w, h in pool.imap_unordered(make_one, tasks, chunksize=4):
                done += 1
                total_bytes += nbytes
                total_px += w * h
                if verbose and (done % 200 == 0 or done == len(tasks)):
                    el = time.perf_counter() - t0
                    print(f"  {done}/{len(tasks)} written, {done / el:.1f} files/s",
                          file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    stats = {"requested": n, "written": done, "kept": n - len(tasks), "seconds": elapsed,
             "files_per_s": done / elapsed if done and elapsed else 0.0,
             "mean_mb": total_bytes / done / 1e6 if done else 0.0,
             "mean_mp": total_px / done / 1e6 if done else 0.0,
             "total_gb": total_bytes / 1e9, "processes": processes}
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--count", type=int, default=2000, help="photos to make (2000)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=0, help="random seed (0)")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder of source photos")
    ap.add_argument("--min-mp", type=float, default=3.0, help="smallest size in megapixels (3)")
    ap.add_argument("--max-mp", type=float, default=12.0, help="largest size in megapixels (12)")
    ap.add_argument("--rotated", type=float, default=0.1,
                    help="fraction stored sideways with an EXIF orientation tag (0.1)")
    ap.add_argument("--quality", type=int, nargs=2, default=(88, 94), metavar=("MIN", "MAX"),
                    help="JPEG quality range (88 94)")
    ap.add_argument("--noise", type=float, default=5.0,
                    help="sensor noise sigma in 8-bit levels (5; 0 = none)")
    ap.add_argument("-j", "--processes", type=int, default=None,
                    help="worker processes (default: one per core)")
    args = ap.parse_args(argv)
    s = make_photos(args.count, args.out, args.seed, args.corpus, args.min_mp, args.max_mp,
                    args.rotated, tuple(args.quality), args.noise, args.processes)
    print(f"make_photos: {s['written']} written (+{s['kept']} already there) into {args.out} "
          f"in {s['seconds']:.1f}s ({s['files_per_s']:.1f} files/s, {s['processes']} processes); "
          f"mean {s['mean_mp']:.1f} MP, {s['mean_mb']:.2f} MB/file, {s['total_gb']:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
