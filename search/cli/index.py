"""``loupe index``: embed new and changed files, keep every model of the index up to date."""

from __future__ import annotations

import argparse
import json
import os
import sys

from loupe.indexer import LoupeError
from loupe.search.cli.common import (
    EXIT_OK,
    add_db,
    add_encoder,
    db_dir,
    existing_store,
    shown,
)

NAME = "index"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe index`` to the subparsers (defaults read from IndexOptions)."""
    from loupe.indexer import DEFAULT_MODEL, DEFAULT_PRETRAINED, IndexOptions

    d = IndexOptions()
    p = sub.add_parser(NAME, help="index (or re-index) folders and files",
                       description="Embed new and changed photos, video frames and sounds "
                                   "under PATH...; moved or copied files reuse their vectors; "
                                   "vanished ones are removed. Every model of the index is "
                                   "kept up to date.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    add_db(p)
    p.add_argument("--tables-uri", default=None, metavar="URI",
                   help="a new index keeps its LanceDB tables (the vectors and their "
                        "provenance) here instead of in --db: s3://BUCKET/PATH, gs://..., "
                        "az://... (credentials from the environment, as LanceDB reads "
                        "them); --db keeps meta.json, the FAISS index and caches")
    add_encoder(p, for_query=False)
    p.add_argument("--add", action="store_true",
                   help="add --model(s) the index does not hold yet (their vectors are "
                        "computed for every file already indexed)")
    p.set_defaults(default_model=DEFAULT_MODEL, default_pretrained=DEFAULT_PRETRAINED)
    p.add_argument("--every", type=float, default=d.frame_interval, metavar="SECONDS",
                   help=f"video: one frame every SECONDS ({d.frame_interval}; 1/60 = every "
                        "frame of 60 fps video), plus one at each shot change")
    p.add_argument("--shot-threshold", type=float, default=d.shot_threshold, metavar="D",
                   help=f"video: colour-histogram distance counted as a shot change "
                        f"({d.shot_threshold}; 0 turns shot detection off)")
    p.add_argument("--video-segment", type=float, default=d.video_segment, metavar="SECONDS",
                   help=f"video: decode videos longer than 2 x SECONDS in segments of about "
                        f"SECONDS on all workers at once, joined exactly "
                        f"({d.video_segment:g}; 0: one worker per video)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"items per model call ({d.batch_size})")
    p.add_argument("--workers", type=int, default=d.workers,
                   help=f"decode processes (default: one per core = {d.workers}; "
                        "0 decodes in-process)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help=f"refuse images with more pixels than this (default {d.max_pixels:,})")
    p.add_argument("--draft", type=float, default=d.draft_factor, metavar="FACTOR",
                   help=f"JPEG draft decode down to FACTOR x model input ({d.draft_factor}; "
                        "1.0 is fastest; 0 decodes at full size)")
    p.add_argument("--commit-rows", type=int, default=d.commit_rows, metavar="N",
                   help=f"commit to the store every N rows ({d.commit_rows}; also every "
                        f"{d.commit_seconds:g} s)")
    p.add_argument("--retry-failed", action="store_true",
                   help="look again at files skipped as bad in earlier runs")
    p.add_argument("--tags", nargs="?", const="", default=None, metavar="VOCABULARY",
                   help="tag every photo and frame with zero-shot labels (stored; search "
                        "with --where tag=LABEL): everyday (the default), imagenet-1k, or a "
                        "label file. Later runs keep the tags up to date")
    p.add_argument("--no-tags", action="store_true", help="stop tagging and drop the tags")
    p.add_argument("--ocr", action="store_true",
                   help="read the text shown in every photo and video frame (PP-OCRv4, "
                        "models in the rapidocr-onnxruntime wheel; search with "
                        "ocr:\"WORDS\"). Later runs keep it up to date")
    p.add_argument("--no-ocr", action="store_true",
                   help="stop reading text and drop what was read")
    p.add_argument("--ocr-min-score", type=float, default=None, metavar="X",
                   help="with --ocr: lines read with less confidence than X are kept but "
                        "not searched (0.5)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and embed on a Ray cluster (Ray Data; rows written as Lance "
                        "fragments by lance-ray): ADDRESS of the cluster (auto, "
                        "ray://HOST:10001), or none for a Ray on this machine")
    p.add_argument("--prune", action="store_true",
                   help="forget the files under a root that is missing or empty (without "
                        "it their rows are kept: an unmounted drive comes back)")
    p.add_argument("--no-wait", action="store_true",
                   help="when another run is writing this index, exit 1 at once instead of "
                        "waiting for it")
    p.add_argument("--watch", action="store_true",
                   help="after the run, keep the folders indexed until Ctrl-C: new, changed, "
                        "moved and deleted files are indexed once they have settled "
                        "(file-system events; polling on network mounts)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="with --watch: look for changes every SECONDS instead of waiting for "
                        "file-system events (for mounts that send none; NFS, SMB and FUSE "
                        "mounts are polled every 30 s without it)")
    p.add_argument("--settle", type=float, default=None, metavar="SECONDS",
                   help="with --watch: a file is indexed once unchanged for SECONDS (2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the run's report as JSON (with --watch: one JSON line per "
                        "batch after it)")


def usage_error(args: argparse.Namespace) -> str | None:
    """--poll and --settle only mean something with --watch."""
    if not args.watch and (args.poll is not None or args.settle is not None):
        return "--poll and --settle go with --watch"
    return None


def run(args: argparse.Namespace) -> int:
    """Index ``args.paths`` and print the run's report."""
    from loupe.indexer import IndexOptions, encoders_for_run, index_paths
    from loupe.search import Store
    from loupe.search.explain import set_tagging

    if args.batch_size < 1:
        raise LoupeError("--batch-size must be at least 1")
    if args.workers < 0:
        raise LoupeError("--workers must be 0 or more")
    db = db_dir(args)
    existing = existing_store(db)
    # A root that is gone but has rows in the index (an unmounted drive) is the run's to
    # keep or prune; one the index never knew is a typo.
    unknown = [p for p in args.paths if not os.path.exists(p)
               and (existing is None or not existing.holds_paths_under(os.path.abspath(p)))]
    if unknown:
        raise LoupeError(f"no such file or folder: {', '.join(unknown)}")
    if args.watch:
        _check_watch(args)
    # Load the model before creating anything: a failed start leaves no empty index.
    if not args.every > 0:
        raise LoupeError("--every must be a positive number of seconds")
    if args.tags is not None and args.no_tags:
        raise LoupeError("--tags and --no-tags contradict each other")
    if args.ocr and args.no_ocr:
        raise LoupeError("--ocr and --no-ocr contradict each other")
    if args.ocr_min_score is not None and not (args.ocr and 0 <= args.ocr_min_score < 1):
        raise LoupeError("--ocr-min-score goes with --ocr and must be in [0, 1)")
    if args.ocr:
        from loupe.indexer.ocr import load_reader

        load_reader()  # the OCR models load before anything is written
    if args.tags:
        from loupe.search.explain import load_vocabulary

        load_vocabulary(args.tags)  # a bad label file fails before anything is written
    encoders = encoders_for_run(
        existing.meta.encoders.values() if existing is not None else (),
        args.model or (), args.pretrained or (), add=args.add, device=args.device,
        precision=args.precision, default_model=args.default_model,
        default_pretrained=args.default_pretrained)
    if existing is not None and args.tables_uri and args.tables_uri != existing.tables_uri:
        raise LoupeError(f"the index at {db} keeps its tables at {existing.tables_uri}; "
                         "--tables-uri only applies to a new index")
    store = existing or Store(db, create=True, tables_uri=args.tables_uri)
    opts = IndexOptions(batch_size=args.batch_size, workers=args.workers,
                        max_pixels=args.max_pixels or IndexOptions.max_pixels,
                        draft_factor=args.draft or None, retry_failed=args.retry_failed,
                        frame_interval=args.every, video_segment=args.video_segment or None,
                        shot_threshold=args.shot_threshold or None,
                        commit_rows=max(1, args.commit_rows), ray=args.ray,
                        precision=args.precision, prune=args.prune, wait=not args.no_wait,
                        progress=not args.quiet and sys.stderr.isatty())
    # Watching starts before the run: what changes while it runs is indexed after it.
    watcher = _start_watching(args, db, encoders, opts) if args.watch else None
    try:
        with store.writing("loupe index", wait=opts.wait):
            if args.tags is not None or args.no_tags:
                set_tagging(store, args.tags, encoders)
            if args.ocr or args.no_ocr:
                from loupe.search.text import set_ocr

                set_ocr(store, args.ocr, args.ocr_min_score)
            report = index_paths(args.paths, store, encoders, opts)
        _print_report(args, store, report)
        return _keep_watching(watcher) if watcher is not None else EXIT_OK
    finally:
        if watcher is not None:
            watcher.stop()


def _print_report(args: argparse.Namespace, store, report) -> None:
    for root in report.kept_roots:
        print(f"loupe: {shown(root)} is missing or empty: the rows of its files are kept "
              "(a drive not mounted? --prune forgets them)", file=sys.stderr)
    for root in report.pruned_roots:
        print(f"loupe: {shown(root)} is missing or empty: its files were forgotten (--prune)",
              file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2), flush=True)
        return
    rate = report.embedded / report.seconds if report.seconds else 0.0
    print(f"indexed into {store.dir} in {report.seconds:.1f}s: {report.files_seen} files "
          f"seen, {report.unchanged} unchanged, {report.embedded} items embedded "
          f"({rate:.1f}/s), {report.reused} reused, {report.removed} removed, "
          f"{report.skipped} skipped, {report.unsupported} not indexed by these models")
    if report.recaptured:
        print(f"read what the camera knew for {report.recaptured:,} files indexed before "
              "(no re-embedding)")
    if report.videos or report.audio_files:
        print(f"  {report.photos} photos, {report.videos} videos ({report.frames} frames), "
              f"{report.audio_files} sound files, {report.sound_windows} sound windows")
    if report.texts_read or report.texts_shared:
        print(f"  read text in {report.texts_read} pictures ({report.texts_with_text} with "
              f"text, {report.text_lines} lines; {report.texts_shared} frames shared the "
              "reading of an unchanged frame before them)")
    if report.partial:
        print(f"  {report.partial} files indexed only in part (damaged)")
    if report.skipped or report.partial:
        print("see `loupe status` for the skipped files and why")
    sys.stdout.flush()


def _check_watch(args: argparse.Namespace) -> None:
    if args.poll is not None and not args.poll > 0:
        raise LoupeError("--poll must be a positive number of seconds")
    if args.settle is not None and not args.settle >= 0:
        raise LoupeError("--settle must be 0 seconds or more")
    files = [p for p in args.paths if os.path.isfile(p)]
    if files:
        raise LoupeError(f"--watch watches folders: {shown(files[0])} is a file")


def _start_watching(args: argparse.Namespace, db: str, encoders, opts):
    """The watcher, printing one line per batch that changed something (stdout)."""
    from dataclasses import asdict

    from loupe.indexer import start_watch

    printed = {"finished": 0.0}

    def on_state(state) -> None:
        last = state.last_run
        if last is not None and last.finished > printed["finished"]:
            printed["finished"] = last.finished
            if last.anything:
                line = json.dumps(asdict(last)) if args.json else last.line()
                print(line, flush=True)

    settle = {} if args.settle is None else {"settle": args.settle}
    return start_watch(db, args.paths, poll=args.poll, on_state=on_state, encoders=encoders,
                       options=opts, initial_scan=False, **settle)


def _keep_watching(watcher) -> int:
    """Watch until Ctrl-C; then a clean stop (a batch being written is finished)."""
    import time

    roots = watcher.state().roots
    how = ", ".join(f"{shown(r.path)} ({r.mode})" for r in roots)
    print(f"loupe: watching {how}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while watcher.alive:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    watcher.stop()
    s = watcher.state()
    print(f"loupe: stopped watching ({s.runs} batch{'es' if s.runs != 1 else ''} indexed)",
          file=sys.stderr, flush=True)
    return EXIT_OK
