"""``loupe collection add|list|remove``: reference works per artist or style."""

from __future__ import annotations

import argparse
import json
import sys

from loupe.search.cli.common import DEVICE_HELP, EXIT_OK, add_db, open_store, progress_bar

NAME = "collection"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe collection`` and its actions to the subparsers."""
    p = sub.add_parser(NAME, help="reference works per artist or style",
                       description='Reference collections for style attribution. Examples: '
                                   'loupe collection add "Claude Monet" ./refs/monet; '
                                   'loupe collection list; loupe collection remove "Claude '
                                   'Monet"')
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser("add", help="register (or refresh) a folder of works under a name")
    c.add_argument("name", help="the artist or style the works stand for")
    c.add_argument("folders", nargs="+", metavar="FOLDER_OR_FILE")
    c.add_argument("--device", default="auto", help=DEVICE_HELP)
    add_db(c)
    c = csub.add_parser("list", help="collections and their number of works")
    c.add_argument("--json", action="store_true", help="print JSON")
    add_db(c)
    c = csub.add_parser("remove", help="forget a collection")
    c.add_argument("name")
    add_db(c)


def run(args: argparse.Namespace) -> int:
    """Add, list or remove reference collections."""
    from loupe.indexer import EncoderSet
    from loupe.search.explain import add_collection, collections, remove_collection

    store = open_store(args)
    if args.action == "add":
        with store.writing("loupe collection add"):
            r = add_collection(store, args.name, args.folders,
                               EncoderSet(store.meta.encoders, args.device),
                               on_progress=progress_bar("embedding works"))
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
        else:
            for name, n in have.items():
                print(f"{n:6d}  {name}")
    else:
        with store.writing("loupe collection remove"):
            n = remove_collection(store, args.name)
        print(f"{args.name}: {n} works forgotten")
    return EXIT_OK
