"""``loupe duplicates``: groups of identical and near-identical items."""

from __future__ import annotations

import argparse
import json

from loupe.indexer import ItemKind
from loupe.search.cli.common import EXIT_OK, add_db, open_store, progress_bar

NAME = "duplicates"
KINDS = {"photo": ItemKind.PHOTO, "video": ItemKind.FRAME, "all": None}  # --kind -> item kind


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe duplicates`` to the subparsers."""
    p = sub.add_parser(NAME, help="groups of identical and near-identical items",
                       description="Exact duplicates (the same bytes at several paths) and "
                                   "near duplicates (resized, re-encoded, cropped, edited: "
                                   "cosine similarity >= --threshold, grouped transitively).")
    p.add_argument("--threshold", type=float, default=0.95,
                   help="cosine similarity that counts as a near duplicate (0.95; higher: "
                        "only closer copies)")
    p.add_argument("--kind", default="photo", choices=list(KINDS),
                   help="photos (default), video moments (matched across videos only), or "
                        "all pictures")
    p.add_argument("--folder", default=None, help="only files under this folder")
    p.add_argument("--model", default=None, metavar="COLUMN",
                   help="the model column to compare with (default: the index's first)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_db(p)


def run(args: argparse.Namespace) -> int:
    """Find the duplicate groups and print them (or JSON)."""
    from loupe.search.explain import check_threshold, find_duplicates

    check_threshold(args.threshold)
    store = open_store(args)
    report = find_duplicates(store, args.model, args.threshold, KINDS[args.kind], args.folder,
                             on_progress=progress_bar("comparing"))
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
