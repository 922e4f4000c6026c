"""Speed of explaining an archive: label vectors, tagging, duplicates.

1. **Label vectors**: a full-size ViT-B-32 (seeded random weights from a local file, the
   speed is the same) embeds the prompt ensembles of the shipped vocabularies
   (``loupe.search.explain.labels.label_vectors``; ImageNet-1k is 998 labels x 8 prompts): texts/s,
   cold (computed) and warm (read from the cache).
2. **Tagging**: ``loupe.search.explain.labels.shares`` +
   ``loupe.search.explain.tags.top_labels`` of ``--rows``
   stored vectors against ImageNet-1k's label vectors (what ``loupe index --tags``
   does after a run, minus the store): vectors/s.
3. **Duplicates** (``--no-dups`` skips it; needs LanceDB): ``loupe.search.explain.duplicates.
   find_duplicates`` on a real store of ``--rows`` synthetic photo rows, ``--copies`` of
   which have a near copy: seconds, and whether every planted pair was found.

Run::

    python bench/bench_explain.py [--device cuda] [--rows 100000] [--out DIR]

Prints numbers (and writes JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DEFAULT_WORK, vit_b32_weights, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.indexer.encoders import load_encoder  # noqa: E402
from loupe.search.explain.labels import (  # noqa: E402
    label_vectors,
    load_vocabulary,
    shares,
    top_labels,
    top_shares,
)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_labels(encoder, cache: str) -> dict:
    out = {}
    for name in ("everyday", "imagenet-1k", "artists"):
        vocab = load_vocabulary(name)
        n = len(vocab.labels) * len(vocab.templates)
        t0 = time.perf_counter()
        label_vectors(encoder, vocab, cache)
        _sync()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        label_vectors(encoder, vocab, cache)
        warm = time.perf_counter() - t0
        out[name] = {"texts": n, "cold_s": cold, "texts_per_s": n / cold, "warm_ms": warm * 1e3}
        print(f"label vectors {name:12s} {n:5d} texts: {cold:6.2f} s cold "
              f"({n / cold:7.0f} texts/s), {warm * 1e3:6.1f} ms from the cache")
    return out


def bench_tagging(encoder, cache: str, rows: int, seed: int) -> dict:
    vocab = load_vocabulary("imagenet-1k")
    lv = label_vectors(encoder, vocab, cache)
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(rows, lv.shape[1])).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0 = time.perf_counter()
    for start in range(0, rows, 8192):  # as loupe.search.explain.tags.update_tags does
        top_shares(shares(vecs[start:start + 8192], lv, encoder.logit_scale), 5)
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    for row in shares(vecs[:8192], lv, encoder.logit_scale):  # one picture at a time
        top_labels(row, vocab.labels, 5)
    one = 8192 / (time.perf_counter() - t0)
    print(f"tagging {rows} vectors x {len(vocab.labels)} labels: {dt:.2f} s "
          f"({rows / dt:,.0f} vectors/s; one row at a time: {one:,.0f}/s)")
    return {"rows": rows, "labels": len(vocab.labels), "seconds": dt, "per_s": rows / dt,
            "one_at_a_time_per_s": one}


def bench_duplicates(rows: int, copies: int, dim: int, seed: int) -> dict:
    from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
    from loupe.search.explain.duplicates import find_duplicates
    from loupe.search.store import Store

    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(rows, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    planted = rng.choice(rows // 2, size=copies, replace=False)
    twins = rows // 2 + np.arange(copies)
    noisy = vecs[planted] + 0.05 * rng.normal(size=(copies, dim)).astype(np.float32) / np.sqrt(dim)
    vecs[twins] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "db"), create=True)
        spec = EncoderSpec(backend="bench", model="synthetic", weights="none",
                           weights_id="synthetic", dim=dim,
                           preprocess=ImagePreprocess(size=(224, 224)))
        col = store.register_encoder(spec)
        t0 = time.perf_counter()
        for start in range(0, rows, 20000):
            store.upsert_items([{"id": f"{i:024x}", "path": f"/archive/{i:07d}.jpg",
                                 "kind": "photo", "fingerprint": f"fp{i}", "mtime_ns": 0,
                                 col: vecs[i].tolist()} for i in range(start,
                                                                       min(rows, start + 20000))])
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = find_duplicates(store, col, threshold=0.95)
        dt = time.perf_counter() - t0
    found = {frozenset(int(m.path[9:16]) for m in g.items) for g in report.near}
    hit = sum(frozenset((int(a), int(b))) in found for a, b in zip(planted, twins, strict=True))
    print(f"duplicates: {rows} rows ({dim}-d, written in {write_s:.1f} s): {dt:.2f} s, "
          f"{len(report.near)} groups, {hit}/{copies} planted pairs found")
    return {"rows": rows, "dim": dim, "seconds": dt, "groups": len(report.near),
            "planted": copies, "found": hit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=500)
    ap.add_argument("--no-dups", action="store_true")
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    encoder = load_encoder("ViT-B-32", vit_b32_weights(args.work, args.seed), args.device)
    print(f"ViT-B-32 (random weights) on {encoder.device}; logit scale {encoder.logit_scale:.1f}")
    result = {"device": encoder.device}
    with tempfile.TemporaryDirectory() as cache:
        result["labels"] = bench_labels(encoder, cache)
        result["tagging"] = bench_tagging(encoder, cache, args.rows, args.seed)
    if encoder.device.startswith("cuda"):  # the GPU path (fp16 autocast) vs the CPU's fp32
        cpu = load_encoder("ViT-B-32", vit_b32_weights(args.work, args.seed), "cpu")
        vocab = load_vocabulary("everyday")
        a, b = label_vectors(encoder, vocab), label_vectors(cpu, vocab)
        cos = float((a * b).sum(axis=1).min())
        same_top = float((np.argmax(a @ b.T, axis=1) == np.arange(len(a))).mean())
        print(f"GPU vs CPU label vectors (everyday): min cosine {cos:.6f}, "
              f"each label nearest its CPU self: {same_top:.3f}")
        result["gpu_vs_cpu"] = {"min_cosine": cos, "self_nearest": same_top}
    if not args.no_dups:
        result["duplicates"] = bench_duplicates(args.rows, args.copies, 512, args.seed)
    write_json(args.out, "explain", result)


if __name__ == "__main__":
    main()
