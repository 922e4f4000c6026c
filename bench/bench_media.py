"""Video and sound indexing throughput and memory, through the real CLI.

Makes (once, cached in the work folder) a 10-minute 1280x720 H.264 video at 25 fps with
an AAC soundtrack (a moving picture with a hard cut every 30 s; a tone that changes every
30 s) and a 10-minute 44.1 kHz stereo MP3, then indexes each into a fresh database in
its own ``loupe index`` subprocess, sampling the memory of the whole process tree:

1. the video with the tests' tiny open_clip model (decode-bound: every one of the 15,000
   frames is decoded for shot detection, 1 per second is embedded): sampled frames/s,
   video seconds/s, peak memory;
2. the same with a full-size ViT-B-32 (seeded random weights): frames/s;
3. the MP3 with a tiny ImageBind (decode + fbank bound): audio seconds/s, peak memory;
4. the video with tiny open_clip + tiny ImageBind together (frames and soundtrack).

``--full-imagebind`` adds the MP3 with a full-size imagebind_huge (random weights, about
4.8 GB of RAM and several minutes on 2 cores).

Run::

    source .venv/bin/activate
    python bench/bench_media.py
    python bench/bench_media.py --minutes 2 --skip-full     # quicker

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np
from _common import (
    DEFAULT_WORK,
    REPO,
    bench_env,
    loupe_index_cmd,
    machine_info,
    mib,
    model_args,
    prehash_weights,
    run_monitored,
)

FPS = 25
SIZE = (1280, 720)


def make_video(path: str, minutes: float) -> str:
    """A 720p H.264 + AAC video: a drifting gradient, a new colour scheme every 30 s."""
    if os.path.exists(path):
        return path
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.mp4"
    w, h = SIZE
    seconds = minutes * 60
    x = np.linspace(0, 2, 2 * w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    scenes: dict[int, np.ndarray] = {}
    with av.open(tmp, "w") as c:
        v = c.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "28"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=44100, layout="stereo")
        sample = 0
        rate = 44100
        for i in range(int(seconds * FPS)):
            t = i / FPS
            scene = int(t // 30)
            if scene not in scenes:  # a gradient twice as wide as the frame, panned over
                scenes.clear()
                hue = np.array([(scene * 0.37) % 1, (scene * 0.61) % 1, (scene * 0.83) % 1])
                scenes[scene] = (255 * np.clip(0.5 * (x % 1) * hue + 0.5 * y * (1 - hue),
                                               0, 1)).astype(np.uint8)
            off = int((t % 30) / 30 * w)
            img = np.ascontiguousarray(scenes[scene][:, off:off + w])
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for p in v.encode(frame):
                c.mux(p)
            # one video frame's worth of sound
            n = round((i + 1) * rate / FPS) - sample
            tt = (sample + np.arange(n)) / rate
            tone = 0.3 * np.sin(2 * np.pi * (220 * (1 + scene % 5)) * tt)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]).astype(np.float32),
                                            format="fltp", layout="stereo")
            af.sample_rate = rate
            af.pts = sample
            sample += n
            for p in a.encode(af):
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)
    os.replace(tmp, path)
    return path


def make_mp3(path: str, minutes: float) -> str:
    """A 44.1 kHz stereo MP3 of tones and noise, changing every 10 s."""
    if os.path.exists(path):
        return path
    import av

    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.mp3"
    rate = 44100
    rng = np.random.default_rng(0)
    with av.open(tmp, "w") as c:
        a = c.add_stream("libmp3lame", rate=rate, layout="stereo")
        block = rate  # 1 s per frame handed to the encoder
        for i in range(int(minutes * 60)):
            tt = (i * block + np.arange(block)) / rate
            f = 110 * (1 + (i // 10) % 7)
            sig = 0.3 * np.sin(2 * np.pi * f * tt) + 0.05 * rng.standard_normal(block)
            af = av.AudioFrame.from_ndarray(np.stack([sig, sig]).astype(np.float32),
                                            format="fltp", layout="stereo")
            af.sample_rate = rate
            af.pts = i * block
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    os.replace(tmp, path)
    return path


def tiny_imagebind_dir(work: str) -> str:
    path = os.path.join(work, "models", "tiny-imagebind-seed0")
    if not os.path.exists(os.path.join(path, "imagebind_config.json")):
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.tiny_models import make_tiny_imagebind_dir

        make_tiny_imagebind_dir(path, seed=0)
    return path


def huge_imagebind_weights(work: str) -> str:
    path = os.path.join(work, "models", "imagebind_huge-random-seed0.pth")
    if not os.path.exists(path):
        import torch

        from loupe.indexer.encoders.imagebind import import_imagebind_model

        torch.manual_seed(0)
        model = import_imagebind_model().imagebind_huge(pretrained=False)
        torch.save(model.state_dict(), path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def run(label: str, media: str, media_seconds: float, flags: list[str], work: str,
        workers: int) -> None:
    db = os.path.join(work, "db-media")
    shutil.rmtree(db, ignore_errors=True)
    cmd = loupe_index_cmd([media], db, flags, ["--workers", str(workers)])
    r = run_monitored(cmd, env=bench_env(work))
    rep = r.json()
    secs = rep["seconds"]
    items = rep["frames"] + rep["sound_windows"]
    print(f"\n{label}")
    print(f"  {rep['frames']} frames, {rep['sound_windows']} sound windows in {secs:.1f} s "
          f"(run) / {r.wall_s:.1f} s (process, model load included)")
    if rep["frames"]:
        print(f"  frames/s: {rep['frames'] / secs:.1f} (run), {rep['frames'] / r.wall_s:.1f} "
              f"(end to end); video seconds/s: {media_seconds / secs:.1f}")
    if rep["sound_windows"]:
        print(f"  audio seconds/s: {media_seconds / secs:.1f} (run), "
              f"{media_seconds / r.wall_s:.1f} (end to end)")
    print(f"  items/s: {items / secs:.1f}; CPU {r.cpu_s:.0f} s; peak memory of the process "
          f"tree: RSS {mib(r.peak_rss)}, PSS {mib(r.peak_pss)} ({r.peak_procs} processes, "
          f"{r.method}); {r.load_note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-full", action="store_true", help="skip the ViT-B-32 video run")
    ap.add_argument("--full-imagebind", action="store_true",
                    help="also the MP3 with a full-size imagebind_huge (slow, ~5 GB RAM)")
    args = ap.parse_args()
    work = args.work
    tag = f"{args.minutes:g}min"
    t0 = time.perf_counter()
    video = make_video(os.path.join(work, "media", f"video-720p-{tag}.mp4"), args.minutes)
    mp3 = make_mp3(os.path.join(work, "media", f"audio-{tag}.mp3"), args.minutes)
    print(f"media ready in {time.perf_counter() - t0:.0f} s: {video} "
          f"({os.path.getsize(video) / 2**20:.0f} MiB), {mp3} "
          f"({os.path.getsize(mp3) / 2**20:.1f} MiB)")
    print(machine_info())
    seconds = args.minutes * 60
    tiny_flags, tiny_label = model_args(work, tiny=True)
    prehash_weights(work, tiny_flags)
    ib = tiny_imagebind_dir(work)
    run(f"video, {tiny_label}", video, seconds, tiny_flags, work, args.workers)
    if not args.skip_full:
        full_flags, full_label = model_args(work, tiny=False)
        prehash_weights(work, full_flags)
        run(f"video, {full_label}", video, seconds, full_flags, work, args.workers)
    run("mp3, tiny ImageBind (tests/tiny_models.py)", mp3, seconds, ["--model", ib], work,
        args.workers)
    run(f"video, {tiny_label} + tiny ImageBind (frames + soundtrack)", video, seconds,
        tiny_flags + ["--model", ib], work, args.workers)
    if args.full_imagebind:
        w = huge_imagebind_weights(work)
        run("mp3, imagebind_huge (random weights, full size)", mp3, seconds,
            ["--model", "imagebind_huge", "--pretrained", w], work, args.workers)


if __name__ == "__main__":
    main()
