"""The ``loupe`` command: index, search, status."""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
import time
from collections.abc import Sequence

from loupe.indexer.errors import LoupeError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="DIR", default=None,
                   help="index directory (default: $LOUPE_DB, else the per-user data dir)")


def _add_encoder(p: argparse.ArgumentParser, for_query: bool) -> None:
    models = ("open_clip model name (ViT-B-32, ...), hf-hub:ORG/REPO, imagebind_huge, or a "
              "local folder with open_clip_config.json or imagebind_config.json + weights")
    if for_query:
        p.add_argument("--model", default=None,
                       help=f"{models} (default: the index's first model that embeds every "
                            "term of the query)")
        p.add_argument("--pretrained", default=None,
                       help="pretrained tag or local weight file of --model")
    else:
        p.add_argument("--model", action="append", default=None,
                       help=f"{models}; repeat for several models, each its own vector "
                            "column (default: the index's models, else ViT-B-32)")
        p.add_argument("--pretrained", action="append", default=None,
                       help="pretrained tag (laion2b_s34b_b79k, ...) or a local weight file; "
                            "the n-th --pretrained goes with the n-th --model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                   help="auto (default; also LOUPE_PRECISION): fp16 on CUDA, bf16 on CPUs "
                        "with native bf16 (AVX512-BF16, AMX: about 2x faster, cosine with "
                        "fp32 > 0.9999), else fp32; fp32 forces full precision")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loupe")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    from loupe.indexer.decode.pool import DEFAULT_SEGMENT_SECONDS, default_workers
    from loupe.indexer.encoders.openclip import DEFAULT_MODEL, DEFAULT_PRETRAINED

    parser = argparse.ArgumentParser(
        prog="loupe", description="Search your photos by words, by example image, or both.")
    parser.add_argument("--version", action="version", version=f"loupe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index (or re-index) folders and files",
                       description="Embed new and changed photos, video frames and sounds "
                                   "under PATH...; moved or copied files reuse their vectors; "
                                   "vanished ones are removed. Every model of the index is "
                                   "kept up to date.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_db(p)
    p.add_argument("--tables-uri", default=None, metavar="URI",
                   help="a new index keeps its LanceDB tables (the vectors and their "
                        "provenance) here instead of in --db: s3://BUCKET/PATH, gs://..., "
                        "az://... (credentials from the environment, as LanceDB reads "
                        "them); --db keeps meta.json, the FAISS index and caches")
    _add_encoder(p, for_query=False)
    p.add_argument("--add", action="store_true",
                   help="add --model(s) the index does not hold yet (their vectors are "
                        "computed for every file already indexed)")
    p.set_defaults(default_model=DEFAULT_MODEL, default_pretrained=DEFAULT_PRETRAINED)
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                   help="video: one frame every SECONDS (1.0; 1/60 = every frame of 60 fps "
                        "video), plus one at each shot change")
    p.add_argument("--shot-threshold", type=float, default=0.35, metavar="D",
                   help="video: colour-histogram distance counted as a shot change (0.35; "
                        "0 turns shot detection off)")
    p.add_argument("--video-segment", type=float, default=DEFAULT_SEGMENT_SECONDS,
                   metavar="SECONDS",
                   help=f"video: decode videos longer than 2 x SECONDS in segments of about "
                        f"SECONDS on all workers at once, joined exactly "
                        f"({DEFAULT_SEGMENT_SECONDS:g}; 0: one worker per video)")
    p.add_argument("--batch-size", type=int, default=32, help="items per model call (32)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help=f"decode processes (default: one per core = {default_workers()}; "
                        "0 decodes in-process)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (default 200,000,000)")
    p.add_argument("--draft", type=float, default=2.0, metavar="FACTOR",
                   help="JPEG draft decode down to FACTOR x model input (2.0; 1.0 is "
                        "fastest; 0 decodes at full size)")
    p.add_argument("--commit-rows", type=int, default=256, metavar="N",
                   help="commit to the store every N rows (256; also every 10 s)")
    p.add_argument("--retry-failed", action="store_true",
                   help="look again at files skipped as bad in earlier runs")
    p.add_argument("--tags", nargs="?", const="", default=None, metavar="VOCABULARY",
                   help="tag every photo and frame with zero-shot labels (stored; search "
                        "with --where tag=LABEL): everyday (the default), imagenet-1k, or a "
                        "label file. Later runs keep the tags up to date")
    p.add_argument("--no-tags", action="store_true", help="stop tagging and drop the tags")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="decode and embed on a Ray cluster (Ray Data; rows written as Lance "
                        "fragments by lance-ray): ADDRESS of the cluster (auto, "
                        "ray://HOST:10001), or none for a Ray on this machine")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's report as JSON")

    p = sub.add_parser("search", help="search by text, image file, or a weighted mix",
                       description='Examples: loupe search "a foggy forest"; '
                                   'loupe search ./beach.jpg; '
                                   'loupe search "dog" + ./beach.jpg - "people"; '
                                   'loupe search "2:dog" "cat". A token that names an '
                                   "existing file is an image; force with text:/image:.")
    p.add_argument("query", nargs="*", metavar="TERM")
    p.add_argument("--audio", action="append", default=[], metavar="FILE",
                   help="a sound to search with (needs an audio model such as ImageBind); "
                        "adds to the TERMs")
    p.add_argument("-k", type=int, default=10, help="number of results (10)")
    p.add_argument("--kind", default=None, choices=["photo", "frame", "video", "audio"],
                   help="only this kind: photo, frame (= video), audio (sound windows)")
    p.add_argument("--frames", action="store_true",
                   help="list every matching video frame / sound window instead of one "
                        "result per file with its best moments")
    p.add_argument("--folder", default=None, help="only files under this folder")
    p.add_argument("--since", default=None, metavar="YYYY-MM-DD",
                   help="only files modified on or after this day")
    p.add_argument("--until", default=None, metavar="YYYY-MM-DD",
                   help="only files modified on or before this day")
    p.add_argument("--where", action="append", default=[], metavar="tag=LABEL",
                   help="only items tagged LABEL (an index built with --tags); repeat to "
                        "require several")
    p.add_argument("--hide-duplicates", nargs="?", type=float, const=0.95, default=None,
                   metavar="COSINE",
                   help="hide near duplicates of better hits (cosine >= 0.95, or COSINE)")
    p.add_argument("--json", action="store_true", help="print results as a JSON list")
    _add_db(p)
    _add_encoder(p, for_query=True)

    p = sub.add_parser("ground", help="Kosmos-2: describe pictures and box the phrases",
                       description="Ground search hits, image files or video moments with "
                                   "Kosmos-2: a caption (or an answer to --prompt) whose "
                                   "phrases come with boxes in the picture. Answers are cached "
                                   "in the index. Examples: loupe ground 3f2a...c1 (an item id "
                                   "from search --json); loupe ground photo.jpg --draw out.jpg; "
                                   "loupe ground clip.mp4 --at 12.5; loupe ground --video "
                                   "clip.mp4 --every 2 --sheet sheet.jpg")
    p.add_argument("targets", nargs="*", metavar="ITEM_ID_OR_PATH")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="for a video file: the moment to ground")
    p.add_argument("--video", default=None, metavar="PATH",
                   help="ground a video's sampled frames (see --every)")
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS",
                   help="with --video: one frame every SECONDS (1.0) plus shot changes")
    p.add_argument("--prompt", default=None,
                   help='what to ask (default "<grounding>An image of", a caption); free-form '
                        'prompts such as "Find the white fish" get <grounding> added')
    p.add_argument("--model", default=None,
                   help="Kosmos-2 hub id (microsoft/kosmos-2-patch14-224) or a local folder "
                        "(save_pretrained layout)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=None,
                   help="pictures per generate call (default 64 on a GPU, 4 on the CPU)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (64)")
    p.add_argument("--draw", default=None, metavar="PATH",
                   help="write the picture(s) with boxes: a file for one target, else a folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="with --video: write groundings.jsonl and the annotated frames here")
    p.add_argument("--sheet", default=None, metavar="FILE",
                   help="with --video: write a contact sheet of the frames with their boxes")
    p.add_argument("--no-cache", action="store_true", help="run the model even if cached")
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    _add_db(p)

    p = sub.add_parser("ui", help="open the web UI (Streamlit) on this index",
                       description="Serve the web UI: search by words, image or sound, look "
                                   "at hits, ground them. It listens on 127.0.0.1 only, unless "
                                   "--host says otherwise.")
    _add_db(p)
    p.add_argument("--port", type=int, default=8501, help="port (8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes "
                        "the UI and every indexed file to the network)")
    p.add_argument("--grounding-model", default=None, metavar="NAME_OR_DIR",
                   help="Kosmos-2 for grounding (hub id or local folder)")
    p.add_argument("--max-upload-mb", type=int, default=50,
                   help="largest query image/sound upload in MB (50)")
    p.add_argument("--allow-indexing", action="store_true",
                   help="keep the page's 'Index a folder' action when --host exposes the UI "
                        "(it is always on for 127.0.0.1)")

    from loupe.search.cli.explain import add_commands

    add_commands(sub, _add_db)

    p = sub.add_parser("status", help="what the index holds, and what was skipped")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def _db(args) -> str:
    from loupe.search.store import default_db_dir

    return os.path.abspath(args.db or default_db_dir())


def existing_store(db: str):
    """The Store at ``db`` when an index is there, else None (nothing is created)."""
    from loupe.search.store import Store

    return Store(db) if os.path.exists(os.path.join(db, "meta.json")) else None


def _encoders_for_index(args, store) -> list:
    """The encoders a run uses: the index's models, plus --model(s) new to it (with --add).

    A new index uses the --model(s) given, else the default model.
    """
    from loupe.indexer.encoders import LazyEncoder, load_encoder, same_source

    recorded = list(store.meta.encoders.values()) if store is not None else []
    models = list(args.model or [])
    pretrained = list(args.pretrained or [])
    if len(pretrained) > max(1, len(models)):
        raise LoupeError("more --pretrained than --model: give one --model per --pretrained")
    if pretrained and not models:
        models = [args.default_model]
    if not models and not recorded:
        models = [args.default_model]
    named, new = [], []
    for i, model in enumerate(models):
        weights = pretrained[i] if i < len(pretrained) else None
        if weights is None and model == args.default_model:
            weights = args.default_pretrained
        spec = next((s for s in recorded if same_source(s, model, weights)), None)
        if spec is not None:  # load it only if something needs embedding
            named.append(spec.column)
            continue
        enc = load_encoder(model, weights, args.device)
        if enc.spec.column in {s.column for s in recorded}:
            named.append(enc.spec.column)
            continue
        new.append(enc)
    if new and recorded and not args.add:
        have = "; ".join(s.describe() for s in recorded)
        adding = "; ".join(e.spec.describe() for e in new)
        raise LoupeError(
            f"this index holds vectors of {have}. To add {adding} (computed for every file "
            "already indexed), run again with --add; or use another --db"
        )
    return [LazyEncoder(s, args.device) for s in recorded] + new


def _shown(path: str) -> str:
    """A path for a terminal line: quoted when it holds control characters (newlines...)."""
    return repr(path) if any(ord(c) < 32 or ord(c) == 127 for c in path) else path


def cmd_index(args) -> int:
    from loupe.indexer.media.image import DEFAULT_MAX_PIXELS
    from loupe.indexer.pipeline import IndexOptions, index_paths
    from loupe.search.store import Store

    if args.batch_size < 1:
        raise LoupeError("--batch-size must be at least 1")
    if args.workers < 0:
        raise LoupeError("--workers must be 0 or more")
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise LoupeError(f"no such file or folder: {', '.join(missing)}")
    db = _db(args)
    # Load the model before creating anything: a failed start leaves no empty index.
    if not args.every > 0:
        raise LoupeError("--every must be a positive number of seconds")
    if args.tags is not None and args.no_tags:
        raise LoupeError("--tags and --no-tags contradict each other")
    if args.tags:
        from loupe.search.explain.labels import load_vocabulary

        load_vocabulary(args.tags)  # a bad label file fails before anything is written
    existing = existing_store(db)
    encoders = _encoders_for_index(args, existing)
    if existing is not None and args.tables_uri and args.tables_uri != existing.tables_uri:
        raise LoupeError(f"the index at {db} keeps its tables at {existing.tables_uri}; "
                         "--tables-uri only applies to a new index")
    store = existing or Store(db, create=True, tables_uri=args.tables_uri)
    if args.tags is not None or args.no_tags:
        _set_tagging(store, args.tags, encoders)
    opts = IndexOptions(batch_size=args.batch_size, workers=args.workers,
                        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                        draft_factor=args.draft or None, retry_failed=args.retry_failed,
                        frame_interval=args.every, video_segment=args.video_segment or None,
                        shot_threshold=args.shot_threshold or None,
                        commit_rows=max(1, args.commit_rows), ray=args.ray,
                        progress=not args.quiet and sys.stderr.isatty())
    report = index_paths(args.paths, store, encoders, opts)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        rate = report.embedded / report.seconds if report.seconds else 0.0
        print(f"indexed into {store.dir} in {report.seconds:.1f}s: {report.files_seen} files "
              f"seen, {report.unchanged} unchanged, {report.embedded} items embedded "
              f"({rate:.1f}/s), {report.reused} reused, {report.removed} removed, "
              f"{report.skipped} skipped, {report.unsupported} not indexed by these models")
        if report.videos or report.audio_files:
            print(f"  {report.photos} photos, {report.videos} videos ({report.frames} frames), "
                  f"{report.audio_files} sound files, {report.sound_windows} sound windows")
        if report.partial:
            print(f"  {report.partial} files indexed only in part (damaged)")
        if report.skipped or report.partial:
            print("see `loupe status` for the skipped files and why")
    return EXIT_OK


def _set_tagging(store, vocabulary: str | None, encoders) -> None:
    """Turn index-time tags on (with ``vocabulary``; "" keeps the current or default
    one) or off (None)."""
    from loupe.search.explain.labels import DEFAULT_TAGS
    from loupe.search.explain.tags import drop_tags, enable_tagging, tagging_config

    if vocabulary is None:
        store.meta.update(tagging=None, tagged=None)
        drop_tags(store)
        return
    for e in encoders:  # a new index registers its models when the run starts
        if e.spec.column not in store.meta.encoders:
            store.register_encoder(e.spec)
    current = tagging_config(store) or {}
    enable_tagging(store, vocabulary or current.get("vocabulary", DEFAULT_TAGS),
                   current.get("column"))


def date_range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """Local calendar days (YYYY-MM-DD, both included) as [since, until) epoch seconds."""
    import datetime as dt

    def day(text: str, flag: str) -> dt.datetime:
        try:
            return dt.datetime.strptime(text, "%Y-%m-%d")
        except ValueError as e:
            raise LoupeError(f"{flag} wants a day like 2024-06-30, not {text!r}") from e

    lo = day(since, "--since").timestamp() if since else None
    hi = (day(until, "--until") + dt.timedelta(days=1)).timestamp() if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise LoupeError("--since is after --until")
    return lo, hi


def _clock(seconds: float) -> str:
    """1:02:03.5 / 2:03.5 / 3.50s, for moments in a video or sound."""
    m, sec = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h}:{m:02d}:{sec:04.1f}"
    return f"{m}:{sec:04.1f}" if m else f"{sec:.2f}s"


def cmd_search(args) -> int:
    from loupe.search.engine import Searcher
    from loupe.search.explain.duplicates import check_threshold
    from loupe.search.explain.tags import parse_where
    from loupe.search.query import modalities, parse_query
    from loupe.search.store import Store

    if args.k < 1:
        raise LoupeError("-k must be at least 1")
    tokens = list(args.query)
    for f in args.audio:
        tokens += (["+"] if tokens else []) + [f"audio:{f}"]
    if not tokens:
        raise LoupeError("empty query: give words, an image file, a sound (--audio), or a mix")
    terms = parse_query(tokens)  # before loading a model: bad queries fail fast
    wanted_tags = parse_where(args.where)
    if args.hide_duplicates is not None:
        check_threshold(args.hide_duplicates)
    store = Store(_db(args))
    encoder = None
    if args.model or args.pretrained:
        from loupe.indexer.encoders import load_encoder
        from loupe.indexer.encoders.openclip import DEFAULT_MODEL

        encoder = load_encoder(args.model or DEFAULT_MODEL, args.pretrained, args.device)
    searcher = Searcher(store, encoder, device=args.device)
    column = searcher.column_for(modalities(terms))
    t_load = time.perf_counter()
    searcher.encoder_of(column)  # load the model (and index) outside the query's timing
    searcher.index_of(column)
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    kind = "frame" if args.kind == "video" else args.kind
    since, until = date_range(args.since, args.until)
    hits = searcher.search(terms, k=args.k, kind=kind, folder=args.folder,
                           group=not args.frames, since=since, until=until,
                           dedupe=args.hide_duplicates, tags=wanted_tags)
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
    else:
        if not hits:
            print("no results")
        for i, h in enumerate(hits, 1):
            where = ""
            if h.moments:
                where = "  at " + ", ".join(_clock(m.timestamp) for m in h.moments)
            elif h.timestamp is not None:
                where = f"  at {_clock(h.timestamp)}"
            print(f"{i:3d}  {h.score:.4f}  {_shown(h.path)}{where}")
        hidden = f", {searcher.last_hidden} near duplicates hidden" if searcher.last_hidden \
            else ""
        print(f"({len(hits)} results{hidden} in {elapsed * 1000:.0f} ms; model and index loaded in "
              f"{load_s:.1f} s)", file=sys.stderr)
    return EXIT_OK


def _print_grounding(label: str, g, cached: bool) -> None:
    print(f"{_shown(label)}{' (cached)' if cached else ''}")
    print(f"  {g.caption}")
    for e in g.entities:
        boxes = "; ".join(", ".join(f"{v:.0f}" for v in b) for b in e.boxes)
        print(f"    {e.phrase.strip()}: [{boxes}]")


def cmd_ground(args) -> int:
    from loupe.search.explain.grounding.cache import (
        ground_targets,
        ground_video,
        resolve_target,
        target_image,
    )
    from loupe.search.explain.grounding.draw import contact_sheet, draw_grounding
    from loupe.search.explain.grounding.kosmos2 import load_grounder, normalise_prompt

    if bool(args.video) == bool(args.targets):
        raise LoupeError("give ITEM_ID_OR_PATH... or --video PATH (one of the two)")
    if (args.batch_size is not None and args.batch_size < 1) or args.max_new_tokens < 1:
        raise LoupeError("--batch-size and --max-new-tokens must be at least 1")
    prompt = normalise_prompt(args.prompt)  # a bad prompt fails before the model loads
    db = _db(args)
    store = existing_store(db)
    if args.video:
        if not args.every > 0:
            raise LoupeError("--every must be a positive number of seconds")
        if not os.path.isfile(args.video):
            raise LoupeError(f"no such video: {args.video}")
    else:
        targets = [resolve_target(t, store, args.at) for t in args.targets]
    grounder = load_grounder(args.model, args.device)
    # Generation is launch-bound on a GPU: 64 frames per call ground ~48x faster than 1.
    args.batch_size = args.batch_size or (64 if grounder.device.startswith("cuda") else 4)
    if args.video:
        out_dir = args.out
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        lines, tiles = [], []
        jsonl = open(os.path.join(out_dir, "groundings.jsonl"), "w",  # noqa: SIM115
                     encoding="utf-8") if out_dir else None
        try:
            for res, image in ground_video(grounder, args.video, args.every, prompt, store,
                                           args.batch_size, args.max_new_tokens,
                                           not args.no_cache):
                d = res.as_dict()
                lines.append(d)
                if jsonl:
                    jsonl.write(json.dumps(d, ensure_ascii=False) + "\n")
                    jsonl.flush()
                drawn = None
                if out_dir or args.sheet:
                    drawn = draw_grounding(image, res.grounding)
                if out_dir:
                    drawn.save(os.path.join(out_dir, f"frame_{res.target.timestamp:010.3f}.jpg"),
                               quality=90)
                if args.sheet:
                    drawn.thumbnail((640, 640))
                    tiles.append((drawn, f"{res.target.timestamp:.1f} s: {res.grounding.caption}"))
                if not args.json:
                    _print_grounding(res.target.label, res.grounding, res.cached)
        finally:
            if jsonl:
                jsonl.close()
        if args.sheet and tiles:
            contact_sheet(tiles).save(args.sheet)
        if args.json:
            print(json.dumps(lines, indent=2, ensure_ascii=False))
        if not lines:
            raise LoupeError(f"no frame of {args.video} could be decoded")
        return EXIT_OK
    results = ground_targets(grounder, targets, prompt, store, args.batch_size,
                             args.max_new_tokens, not args.no_cache)
    if args.draw:
        one = len(results) == 1 and not os.path.isdir(args.draw)
        if not one:
            os.makedirs(args.draw, exist_ok=True)
        for i, r in enumerate(results):
            drawn = draw_grounding(target_image(r.target), r.grounding)
            name = f"{i:03d}_{os.path.splitext(os.path.basename(r.target.path))[0]}.jpg"
            drawn.save(args.draw if one else os.path.join(args.draw, name), quality=92)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            _print_grounding(r.target.label, r.grounding, r.cached)
    return EXIT_OK


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui_command(db: str, port: int = 8501, host: str = "127.0.0.1",
               grounding_model: str | None = None, max_upload_mb: int = 50,
               allow_indexing: bool = False) -> list[str]:
    """The ``streamlit run`` command line that serves the UI (tests start it the same way)."""
    app = str(importlib.resources.files("loupe.ui") / "app.py")
    cmd = [sys.executable, "-m", "streamlit", "run", app,
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--server.maxUploadSize", str(max_upload_mb), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer", "--client.showErrorDetails", "false",
           "--server.fileWatcherType", "none", "--", "--db", db]
    if grounding_model:
        cmd += ["--grounding-model", grounding_model]
    if host not in LOOPBACK and not allow_indexing:
        cmd.append("--no-indexing")  # strangers must not make the server index its disks
    return cmd


def cmd_ui(args) -> int:
    import subprocess

    from loupe.search.store import Store

    db = _db(args)
    Store(db)  # a clear error now if there is no index there
    if not 0 < args.port < 65536:
        raise LoupeError("--port must be between 1 and 65535")
    if args.max_upload_mb < 1:
        raise LoupeError("--max-upload-mb must be at least 1")
    if args.host not in LOOPBACK:
        print(f"loupe: warning: serving on {args.host}: anyone who can reach this machine can "
              "search the index and see every indexed file", file=sys.stderr)
    cmd = ui_command(db, args.port, args.host, args.grounding_model, args.max_upload_mb,
                     args.allow_indexing)
    print(f"Loupe UI for {db} at http://{args.host}:{args.port} (Ctrl-C stops it)",
          file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_status(args) -> int:
    from loupe.search.status import index_status
    from loupe.search.store import Store

    st = index_status(Store(_db(args)))
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"index: {st['db']} (store version {st['store_version']})")
    if st.get("tables") and st["tables"] != st["db"]:
        print(f"tables: {st['tables']}")
    files = ", ".join(f"{n} {k}" for k, n in sorted(st["files"].items())) or "none"
    print(f"files: {files}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st["counts"].items())) or "empty"
    print(f"items: {st['items']} ({counts})")
    for e in st["encoders"]:
        f = e["faiss"]
        fresh = "missing" if f is None else (
            f"{f['type']} with {f['vectors']} vectors, "
            + ("exact, " if not f.get("nprobe") else
               f"recall@10 {f['recall_at_10']:.3f} at nprobe {f['nprobe']}, "
               + (f"top {f['rerank']} re-scored with whole vectors, " if f.get("rerank")
                  else ""))
            + ("fresh" if f["fresh"] else f"stale (built from version {f['built_from_version']}; "
                                          "brought up to date on the next search)"))
        print(f"model: {e['backend']} {e['model']} ({e['weights']}), dim {e['dim']}, embeds "
              f"{', '.join(e['modalities'])}; index: {fresh}")
        if e.get("weights_license"):
            print(f"  weights licence: {e['weights_license']}")
    if st["last_run"]:
        lr = st["last_run"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lr["finished"]))
        print(f"last run: {when}, {lr['embedded']} embedded, {lr['reused']} reused, "
              f"{lr['removed']} removed, {lr['skipped']} skipped")
    if st["tagging"]:
        t = st["tagging"]
        print(f"tags: {t['tagged_items']} items tagged from {t['vocabulary']} (top {t['top']}, "
              f"at least {t['min_share']:g}%)")
    if st["collections"]:
        print("reference collections: " + ", ".join(
            f"{name} ({n})" for name, n in st["collections"].items()))
    if st["unsupported"]:
        print(f"not indexed by this index's models: {len(st['unsupported'])} files "
              "(sound files need an audio model)")
    if st["partial"]:
        print(f"indexed in part: {len(st['partial'])} files")
        for s in st["partial"]:
            print(f"  {_shown(s['path'])}: {s['problem']}")
    if st["not_media"]:
        print(f"ignored (not media): {st['not_media']} files")
    print(f"skipped: {len(st['skipped'])} files")
    for s in st["skipped"]:
        print(f"  {_shown(s['path'])}: {s['reason']}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loupe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "search" and not args.query and not args.audio:
        parser.error("search needs a query: words, an image file, a sound (--audio), or a mix")
    try:
        from loupe.search.cli.explain import COMMANDS

        commands = {"index": cmd_index, "search": cmd_search, "ground": cmd_ground,
                    "ui": cmd_ui, "status": cmd_status, **COMMANDS}
        if getattr(args, "precision", None):
            # read where encoders are made (also by LazyEncoder, Ray actors, the UI)
            os.environ["LOUPE_PRECISION"] = args.precision
        return commands[args.command](args)
    except LoupeError as e:
        print(f"loupe: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("loupe: interrupted; everything committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
