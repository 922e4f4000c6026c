"""``loupe atlas``: a 2-D map of the whole index, as CSV / JSON and as a picture."""

from __future__ import annotations

import argparse
import json
import sys

from loupe.indexer import ItemKind, LoupeError
from loupe.search.cli.common import EXIT_OK, add_db, open_store

NAME = "atlas"
FIELDS = ["id", "path", "kind", "timestamp", "x", "y"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe atlas`` to the subparsers."""
    from loupe.search.explain import atlas as atlas_map

    p = sub.add_parser(NAME, help="a 2-D map of the whole index (UMAP or PCA)",
                       description="Lay every photo and video moment out on a 2-D map "
                                   "(similar pictures near each other), as the UI's Atlas "
                                   "page shows it. Computed once per index version and "
                                   "cached in the index; write it as CSV or JSON, and as "
                                   "a picture of thumbnails.")
    p.add_argument("--method", default="auto", choices=list(atlas_map.METHODS),
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


def _write_points(atlas, path: str) -> None:
    """Every point of the map as CSV or JSON (by the file's extension)."""
    rows = [{"id": i, "path": p, "kind": k,
             "timestamp": None if t != t else float(t), "x": float(x), "y": float(y)}
            for i, p, k, t, x, y in zip(atlas.ids, atlas.paths, atlas.kinds,
                                        atlas.timestamps, atlas.x, atlas.y, strict=True)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.lower().endswith(".json"):
            json.dump(rows, f, ensure_ascii=False)
        else:
            import csv

            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)


def run(args: argparse.Namespace) -> int:
    """Compute (or load) the map and write what was asked for."""
    from loupe.search.explain import atlas as atlas_map
    from loupe.search.explain import mosaic

    if args.max_points < 3:
        raise LoupeError("--max-points must be at least 3")
    if args.out and not args.out.lower().endswith((".csv", ".json")):
        raise LoupeError("--out must name a .csv or .json file")
    store = open_store(args)
    kinds = atlas_map.DEFAULT_KINDS + ((ItemKind.AUDIO,) if args.sounds else ())
    say = (lambda msg: print(f"atlas: {msg}", file=sys.stderr)) if sys.stderr.isatty() \
        else None
    atlas = atlas_map.load_atlas(store, args.model, args.method, args.seed, args.max_points,
                                 kinds, on_progress=say)
    how = "from the cache" if atlas.cached else f"computed in {atlas.seconds:.1f} s"
    sample = f" (a sample of {atlas.total:,})" if atlas.sampled else ""
    print(f"{len(atlas):,} points{sample}, {atlas.method.upper()}, {how}, "
          f"index version {atlas.version}")
    if args.out:
        _write_points(atlas, args.out)
        print(f"wrote {args.out}")
    if args.picture:
        with open(args.picture, "wb") as f:
            f.write(mosaic(store, atlas))
        print(f"wrote {args.picture}")
    return EXIT_OK
