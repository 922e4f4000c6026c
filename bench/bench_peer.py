"""Loupe against clip-retrieval, side by side in one run: photos/s on the same folder with
the same open_clip model and the same local weight file.

clip-retrieval (https://github.com/rom1504/clip-retrieval) is the usual tool for
embedding a folder with CLIP. It cannot share Loupe's environment (it pins
``open_clip_torch<3``, ``numpy<2``, ``pyarrow<16``), so it runs from its own virtual
environment (``--peer-venv``, made on first use with the same torch as Loupe and the
newest open_clip 2.x).

The model is a full-size ViT-B-32 with seeded random weights saved to one local file
(real weights cannot be downloaded here; speed does not depend on their values). Both
tools load that file: Loupe as ``--model ViT-B-32 --pretrained FILE``, clip-retrieval as
``--clip_model open_clip:ViT-B-32/FILE`` (its loader, all_clip, joins everything after
the first ``/`` back into the checkpoint, so an absolute path works and reaches
open_clip's ``create_model_and_transforms(pretrained=FILE)``).

Each tool runs in its own process, timed from start to exit (interpreter start and model
load included: what a user waits for), with the same decode workers (one per core
unless ``--workers``). clip-retrieval is run with its own batch size (256) and with
``--peer-workers`` preprocessing workers too (its default is 4); its best run is the one
compared. The vectors are compared as well: for every photo the cosine between Loupe's
stored vector and clip-retrieval's (they differ only by decoding: Loupe decodes JPEGs in
draft mode at the size the model needs, clip-retrieval decodes whole).

Run::

    source .venv/bin/activate
    python bench/bench_peer.py                  # 500 photos
    python bench/bench_peer.py -n 2000 --photos /tmp/loupe-bench/photos

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from _common import (
    DEFAULT_WORK,
    bench_env,
    machine_info,
    mib,
    model_args,
    prehash_weights,
    run_monitored,
    write_json,
)
from bench_index import ensure_photos, index_run, print_run

PEER_PACKAGES = ["torch==2.11.0", "torchvision==0.26.0", "open_clip_torch<3",
                 "clip-retrieval==2.45.0"]


def ensure_peer_venv(venv: str) -> str:
    """The clip-retrieval executable in ``venv`` (the venv made and filled if missing)."""
    exe = os.path.join(venv, "bin", "clip-retrieval")
    if os.path.exists(exe):
        return exe
    print(f"making clip-retrieval's own venv at {venv} ({' '.join(PEER_PACKAGES)})...",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", *PEER_PACKAGES],
                   check=True)
    return exe


def peer_run(exe: str, folder: str, out: str, weights: str, batch: int, workers: int,
             env: dict) -> dict:
    """One clip-retrieval ``inference`` run over ``folder``; its numbers."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [exe, "inference", "--input_dataset", folder, "--output_folder", out,
           "--clip_model", f"open_clip:ViT-B-32/{weights}", "--enable_text", "False",
           "--enable_metadata", "False", "--batch_size", str(batch),
           "--num_prepro_workers", str(workers), "--use_jit", "False"]
    r = run_monitored(cmd, env=env)
    if r.returncode != 0:
        raise SystemExit(f"clip-retrieval failed (rc {r.returncode}):\n{r.stderr[-4000:]}")
    emb = sorted(glob.glob(os.path.join(out, "img_emb", "*.npy")))
    n = sum(np.load(e, mmap_mode="r").shape[0] for e in emb)
    # it first runs one batch of random images through the model ("warming up"): part of
    # what a user waits for, but reported apart as well so a short run is not unfair to it
    warm = re.search(r"done warming up in ([0-9.]+)s", r.stdout + r.stderr)
    warm_s = float(warm.group(1)) if warm else 0.0
    return {"label": f"clip-retrieval, batch {batch}, {workers} workers", "wall_s": r.wall_s,
            "embedded": n, "per_s_wall": n / r.wall_s, "warmup_s": warm_s,
            "per_s_no_warmup": n / max(r.wall_s - warm_s, 1e-9), "peak_rss": r.peak_rss,
            "cpu_s": r.cpu_s, "load_note": r.load_note, "out": out}


def peer_vectors(out: str) -> dict[str, np.ndarray]:
    """{absolute image path: vector} from a clip-retrieval output folder."""
    import pyarrow.parquet as pq

    vecs = np.concatenate([np.load(e) for e in
                           sorted(glob.glob(os.path.join(out, "img_emb", "*.npy")))])
    meta = [pq.read_table(m) for m in sorted(glob.glob(os.path.join(out, "metadata", "*.parquet")))]
    paths = [p for t in meta for p in t["image_path"].to_pylist()]
    return {os.path.abspath(p): v for p, v in zip(paths, vecs, strict=True)}


def loupe_vectors(db: str) -> dict[str, np.ndarray]:
    """{path: vector} of the photos in a Loupe database."""
    from loupe.search.store import Store

    store = Store(db)
    column = next(iter(store.meta.encoders))
    _, table = store.read_vectors(column)
    return {p: np.asarray(v, np.float32) for p, v in
            zip(table["path"].to_pylist(), table[column].to_pylist(), strict=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--count", type=int, default=500, help="photos (500)")
    ap.add_argument("--photos", default=None, help="folder of JPEGs (default WORK/photos-N)")
    ap.add_argument("--work", default=DEFAULT_WORK, help=f"scratch folder ({DEFAULT_WORK})")
    ap.add_argument("--peer-venv", default=os.path.join(DEFAULT_WORK, "venv-clip-retrieval"),
                    help="clip-retrieval's own venv (made if missing)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="decode workers for both tools (one per core)")
    ap.add_argument("--peer-batch", type=int, nargs="+", default=[256, 32],
                    help="clip-retrieval batch sizes to try (its default 256, Loupe's 32)")
    ap.add_argument("--peer-workers", type=int, default=4,
                    help="also run clip-retrieval with this many workers (its default, 4)")
    ap.add_argument("--json-out", default=None, help="folder for the numbers as JSON")
    args = ap.parse_args(argv)

    work = os.path.abspath(args.work)
    folder = os.path.abspath(args.photos or os.path.join(work, f"photos-{args.count}"))
    photos = ensure_photos(folder, args.count, seed=0)[:args.count]
    if len(photos) < args.count or len(os.listdir(folder)) != args.count:
        raise SystemExit(f"{folder} must hold exactly the {args.count} photos both tools read")
    exe = ensure_peer_venv(os.path.abspath(args.peer_venv))
    env = bench_env(work)
    flags, label = model_args(work, False)
    prehash_weights(work, flags)
    weights = flags[flags.index("--pretrained") + 1]
    cores = os.cpu_count() or 1
    print(f"bench_peer: {machine_info()}")
    print(f"  {len(photos)} photos in {folder}; model: {label}; weights file {weights}")

    print("\n[1] Loupe: loupe index (fresh database)", flush=True)
    db = os.path.join(work, "db-peer-loupe")
    ours = index_run("loupe index", [folder], db, flags, env,
                     ["--workers", str(args.workers)])
    print_run(ours, cores)

    runs = []
    for b in args.peer_batch:
        for w in dict.fromkeys([args.workers, args.peer_workers]):
            print(f"\n[2] clip-retrieval inference, batch {b}, {w} preprocessing workers",
                  flush=True)
            o = peer_run(exe, folder, os.path.join(work, f"peer-out-{b}-{w}"), weights, b, w,
                         env)
            print(f"  {o['label']}: {o['embedded']} embedded, wall {o['wall_s']:.2f}s "
                  f"(warm-up {o['warmup_s']:.1f}s), {o['per_s_wall']:.2f} photos/s end to end, "
                  f"{o['per_s_no_warmup']:.2f} without the warm-up; peak RSS "
                  f"{mib(o['peak_rss'])}, CPU {o['cpu_s']:.1f}s  {o['load_note']}")
            runs.append(o)
    best = max(runs, key=lambda o: o["per_s_wall"])

    mine, theirs = loupe_vectors(db), peer_vectors(best["out"])
    common = sorted(set(mine) & set(theirs))
    cos = np.asarray([float(mine[p] @ theirs[p] / np.linalg.norm(mine[p])
                            / np.linalg.norm(theirs[p])) for p in common])
    ratio = ours["per_s_wall"] / best["per_s_wall"]
    fair = max(runs, key=lambda o: o["per_s_no_warmup"])
    ratio_no_warmup = ours["per_s_wall"] / fair["per_s_no_warmup"]
    print("\n[3] side by side (end to end, process start to exit)")
    print(f"  Loupe          {ours['per_s_wall']:8.2f} photos/s  ({ours['wall_s']:.1f}s, "
          f"{ours['embedded']} photos)")
    print(f"  clip-retrieval {best['per_s_wall']:8.2f} photos/s  ({best['wall_s']:.1f}s, "
          f"{best['embedded']} photos; its best run: {best['label']})")
    print(f"  ratio Loupe / clip-retrieval: {ratio:.2f}x")
    print(f"  without clip-retrieval's warm-up ({fair['label']}): "
          f"{fair['per_s_no_warmup']:.2f} photos/s, ratio {ratio_no_warmup:.2f}x")
    if len(cos):
        print(f"  same photos' vectors, Loupe vs clip-retrieval: {len(cos)} compared, cosine "
              f"mean {cos.mean():.4f}, min {cos.min():.4f}")
    write_json(args.json_out, "bench_peer.json", {
        "photos": len(photos), "loupe": ours, "clip_retrieval": runs, "ratio": ratio,
        "ratio_without_peer_warmup": ratio_no_warmup,
        "cosine_mean": float(cos.mean()) if len(cos) else None,
        "cosine_min": float(cos.min()) if len(cos) else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
