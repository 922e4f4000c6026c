"""The ``loupe`` command: index, search, status."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from indexer.errors import LoupeError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="DIR", default=None,
                   help="index directory (default: $LOUPE_DB, else the per-user data dir)")


def _add_encoder(p: argparse.ArgumentParser, for_query: bool) -> None:
    note = " (default: the index's own encoder)" if for_query else ""
    p.add_argument("--model", default=None,
                   help="open_clip model name (ViT-B-32, ...), hf-hub:ORG/REPO, or a local "
                        f"folder with open_clip_config.json + weights{note}")
    p.add_argument("--pretrained", default=None,
                   help="pretrained tag (laion2b_s34b_b79k, ...) or a local weight file"
                        f"{note}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loupe")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    from indexer.encoders.openclip import DEFAULT_MODEL, DEFAULT_PRETRAINED
    from indexer.worker import default_workers

    parser = argparse.ArgumentParser(
        prog="loupe", description="Search your photos by words, by example image, or both.")
    parser.add_argument("--version", action="version", version=f"loupe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="index (or re-index) folders and files",
                       description="Embed new and changed photos under PATH...; moved or "
                                   "copied files reuse their vectors; vanished ones are removed.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_db(p)
    _add_encoder(p, for_query=False)
    p.set_defaults(default_model=DEFAULT_MODEL, default_pretrained=DEFAULT_PRETRAINED)
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (32)")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's report as JSON")

    p = sub.add_parser("search", help="search by text, image file, or a weighted mix",
                       description='Examples: loupe search "a foggy forest"; '
                                   'loupe search ./beach.jpg; '
                                   'loupe search "dog" + ./beach.jpg - "people"; '
                                   'loupe search "2:dog" "cat". A token that names an '
                                   "existing file is an image; force with text:/image:.")
    p.add_argument("query", nargs="+", metavar="TERM")
    p.add_argument("-k", type=int, default=10, help="number of results (10)")
    p.add_argument("--kind", default=None, help="only this kind (photo)")
    p.add_argument("--folder", default=None, help="only files under this folder")
    p.add_argument("--json", action="store_true", help="print results as a JSON list")
    _add_db(p)
    _add_encoder(p, for_query=True)

    p = sub.add_parser("status", help="what the index holds, and what was skipped")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def _db(args) -> str:
    from search.store import default_db_dir

    return os.path.abspath(args.db or default_db_dir())


def _encoder_for_index(args, store):
    """The encoder a run uses: the flags', else the index's recorded one, else the default."""
    from indexer.encoders import LazyEncoder, load_encoder

    if args.model or args.pretrained:
        model = args.model or args.default_model
        pretrained = args.pretrained
        if pretrained is None and model == args.default_model:
            pretrained = args.default_pretrained
        for spec in (store.encoders.values() if store is not None else ()):
            if _same_source(spec, model, pretrained):  # load it only if something changed
                return LazyEncoder(spec, args.device)
        return load_encoder(model, pretrained, args.device)
    if store is not None and store.encoders:
        return LazyEncoder(next(iter(store.encoders.values())), args.device)
    return load_encoder(args.default_model, args.default_pretrained, args.device)


def _same_source(spec, model: str, pretrained: str | None) -> bool:
    """Whether --model/--pretrained name the weights an index recorded (same place).

    The loaded model is still checked against the recorded spec (weight hash included)
    before it embeds anything.
    """
    if spec.backend != "open_clip":
        return False
    if model.startswith("local-dir:") or os.path.isdir(model):
        return spec.model == "local-dir:" + os.path.abspath(model.removeprefix("local-dir:"))
    if model.startswith("hf-hub:"):
        return spec.model == model
    if pretrained and os.path.isfile(pretrained):
        pretrained = os.path.abspath(pretrained)
    return spec.model == model and spec.weights == pretrained


def _shown(path: str) -> str:
    """A path for a terminal line: quoted when it holds control characters (newlines...)."""
    return repr(path) if any(ord(c) < 32 or ord(c) == 127 for c in path) else path


def cmd_index(args) -> int:
    from indexer.image_decode import DEFAULT_MAX_PIXELS
    from indexer.pipeline import IndexOptions, index_paths
    from search.store import Store

    if args.batch_size < 1:
        raise LoupeError("--batch-size must be at least 1")
    if args.workers < 0:
        raise LoupeError("--workers must be 0 or more")
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise LoupeError(f"no such file or folder: {', '.join(missing)}")
    db = _db(args)
    # Load the model before creating anything: a failed start leaves no empty index.
    existing = Store(db) if os.path.exists(os.path.join(db, "meta.json")) else None
    encoder = _encoder_for_index(args, existing)
    store = existing or Store(db, create=True)
    opts = IndexOptions(batch_size=args.batch_size, workers=args.workers,
                        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                        draft_factor=args.draft or None, retry_failed=args.retry_failed,
                        commit_rows=max(1, args.commit_rows),
                        progress=not args.quiet and sys.stderr.isatty())
    report = index_paths(args.paths, store, encoder, opts)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        rate = report.embedded / report.seconds if report.seconds else 0.0
        print(f"indexed into {store.dir} in {report.seconds:.1f}s: {report.files_seen} files "
              f"seen, {report.unchanged} unchanged, {report.embedded} embedded "
              f"({rate:.1f}/s), {report.reused} reused, {report.removed} removed, "
              f"{report.skipped} skipped, {report.unsupported} not yet supported")
        if report.skipped:
            print("see `loupe status` for the skipped files and why")
    return EXIT_OK


def cmd_search(args) -> int:
    from search.engine import Searcher
    from search.query import parse_query
    from search.store import Store

    if args.k < 1:
        raise LoupeError("-k must be at least 1")
    terms = parse_query(args.query)  # before loading a model: bad queries fail fast
    store = Store(_db(args))
    encoder = None
    if args.model or args.pretrained:
        from indexer.encoders import load_encoder
        from indexer.encoders.openclip import DEFAULT_MODEL

        encoder = load_encoder(args.model or DEFAULT_MODEL, args.pretrained, args.device)
    searcher = Searcher(store, encoder, device=args.device)
    t_load = time.perf_counter()
    searcher.encoder  # noqa: B018 - load the model (and index) outside the query's timing
    searcher.index  # noqa: B018
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    hits = searcher.search(terms, k=args.k, kind=args.kind, folder=args.folder)
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
    else:
        if not hits:
            print("no results")
        for i, h in enumerate(hits, 1):
            print(f"{i:3d}  {h.score:.4f}  {_shown(h.path)}")
        print(f"({len(hits)} results in {elapsed * 1000:.0f} ms; model and index loaded in "
              f"{load_s:.1f} s)", file=sys.stderr)
    return EXIT_OK


def cmd_status(args) -> int:
    from search.status import index_status
    from search.store import Store

    st = index_status(Store(_db(args)))
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"index: {st['db']} (store version {st['store_version']})")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st["counts"].items())) or "empty"
    print(f"items: {st['items']} ({counts})")
    for e in st["encoders"]:
        f = e["faiss"]
        fresh = "missing" if f is None else (
            f"{f['type']} with {f['vectors']} vectors, "
            + ("fresh" if f["fresh"] else f"stale (built from version {f['built_from_version']}; "
                                          "rebuilt on next search)"))
        print(f"encoder: {e['backend']} {e['model']} ({e['weights']}), dim {e['dim']}; "
              f"index: {fresh}")
    if st["last_run"]:
        lr = st["last_run"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lr["finished"]))
        print(f"last run: {when}, {lr['embedded']} embedded, {lr['reused']} reused, "
              f"{lr['removed']} removed, {lr['skipped']} skipped")
    if st["unsupported"]:
        print(f"not yet supported: {len(st['unsupported'])} files (video/audio)")
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
    try:
        return {"index": cmd_index, "search": cmd_search, "status": cmd_status}[args.command](args)
    except LoupeError as e:
        print(f"loupe: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("loupe: interrupted; everything committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
