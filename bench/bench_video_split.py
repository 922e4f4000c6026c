"""One long video indexed with and without segment splitting (``--video-segment``).

A single long video used to be decoded by one worker from start to end while the other
workers idled. Now it is cut at keyframes into segments decoded at once and joined
exactly. This runs ``loupe index`` on one video (bench_media's 720p H.264 + AAC clip,
made once) with the tests' tiny open_clip model, so decoding is what is timed:

1. ``--video-segment 0`` (one worker for the whole video, the old way);
2. the default (120 s segments) and shorter segments;

and prints the run's seconds, video seconds per second and the ratio to (1), and checks
that every run stored the same frames (timestamps and shot numbers).

Run::

    source .venv/bin/activate
    python bench/bench_video_split.py                 # 10 minutes of video
    python bench/bench_video_split.py --minutes 30 --segments 120 60

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import os
import shutil

from _common import (
    DEFAULT_WORK,
    bench_env,
    loupe_index_cmd,
    machine_info,
    mib,
    model_args,
    prehash_weights,
    run_monitored,
)
from bench_media import make_video

from loupe.search.store import Store


def frames_of(db: str) -> list[tuple[float, int]]:
    """(timestamp, shot) of every stored frame, in time order."""
    store = Store(db)
    rows = store.item_rows(["timestamp", "shot"], "kind = 'frame'").to_pylist()
    return sorted((r["timestamp"], r["shot"]) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--segments", type=float, nargs="+", default=[120.0, 60.0],
                    help="segment lengths to compare with one pass (seconds)")
    args = ap.parse_args()
    video = make_video(os.path.join(args.work, "media", f"video-720p-{args.minutes:g}min.mp4"),
                       args.minutes)
    print(machine_info())
    print(f"video: {video} ({os.path.getsize(video) / 2**20:.0f} MiB, "
          f"{args.minutes:g} min, 1280x720 at 25 fps); {args.workers} workers")
    flags, label = model_args(args.work, tiny=True)
    prehash_weights(args.work, flags)
    print(f"model: {label}")
    seconds = args.minutes * 60
    base = None
    want = None
    for seg in [0.0, *args.segments]:
        db = os.path.join(args.work, "db-video-split")
        shutil.rmtree(db, ignore_errors=True)
        cmd = loupe_index_cmd([video], db, flags, ["--workers", str(args.workers),
                                                   "--video-segment", f"{seg:g}"])
        r = run_monitored(cmd, env=bench_env(args.work))
        rep = r.json()
        got = frames_of(db)
        if want is None:
            want = got
        same = "same frames" if got == want else "FRAMES DIFFER from one pass"
        run_s = rep["seconds"]
        base = base or run_s
        what = "one pass" if not seg else f"{seg:g} s segments"
        print(f"{what:>16}: {rep['frames']} frames in {run_s:.1f} s (run), {r.wall_s:.1f} s "
              f"(end to end); {seconds / run_s:.1f} video s/s; {base / run_s:.2f}x one pass; "
              f"{same}; CPU {r.cpu_s:.0f} s; peak RSS {mib(r.peak_rss)}; {r.load_note}")


if __name__ == "__main__":
    main()
