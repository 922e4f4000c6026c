"""GPU check of the video / sound paths: CUDA embedding of frames and sound windows.

Meant for a lent GPU machine, where LanceDB is not installed (its wheel is too big to
carry), so this drives the same library functions the pipeline uses, minus the store:

1. a full-size ViT-B-32 (seeded random weights saved to a file, loaded through Loupe's
   open_clip loader on ``cuda``): ``embed_pixels`` images/s at batch 256 (fp16
   autocast, host uint8 -> GPU included);
2. a video decoded by the worker code
   (``loupe.indexer.decode.worker.process_file_with``: PyAV decode
   of every frame, shot detection, 1 frame/s resized to 224, spilled to disk): decode
   seconds, then all its frames embedded on the GPU from the spill: frames/s;
3. a full-size imagebind_huge (random weights saved to a file, loaded through
   ``load_imagebind`` on ``cuda``): images/s and sound windows/s at batch 64, text/s,
   and the sound file's windows decoded + fbank'd on the CPU (``audio_features``).

Run::

    python bench/gpu_media_check.py --video V.mp4 --audio A.mp3 [--out DIR]

Prints numbers (and writes them as JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loupe.indexer.decode.results import DecodeSettings  # noqa: E402
from loupe.indexer.decode.worker import process_file_with  # noqa: E402
from loupe.indexer.encoders.spec import AudioPreprocess  # noqa: E402
from loupe.indexer.media.audio_features import audio_features  # noqa: E402


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn, n_items: int, repeats: int) -> float:
    """Items per second of ``fn`` (after one warm-up call)."""
    fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync()
    return n_items * repeats / (time.perf_counter() - t0)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-imagebind", action="store_true")
    ap.add_argument("--batch", type=int, default=256, help="ViT-B-32 batch (256)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    res: dict = {"device": args.device, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                 "cpu_cores": os.cpu_count()}
    work = tempfile.mkdtemp(prefix="loupe-gpu-")
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(work, "cache"))
    rng = np.random.default_rng(0)

    # 1. ViT-B-32 on the GPU.
    import open_clip

    from loupe.indexer.encoders.openclip import load_open_clip

    torch.manual_seed(0)
    w = os.path.join(work, "vit-b-32.pt")
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), w)
    clip = load_open_clip("ViT-B-32", w, args.device)
    batch = rng.integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8)
    res["vit_b32_batch"] = args.batch
    res["vit_b32_images_per_s"] = rate(lambda: clip.embed_pixels(batch), args.batch,
                                       args.repeats)
    print(f"ViT-B-32 embed_pixels, batch {args.batch}: {res['vit_b32_images_per_s']:.0f} "
          "images/s")
    if args.device != "cpu":  # the GPU path (fp16, normalised on the GPU) against the CPU's
        cpu = load_open_clip("ViT-B-32", w, "cpu")
        cos = (cpu.embed_pixels(batch[:8]) * clip.embed_pixels(batch[:8])).sum(axis=1)
        res["vit_b32_gpu_vs_cpu_min_cos"] = float(cos.min())
        print(f"ViT-B-32 GPU vs CPU vectors: min cos {cos.min():.6f}")
        del cpu

    # 2. A video through the worker's decode, then its frames on the GPU.
    spill = os.path.join(work, "spill")
    os.makedirs(spill)
    settings = DecodeSettings((clip.preprocess,), None, spill_dir=spill)
    st = os.stat(args.video)
    t0 = time.perf_counter()
    r = process_file_with(args.video, st.st_size, st.st_mtime_ns, settings)
    decode_s = time.perf_counter() - t0
    assert r.code is None, r.reason
    frames = r.spill.arrays()["img0"]
    t0 = time.perf_counter()
    for i in range(0, len(frames), args.batch):
        clip.embed_pixels(np.array(frames[i:i + args.batch]))
    _sync()
    embed_s = time.perf_counter() - t0
    res.update(video_duration_s=r.duration, video_frames_sampled=len(frames),
               video_decode_s=decode_s, video_embed_s=embed_s,
               video_decode_x_realtime=(r.duration or 0) / decode_s,
               video_embed_frames_per_s=len(frames) / embed_s)
    print(f"video {r.duration:.0f} s: decode + shot detection + sampling {decode_s:.1f} s "
          f"({res['video_decode_x_realtime']:.0f}x real time, one process), "
          f"{len(frames)} frames embedded in {embed_s:.2f} s "
          f"({res['video_embed_frames_per_s']:.0f} frames/s)")
    r.spill.remove()

    # 3. imagebind_huge on the GPU.
    t0 = time.perf_counter()
    feats, silent = audio_features(args.audio, AudioPreprocess())
    res["audio_windows"] = len(feats)
    res["audio_decode_fbank_s"] = time.perf_counter() - t0
    print(f"sound: {len(feats)} windows decoded + fbank in {res['audio_decode_fbank_s']:.1f} s "
          f"({len(feats) * 2 / res['audio_decode_fbank_s']:.0f} audio s/s, one process)")
    if not args.skip_imagebind:
        from loupe.indexer.encoders.imagebind import import_imagebind_model, load_imagebind

        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = import_imagebind_model().imagebind_huge(pretrained=False)
        ckpt = os.path.join(work, "imagebind_huge.pth")
        torch.save(model.state_dict(), ckpt)
        del model
        res["imagebind_make_random_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ib = load_imagebind("imagebind_huge", ckpt, args.device)
        res["imagebind_load_s"] = time.perf_counter() - t0
        px = np.resize(batch, (64, 224, 224, 3))
        if args.device != "cpu":
            ib_cpu = load_imagebind("imagebind_huge", ckpt, "cpu")
            for name, fn, x in (("images", "embed_pixels", px[:4]), ("audio", "embed_audio",
                                                                     feats[:4])):
                cos = (getattr(ib_cpu, fn)(x) * getattr(ib, fn)(x)).sum(axis=1)
                res[f"imagebind_gpu_vs_cpu_{name}_min_cos"] = float(cos.min())
                print(f"imagebind_huge GPU vs CPU {name}: min cos {cos.min():.6f}")
            del ib_cpu
        res["imagebind_images_per_s_b64"] = rate(lambda: ib.embed_pixels(px), 64, 5)
        fb = np.ascontiguousarray(feats[:64]) if len(feats) >= 64 else np.repeat(
            feats, -(-64 // len(feats)), axis=0)[:64]
        res["imagebind_audio_windows_per_s_b64"] = rate(lambda: ib.embed_audio(fb), 64, 5)
        texts = [f"a photo of thing number {i}" for i in range(64)]
        res["imagebind_texts_per_s_b64"] = rate(lambda: ib.embed_texts(texts), 64, 5)
        t0 = time.perf_counter()
        for i in range(0, len(feats), 64):
            ib.embed_audio(feats[i:i + 64])
        _sync()
        res["imagebind_audio_file_embed_s"] = time.perf_counter() - t0
        res["gpu_peak_mem_gib"] = (torch.cuda.max_memory_allocated() / 2**30
                                   if torch.cuda.is_available() else None)
        print(f"imagebind_huge: load {res['imagebind_load_s']:.1f} s; "
              f"{res['imagebind_images_per_s_b64']:.0f} images/s, "
              f"{res['imagebind_audio_windows_per_s_b64']:.0f} sound windows/s, "
              f"{res['imagebind_texts_per_s_b64']:.0f} texts/s (batch 64); the sound file's "
              f"{len(feats)} windows in {res['imagebind_audio_file_embed_s']:.2f} s")
    print(json.dumps(res, indent=2))
    write_json(args.out, "gpu_media_check.json", res)


if __name__ == "__main__":
    main()
