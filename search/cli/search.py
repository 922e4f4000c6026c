"""``loupe search``: text, image files, sounds, or a weighted mix of them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from loupe.indexer import LoupeError
from loupe.search import Term, parse_query  # light (no numpy): read before any model
from loupe.search.cli.common import EXIT_OK, add_db, add_encoder, clock, date_range, db_dir, shown

NAME = "search"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe search`` to the subparsers."""
    p = sub.add_parser(NAME, help="search by text, image file, or a weighted mix",
                       description='Examples: loupe search "a foggy forest"; '
                                   'loupe search ./beach.jpg; '
                                   'loupe search "dog" + ./beach.jpg - "people"; '
                                   'loupe search "2:dog" "cat"; '
                                   """loupe search 'ocr:"hotel lisboa"' (pictures showing """
                                   """that text; index with --ocr); """
                                   """loupe search "a night street" + ocr:bar. """
                                   "A token that names an "
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
    p.add_argument("--taken-since", default=None, metavar="DATE",
                   help="only pictures taken on or after DATE (2021-06-01, or "
                        "2021-06-01T14:00), on the camera's own clock")
    p.add_argument("--taken-until", default=None, metavar="DATE",
                   help="only pictures taken on or before DATE (a day counts whole)")
    p.add_argument("--or-modified", action="store_true",
                   help="with --taken-since/--taken-until and --sort: a file without a "
                        "capture time counts by its modification time")
    p.add_argument("--near", default=None, metavar="PLACE",
                   help='only pictures taken near PLACE: a town ("Lisbon", "Paris, Texas") '
                        "or LAT,LON")
    p.add_argument("--within", type=float, default=25.0, metavar="KM",
                   help="--near's radius in km (25)")
    p.add_argument("--camera", default=None, metavar="TEXT",
                   help='only pictures whose camera make/model holds TEXT (any case: "canon", '
                        '"iphone 12")')
    p.add_argument("--lens", default=None, metavar="TEXT",
                   help="only pictures whose lens holds TEXT (any case)")
    p.add_argument("--sort", default="relevance", choices=["relevance", "newest", "oldest"],
                   help="relevance (default), or by date taken: newest or oldest first, "
                        "among the hits scoring at least 80%% of the best (or --min-score)")
    p.add_argument("--min-score", type=float, default=None, metavar="X",
                   help="only hits with a score (cosine) of at least X")
    p.add_argument("--where", action="append", default=[], metavar="tag=LABEL",
                   help="only items tagged LABEL (an index built with --tags); repeat to "
                        "require several")

    p.add_argument("--hide-duplicates", nargs="?", type=float, const=0.95, default=None,
                   metavar="COSINE",
                   help="hide near duplicates of better hits (cosine >= 0.95, or COSINE)")
    p.add_argument("--json", action="store_true", help="print results as a JSON list")
    p.add_argument("--no-server", action="store_true",
                   help="load the model here even when a server of the index runs (without "
                        "this, a running `loupe serve` / `loupe ui` of the index answers, "
                        "unless --model, --pretrained, --device or --precision is given)")
    add_db(p)
    add_encoder(p, for_query=True)


def usage_error(args: argparse.Namespace) -> str | None:
    """A usage error (exit 2, with the usage line) for a search without any term."""
    if not args.query and not args.audio:
        return "search needs a query: words, an image file, a sound (--audio), or a mix"
    return None


def run(args: argparse.Namespace) -> int:
    """Answer the query and print the hits (or JSON): through the index's running server
    when there is one and no model was asked for here, else with the models loaded here.
    Both print the same."""
    if args.k < 1:
        raise LoupeError("-k must be at least 1")
    tokens = list(args.query)
    for f in args.audio:
        tokens += (["+"] if tokens else []) + [f"audio:{f}"]
    if not tokens:
        raise LoupeError("empty query: give words, an image file, a sound (--audio), or a mix")
    terms = parse_query(tokens)  # before loading a model: bad queries fail fast
    db = db_dir(args)
    if _server_may_answer(args) and _through_server(args, db, terms):
        return EXIT_OK
    return _search_here(args, db, terms)


# A server serves at most this many hits of one search (ui/api/common.py MAX_HITS): a
# longer list is searched here, as it always was.
SERVED_HITS = 10_000


def _server_may_answer(args: argparse.Namespace) -> bool:
    """Not --no-server, nor a model to be loaded here (--model, --pretrained, --device,
    --precision), nor more hits than a server sends."""
    here = (args.no_server or args.model or args.pretrained or args.precision
            or (args.device or "auto") != "auto")
    return not here and args.k <= SERVED_HITS


def _through_server(args: argparse.Namespace, db: str, terms: list[Term]) -> bool:
    """Ask the index's server and print its answer; False when no server answers."""
    from loupe.search import client

    folder = os.path.abspath(args.folder) if args.folder else None  # the server's cwd differs
    answer = client.search(
        db, terms, k=args.k, kind=args.kind, frames=args.frames, folder=folder,
        since=args.since, until=args.until, taken_since=args.taken_since,
        taken_until=args.taken_until, or_modified=args.or_modified, near=args.near,
        within=args.within, camera=args.camera, lens=args.lens, sort=args.sort,
        min_score=args.min_score, where=list(args.where), hide_duplicates=args.hide_duplicates)
    if answer is None:
        return False
    hits = answer.response["hits"]
    _print_hits(hits, args.json)
    if not args.json:
        hidden = answer.response.get("hidden") or 0
        print(f"({_results(len(hits), hidden)} in {answer.seconds * 1000:.0f} ms through the "
              f"server at {answer.url})", file=sys.stderr)
    return True


def _search_here(args: argparse.Namespace, db: str, terms: list[Term]) -> int:
    """Load the index's model (or the one asked for) here and search."""
    from loupe.indexer import DEFAULT_MODEL, encoder_from_spec, load_encoder
    from loupe.search import CaptureFilter, Searcher, Store, modalities
    from loupe.search.explain import check_threshold, parse_where

    wanted_tags = parse_where(args.where)
    if args.hide_duplicates is not None:
        check_threshold(args.hide_duplicates)
    try:  # dates and places are read before a model loads: a typo fails fast
        capture = CaptureFilter.of(args.taken_since, args.taken_until, args.or_modified,
                                   args.near, args.within, args.camera, args.lens)
    except ValueError as e:
        raise LoupeError(str(e)) from e
    store = Store(db)
    needs = modalities(terms)
    t_load = time.perf_counter()
    if not needs:  # only ocr: terms: the text index answers, no model is loaded
        encoder = None
    elif args.model or args.pretrained:
        encoder = load_encoder(args.model or DEFAULT_MODEL, args.pretrained, args.device,
                               args.precision)
        t_load = time.perf_counter()
    else:  # the index's first model that embeds every term, at the asked precision
        spec = store.meta.query_column(None, needs)[1]
        t_load = time.perf_counter()
        encoder = encoder_from_spec(spec, args.device, args.precision)
    searcher = Searcher(store, encoder, device=args.device)
    column = searcher.column_for(needs) if needs else searcher.column
    searcher.index_of(column)  # load the index outside the query's timing
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    kind = "frame" if args.kind == "video" else args.kind
    since, until = date_range(args.since, args.until)
    hits = searcher.search(terms, k=args.k, kind=kind, folder=args.folder,
                           group=not args.frames, since=since, until=until,
                           dedupe=args.hide_duplicates, tags=wanted_tags, capture=capture,
                           sort=args.sort, min_score=args.min_score)
    elapsed = time.perf_counter() - t0
    _print_hits([h.as_dict() for h in hits], args.json)
    if not args.json:
        print(f"({_results(len(hits), searcher.last_hidden)} in {elapsed * 1000:.0f} ms; "
              f"model and index loaded in {load_s:.1f} s)", file=sys.stderr)
    return EXIT_OK


def _results(n: int, hidden: int) -> str:
    return f"{n} results" + (f", {hidden} near duplicates hidden" if hidden else "")


def _print_hits(hits: list[dict], as_json: bool) -> None:
    """The hits (``Hit.as_dict()`` form, as a server sends them) on stdout: one line each,
    or the JSON list."""
    if as_json:
        print(json.dumps(hits, indent=2, ensure_ascii=False))
        return
    if not hits:
        print("no results")
    for i, h in enumerate(hits, 1):
        where = ""
        if h.get("moments"):
            where = "  at " + ", ".join(clock(m["timestamp"]) for m in h["moments"])
        elif h.get("timestamp") is not None:
            where = f"  at {clock(h['timestamp'])}"
        print(f"{i:3d}  {h['score']:.4f}  {shown(h['path'])}{where}{_taken(h)}{_shows(h)}")


def _shows(h: dict) -> str:
    """The text a hit found by ocr: terms shows ("" for others)."""
    lines = list(dict.fromkeys(x["text"] for x in h.get("text") or ()))
    if not lines:
        return ""
    more = f" (+{len(lines) - 2} lines)" if len(lines) > 2 else ""
    return "  shows " + ", ".join(json.dumps(x, ensure_ascii=False) for x in lines[:2]) + more


def _taken(h: dict) -> str:
    """When and where a hit was taken, for its line ("" when unknown)."""
    local, at = h.get("taken_local"), h.get("taken_at")
    when = None
    if local:
        when = local.replace("T", " ")
    elif at is not None:
        import datetime as dt

        when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [p for p in (when, h.get("place")) if p]
    return f"  [{', '.join(parts)}]" if parts else ""
