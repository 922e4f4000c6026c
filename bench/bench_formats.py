"""What reading every picture format costs a photo run: the decode worker on camera-sized
JPEGs, and on files whose magic bytes say nothing (where Pillow's identification runs).

Each pass runs ``process_file_with`` (sniff, fingerprint, decode for ViT-B-32's 224 px
input; what a decode worker does) over every file of a folder, in a fresh subprocess,
one process, warm page cache. With ``--baseline DIR`` (a copy of an older ``indexer/``
laid out as ``DIR/loupe/indexer``), passes of that code and of this tree alternate, so
that both see the same machine load, and the medians are compared.

Inputs: ``--photos`` (default: ``make_photos.py``'s folder, made if missing) and a folder
of 2,000 files of no media kind (XMP-like sidecars, JSON, text), made in the work folder.

Run::

    source .venv/bin/activate
    python bench/make_photos.py -n 2000 --out /tmp/loupe-bench/photos-fmt --max-mp 6
    python bench/bench_formats.py --photos /tmp/loupe-bench/photos-fmt --baseline /tmp/base

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("LOUPE_BENCH_WORK", "/tmp/loupe-bench"))

PASS = r"""
import json, os, sys, time
from loupe.indexer.decode.results import DecodeSettings
from loupe.indexer.decode.worker import process_file_with
from loupe.indexer.encoders.spec import ImagePreprocess
import loupe.indexer.media.image as image
folder = sys.argv[1]
files = sorted(os.path.join(folder, n) for n in os.listdir(folder))
sizes = [os.path.getsize(p) for p in files]
settings = DecodeSettings(preprocesses=(ImagePreprocess(),))
t = time.perf_counter()
kinds = {}
for p, s in zip(files, sizes):
    r = process_file_with(p, s, 0, settings)
    kinds[r.code or r.kind] = kinds.get(r.code or r.kind, 0) + 1
print(json.dumps({"seconds": time.perf_counter() - t, "kinds": kinds, "code": image.__file__}))
"""


def sidecars(folder: Path, n: int = 2000) -> Path:
    """``n`` small files of no media kind, as archives hold beside their photos."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = folder / f"side{i:05d}"
        if p.exists():
            continue
        if i % 3 == 0:
            p.write_text('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta>'
                         + "<rdf:li>keyword</rdf:li>" * (20 + i % 50) + "</x:xmpmeta>\n")
        elif i % 3 == 1:
            p.write_text(json.dumps({"title": f"photo {i}", "tags": ["a"] * (i % 40)}))
        else:
            p.write_text(f"notes for roll {i}\n" * (10 + i % 30))
    return folder


def one_pass(folder: Path, baseline: str | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if baseline:
        env["PYTHONPATH"] = baseline + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PASS, str(folder)], env=env, check=True,
                         capture_output=True, text=True, cwd="/").stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=str(WORK / "photos-fmt"))
    ap.add_argument("--baseline", help="folder holding an older loupe/indexer to compare")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    photos = Path(args.photos)
    if not photos.is_dir():
        subprocess.run([sys.executable, str(REPO / "bench" / "make_photos.py"), "-n", "2000",
                        "--out", str(photos), "--max-mp", "6"], check=True)
    folders = {"photos": photos, "no-media files": sidecars(WORK / "sidecars")}
    codes = {"this tree": None} | ({"baseline": args.baseline} if args.baseline else {})
    for what, folder in folders.items():
        times: dict[str, list[float]] = {c: [] for c in codes}
        for name, base in codes.items():  # warm the page cache, and show what each read
            first = one_pass(folder, base)
            print(f"{what}: {name} ({first['code']}): {first['kinds']}")
        for _ in range(args.repeats):
            for name, base in codes.items():
                times[name].append(one_pass(folder, base)["seconds"])
        n = len(os.listdir(folder))
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:9}: {', '.join(f'{t:.2f}' for t in ts)} s -> median {med:.2f} s "
                  f"for {n} files ({med / n * 1000:.2f} ms/file)")
        if args.baseline:
            new, old = (statistics.median(times[k]) for k in ("this tree", "baseline"))
            print(f"  this tree - baseline: {new - old:+.2f} s ({(new - old) / old:+.1%})")


if __name__ == "__main__":
    main()
