"""The CLI commands that explain an archive: ``tag``, ``attribute``, ``collection``,
``duplicates`` and ``atlas`` (registered on ``loupe``'s parser by search/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, Modality

EXIT_OK = 0


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="ITEM_ID_OR_PATH",
                   help="an item id (from `loupe search --json`) or a picture / video file")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="for a video file: the moment to look at")
    p.add_argument("--top", type=int, default=5, help="how many labels to list (5)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model to use (default: the index's first model that embeds pictures "
                        "and text); needed to look at files without an index")
    p.add_argument("--pretrained", default=None, help="pretrained tag or weight file of --model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def add_commands(sub, add_db) -> None:
    """Register the explain commands on ``loupe``'s subparsers."""
    from loupe.search.explain.attribution import DEFAULT_K, DEFAULT_TEMPERATURE
    from loupe.search.explain.labels import BUILTIN, DEFAULT_TAGS

    builtin = ", ".join(BUILTIN)
    p = sub.add_parser("tag", help="zero-shot tags: what is in this picture, in percent",
                       description="Zero-shot tags of pictures, items or video moments: the "
                                   "share (percent) of each label of a vocabulary. Examples: "
                                   "loupe tag photo.jpg; loupe tag 3f2a...c1 --labels "
                                   "imagenet-1k --top 3; loupe tag clip.mp4 --at 12")
    _add_target_args(p)
    p.add_argument("--labels", default=DEFAULT_TAGS, metavar="NAME_OR_FILE",
                   help=f"vocabulary: {builtin}, or a text file with one label per line "
                        f"('# template: a photo of {{}}.' lines set the prompts); default "
                        f"{DEFAULT_TAGS}")
    add_db(p)
    _add_model_args(p)

    p = sub.add_parser("attribute", help="style attribution: whose style, in what share",
                       description="Which artists' and movements' style a picture resembles "
                                   "(zero-shot, percent), and which reference collections "
                                   "its nearest reference works belong to (see `loupe "
                                   "collection add`), with those works as evidence.")
    _add_target_args(p)
    p.add_argument("-k", type=int, default=DEFAULT_K,
                   help=f"nearest reference works that vote ({DEFAULT_K})")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"softness of the vote: weight exp(cosine / T) ({DEFAULT_TEMPERATURE})")
    p.add_argument("--artists", default="artists", metavar="NAME_OR_FILE",
                   help="artist vocabulary (default: the shipped artists list)")
    p.add_argument("--movements", default="art-movements", metavar="NAME_OR_FILE",
                   help="movement vocabulary (default: the shipped art-movements list)")
    add_db(p)
    _add_model_args(p)

    p = sub.add_parser("collection", help="reference works per artist or style",
                       description='Reference collections for style attribution. Examples: '
                                   'loupe collection add "Claude Monet" ./refs/monet; '
                                   'loupe collection list; loupe collection remove "Claude '
                                   'Monet"')
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser("add", help="register (or refresh) a folder of works under a name")
    c.add_argument("name", help="the artist or style the works stand for")
    c.add_argument("folders", nargs="+", metavar="FOLDER_OR_FILE")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    add_db(c)
    c = csub.add_parser("list", help="collections and their number of works")
    c.add_argument("--json", action="store_true", help="print JSON")
    add_db(c)
    c = csub.add_parser("remove", help="forget a collection")
    c.add_argument("name")
    add_db(c)

    p = sub.add_parser("duplicates", help="groups of identical and near-identical items",
                       description="Exact duplicates (the same bytes at several paths) and "
                                   "near duplicates (resized, re-encoded, cropped, edited: "
                                   "cosine similarity >= --threshold, grouped transitively).")
    p.add_argument("--threshold", type=float, default=0.95,
                   help="cosine similarity that counts as a near duplicate (0.95; higher: "
                        "only closer copies)")
    p.add_argument("--kind", default="photo", choices=["photo", "video", "all"],
                   help="photos (default), video moments (matched across videos only), or "
                        "all pictures")
    p.add_argument("--folder", default=None, help="only files under this folder")
    p.add_argument("--model", default=None, metavar="COLUMN",
                   help="the model column to compare with (default: the index's first)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db(p)

    p = sub.add_parser("atlas", help="a 2-D map of the whole index (UMAP or PCA)",
                       description="Lay every photo and video moment out on a 2-D map "
                                   "(similar pictures near each other), as the UI's Atlas "
                                   "page shows it. Computed once per index version and "
                                   "cached in the index; write it as CSV or JSON, and as "
                                   "a picture of thumbnails.")
    p.add_argument("--method", default="auto", choices=["auto", "umap", "pca"],
                   help="auto: UMAP when there are enough points, else PCA")
    p.add_argument("--seed", type=int, default=0, help="random seed of the layout (0)")
    p.add_argument("--max-points", type=int, default=200_000,
                   help="map a seeded random sample of this many items at most (200,000)")
    p.add_argument("--sounds", action="store_true", help="map sound windows too")
    p.add_argument("--model", default=None, metavar="COLUMN",
                   help="the model column to map (default: the index's first)")
    p.add_argument("--out", default=None, metavar="FILE.csv|FILE.json",
                   help="write id, path, kind, timestamp, x, y of every point")
    p.add_argument("--picture", default=None, metavar="FILE.jpg",
                   help="write the map as a grid of thumbnails")
    add_db(p)


def _open_store(args, required: bool):
    """The index of ``--db``: None when there is none, unless ``required`` (then Store
    says there is none, in one line)."""
    from loupe.search.cli.main import _db, existing_store
    from loupe.search.store import Store

    return Store(_db(args)) if required else existing_store(_db(args))


def _picture_encoder(args, store):
    """(encoder, the index column of its vectors or None) for tag / attribute."""
    from loupe.indexer.encoders import encoder_from_spec, load_encoder

    if args.model:
        encoder = load_encoder(args.model, args.pretrained, args.device)
        column = None
        if store is not None and encoder.spec.column in store.meta.encoders and \
                store.meta.encoders[encoder.spec.column].mismatch(encoder.spec) is None:
            column = encoder.spec.column
        return encoder, column
    if store is None:
        from loupe.search.cli.main import _db

        raise LoupeError(f"no Loupe index at {_db(args)}: pass --model (e.g. --model "
                         "ViT-B-32) to look at files without an index, or --db")
    column, spec = store.meta.query_column(None, {Modality.IMAGE, Modality.TEXT})
    return encoder_from_spec(spec, args.device), column


def _targets(args, store):
    from loupe.search.explain.grounding.cache import resolve_target

    if args.top < 1:
        raise LoupeError("--top must be at least 1")
    return [resolve_target(t, store, args.at) for t in args.targets]


def _pct(share: float) -> str:
    return f"{share:5.1f}%"


def _print_shares(title: str, tags, other: float | None, indent: str = "  ") -> None:
    if title:
        print(f"{indent}{title}")
        indent += "  "
    width = max((len(t.label) for t in tags), default=0)
    for t in tags:
        print(f"{indent}{t.label:<{width}}  {_pct(t.share)}  {'#' * round(t.share / 4)}")
    if other is not None and other >= 0.05:
        print(f"{indent}{'(all others)':<{width}}  {_pct(other)}")


def cmd_tag(args) -> int:
    from loupe.search.explain.labels import load_vocabulary
    from loupe.search.explain.tags import TagResult, tag_vectors, target_vectors

    vocab = load_vocabulary(args.labels)
    store = _open_store(args, required=False)
    targets = _targets(args, store)
    encoder, column = _picture_encoder(args, store)
    vectors = target_vectors(encoder, targets, store, column)
    results = [TagResult(t.as_dict(), tags, other, vocab.name, encoder.spec.describe())
               for t, (tags, other) in zip(targets, tag_vectors(vectors, encoder, vocab,
                                                                args.top, store), strict=True)]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
        return EXIT_OK
    for t, r in zip(targets, results, strict=True):
        print(t.label)
        _print_shares("", r.tags, r.other)
    return EXIT_OK


def cmd_attribute(args) -> int:
    from loupe.search.explain.attribution import attribute
    from loupe.search.explain.labels import load_vocabulary
    from loupe.search.explain.tags import target_vectors

    for vocab in (args.artists, args.movements):
        load_vocabulary(vocab)  # a bad file fails before the model loads
    if args.k < 1 or not args.temperature > 0:
        raise LoupeError("-k must be at least 1 and --temperature above 0")
    store = _open_store(args, required=False)
    targets = _targets(args, store)
    encoder, column = _picture_encoder(args, store)
    vectors = target_vectors(encoder, targets, store, column)
    results = attribute(vectors, targets, encoder, store, column, args.top, args.k,
                        args.temperature, args.artists, args.movements)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
        return EXIT_OK
    for t, r in zip(targets, results, strict=True):
        print(t.label)
        _print_shares("artists (zero-shot)", r.artists, r.artists_other)
        _print_shares("movements (zero-shot)", r.movements, r.movements_other)
        if r.references:
            _print_shares(f"reference collections ({len(r.evidence)} nearest works)",
                          r.references, None)
            print("    evidence:")
            for e in r.evidence:
                print(f"      {e.similarity:.3f}  {e.collection}: {e.path}  ({e.weight:.1f}%)")
        elif store is not None and column:
            print("  reference collections: none yet (`loupe collection add NAME FOLDER`)")
    return EXIT_OK


def cmd_collection(args) -> int:
    from loupe.indexer.encoders import LazyEncoder
    from loupe.search.explain.attribution import add_collection, collections, remove_collection

    store = _open_store(args, required=True)
    if args.action == "add":
        loaded: dict = {}

        def encoder_of(column: str):
            if column not in loaded:
                loaded[column] = LazyEncoder(store.meta.encoders[column], args.device)
            return loaded[column]

        r = add_collection(store, args.name, args.folders, encoder_of,
                           on_progress=_progress_bar("embedding works"))
        print(f"{r.collection}: {r.added} works added, {r.unchanged} unchanged, "
              f"{r.removed} gone and forgotten, {len(r.skipped)} skipped")
        for path, reason in r.skipped:
            print(f"  skipped {path}: {reason}", file=sys.stderr)
    elif args.action == "list":
        have = collections(store)
        if args.json:
            print(json.dumps(have, indent=2, ensure_ascii=False))
        elif not have:
            print("no reference collections (add one: loupe collection add NAME FOLDER)")
        for name, n in have.items():
            if not args.json:
                print(f"{n:6d}  {name}")
    else:
        n = remove_collection(store, args.name)
        print(f"{args.name}: {n} works forgotten")
    return EXIT_OK


def _progress_bar(total_hint: str):
    """An on_progress(done, total) callback drawing a bar on a terminal (else nothing)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=total_hint, unit="item", leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_duplicates(args) -> int:
    from loupe.search.explain.duplicates import check_threshold, find_duplicates


    check_threshold(args.threshold)
    store = _open_store(args, required=True)
    kind = {"photo": ItemKind.PHOTO, "video": ItemKind.FRAME, "all": None}[args.kind]
    report = find_duplicates(store, args.model, args.threshold, kind, args.folder,
                             on_progress=_progress_bar("comparing"))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"{report.compared} items compared at cosine >= {report.threshold}: "
          f"{len(report.exact)} sets of identical files, {len(report.near)} groups of near "
          "duplicates")
    for title, groups in (("identical files", report.exact),
                          ("near duplicates", report.near)):
        for i, g in enumerate(groups, 1):
            print(f"\n{title} #{i} ({len(g.items)})")
            exact = {m for ids in g.exact for m in ids}
            for m in g.items:
                at = f" @ {m.timestamp:.1f} s" if m.timestamp is not None else ""
                mark = "=" if m.id in exact else " "
                print(f"  {mark} {m.similarity:.3f}  {m.path}{at}")
    return EXIT_OK


def cmd_atlas(args) -> int:
    from loupe.search.explain.atlas import load_atlas, mosaic


    if args.max_points < 3:
        raise LoupeError("--max-points must be at least 3")
    if args.out and not args.out.lower().endswith((".csv", ".json")):
        raise LoupeError("--out must name a .csv or .json file")
    store = _open_store(args, required=True)
    kinds = (ItemKind.PHOTO, ItemKind.FRAME, ItemKind.AUDIO) if args.sounds else (ItemKind.PHOTO, ItemKind.FRAME)
    say = (lambda msg: print(f"atlas: {msg}", file=sys.stderr)) if sys.stderr.isatty() \
        else None
    atlas = load_atlas(store, args.model, args.method, args.seed, args.max_points, kinds,
                       on_progress=say)
    how = "from the cache" if atlas.cached else f"computed in {atlas.seconds:.1f} s"
    sample = f" (a sample of {atlas.total:,})" if atlas.sampled else ""
    print(f"{len(atlas):,} points{sample}, {atlas.method.upper()}, {how}, "
          f"index version {atlas.version}")
    if args.out:
        rows = [{"id": i, "path": p, "kind": k,
                 "timestamp": None if t != t else float(t), "x": float(x), "y": float(y)}
                for i, p, k, t, x, y in zip(atlas.ids, atlas.paths, atlas.kinds,
                                            atlas.timestamps, atlas.x, atlas.y, strict=True)]
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            if args.out.lower().endswith(".json"):
                json.dump(rows, f, ensure_ascii=False)
            else:
                import csv

                w = csv.DictWriter(f, fieldnames=["id", "path", "kind", "timestamp", "x", "y"])
                w.writeheader()
                w.writerows(rows)
        print(f"wrote {args.out}")
    if args.picture:
        with open(args.picture, "wb") as f:
            f.write(mosaic(store, atlas))
        print(f"wrote {args.picture}")
    return EXIT_OK


COMMANDS = {"atlas": cmd_atlas, "tag": cmd_tag, "attribute": cmd_attribute,
            "collection": cmd_collection, "duplicates": cmd_duplicates}
