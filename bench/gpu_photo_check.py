"""GPU check of photo indexing speed and FAISS on the GPU, for a lent GPU machine.

The issue's targets: ViT-B-32 at 10,000 photos/s end to end from JPEG files on one H100,
ViT-L-14's rate, and search QPS at 10M vectors on the GPU. LanceDB's wheel is too big
to carry to that machine, so this drives the library functions a run uses, minus the
store:

1. camera-like JPEGs made from the corpus photos (``bench/make_photos.py``);
2. per model (seeded random weights saved to a file, loaded through Loupe's open_clip
   loader): ``embed_pixels`` images/s alone (uint8 batches from host memory), decode
   alone (``decode_files`` on every core: JPEG draft decode + resize), and end to end:
   the decode pool feeding batches to the GPU, as ``loupe index`` does;
3. FAISS (only with faiss-gpu): exact and IVF search of ``--vectors`` random 512-d
   vectors on the GPU, queries/s at a batch of 1,024 and for single queries.

Run::

    python bench/gpu_photo_check.py --corpus DIR [--photos 4000] [--out DIR]
    python bench/gpu_photo_check.py --corpus ../shared/corpus/photos --device cpu \\
        --photos 40 --models ViT-B-32 --vectors 0        # a quick run on a CPU

Prints numbers (and writes them as JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_json
from make_photos import make_photos

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.indexer.decode.pool import decode_files  # noqa: E402
from loupe.indexer.decode.results import DecodeSettings  # noqa: E402
from loupe.indexer.scan import FileEntry  # noqa: E402


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _entries(folder: str) -> list[FileEntry]:
    out = []
    for name in sorted(os.listdir(folder)):
        st = os.stat(os.path.join(folder, name))
        out.append(FileEntry(os.path.join(folder, name), st.st_size, st.st_mtime_ns))
    return out


def embed_only(enc, batch: int, repeats: int) -> float:
    x = np.random.default_rng(0).integers(0, 256, (batch, *enc.spec.preprocess.size, 3),
                                          dtype=np.uint8)
    enc.embed_pixels(x)
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        enc.embed_pixels(x)
    _sync()
    return batch * repeats / (time.perf_counter() - t0)


def through_pool(todo: list[FileEntry], enc, workers: int, batch: int, embed: bool) -> float:
    """Photos/s through the decode pool, embedding batches as they fill when ``embed``."""
    settings = DecodeSettings((enc.spec.preprocess,), spill_dir=tempfile.mkdtemp())
    pending: list[np.ndarray] = []
    done = 0
    t0 = time.perf_counter()
    for r in decode_files(todo, settings, frozenset(), workers, workers * 4 + batch):
        assert r.code is None, r.reason
        pending.append(r.pixels[0])
        if len(pending) == batch:
            if embed:
                enc.embed_pixels(np.stack(pending))
            done += len(pending)
            pending = []
    if pending and embed:
        enc.embed_pixels(np.stack(pending))
    _sync()
    return (done + len(pending)) / (time.perf_counter() - t0)


def faiss_gpu(n: int, dim: int, res: dict) -> None:
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        print("faiss: no GPU build (faiss-gpu) or no GPU: skipped")
        res["faiss_gpu"] = None
        return
    rng = np.random.default_rng(0)
    xb = np.empty((n, dim), np.float32)
    for i in range(0, n, 1_000_000):
        block = rng.standard_normal((min(1_000_000, n - i), dim), dtype=np.float32)
        xb[i:i + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    q = xb[rng.choice(n, 1024, replace=False)] + 0.05
    for factory, nprobe in (("Flat", 0), ("IVF4096,Flat", 64)):
        t0 = time.perf_counter()
        cpu = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if nprobe:
            cpu.train(xb[rng.choice(n, 200_000, replace=False)])
        gpu = faiss.index_cpu_to_all_gpus(cpu)
        gpu.add(xb)
        if nprobe:
            faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", nprobe)
        build_s = time.perf_counter() - t0
        gpu.search(q[:8], 10)
        t0 = time.perf_counter()
        gpu.search(q, 10)
        batch_qps = len(q) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for row in q[:100]:
            gpu.search(row[None, :], 10)
        single_ms = (time.perf_counter() - t0) / 100 * 1000
        res[f"faiss_gpu_{factory}"] = {"vectors": n, "build_s": build_s,
                                       "batch_1024_qps": batch_qps, "single_query_ms": single_ms}
        print(f"faiss GPU {factory} ({n:,} x {dim}): built in {build_s:.1f} s; "
              f"{batch_qps:,.0f} queries/s at batch 1,024; {single_ms:.2f} ms per single query")
        del gpu, cpu


def main() -> None:
    import open_clip
    import torch

    from loupe.indexer.encoders.openclip import load_open_clip

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="folder of source photos")
    ap.add_argument("--photos", type=int, default=4000)
    ap.add_argument("--min-mp", type=float, default=3.0)
    ap.add_argument("--max-mp", type=float, default=12.0)
    ap.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14"])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--vectors", type=int, default=10_000_000, help="FAISS GPU (0: skip)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="loupe-gpu-photos-"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(args.work, "cache"))
    res: dict = {"device": args.device, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                 "cpu_cores": os.cpu_count(), "workers": args.workers}
    folder = os.path.join(args.work, "photos")
    stats = make_photos(args.photos, folder, corpus=args.corpus, min_mp=args.min_mp,
                        max_mp=args.max_mp, verbose=False)
    res["photos"] = stats
    print(f"{args.photos} photos, {stats['mean_mp']:.1f} MP and {stats['mean_mb']:.2f} MB "
          f"on average, made in {stats['seconds']:.0f} s")
    todo = _entries(folder)
    for model in args.models:
        torch.manual_seed(0)
        w = os.path.join(args.work, f"{model}.pt")
        torch.save(open_clip.create_model(model, pretrained=None).state_dict(), w)
        enc = load_open_clip(model, w, args.device)
        r = {"embed_only": embed_only(enc, args.batch, args.repeats),
             "decode_only": through_pool(todo, enc, args.workers, args.batch, embed=False),
             "end_to_end": through_pool(todo, enc, args.workers, args.batch, embed=True)}
        res[model] = r
        print(f"{model} on {args.device}, batch {args.batch}, {args.workers} decode workers: "
              f"embed alone {r['embed_only']:,.0f} images/s; decode alone "
              f"{r['decode_only']:,.0f} photos/s; end to end {r['end_to_end']:,.0f} photos/s")
        del enc
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.vectors:
        faiss_gpu(args.vectors, 512, res)
    write_json(args.out, "gpu_photo_check.json", res)


if __name__ == "__main__":
    main()
