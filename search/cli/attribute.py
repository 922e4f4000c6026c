"""``loupe attribute``: whose style a picture resembles, and in what share."""

from __future__ import annotations

import argparse
import json

from loupe.indexer import LoupeError
from loupe.search.cli.common import EXIT_OK, add_db
from loupe.search.cli.pictures import (
    add_model_args,
    add_target_args,
    picture_vectors,
    print_shares,
)

NAME = "attribute"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe attribute`` to the subparsers."""
    from loupe.search.explain import DEFAULT_K, DEFAULT_TEMPERATURE

    p = sub.add_parser(NAME, help="style attribution: whose style, in what share",
                       description="Which artists' and movements' style a picture resembles "
                                   "(zero-shot, percent), and which reference collections "
                                   "its nearest reference works belong to (see `loupe "
                                   "collection add`), with those works as evidence.")
    add_target_args(p)
    p.add_argument("-k", type=int, default=DEFAULT_K,
                   help=f"nearest reference works that vote ({DEFAULT_K})")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"softness of the vote: weight exp(cosine / T) ({DEFAULT_TEMPERATURE})")
    p.add_argument("--artists", default="artists", metavar="NAME_OR_FILE",
                   help="artist vocabulary (default: the shipped artists list)")
    p.add_argument("--movements", default="art-movements", metavar="NAME_OR_FILE",
                   help="movement vocabulary (default: the shipped art-movements list)")
    add_db(p)
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    """Attribute each target and print the shares and their evidence (or JSON)."""
    from loupe.search.explain import attribute, load_vocabulary

    for vocab in (args.artists, args.movements):
        load_vocabulary(vocab)  # a bad file fails before the model loads
    if args.k < 1 or not args.temperature > 0:
        raise LoupeError("-k must be at least 1 and --temperature above 0")
    store, targets, encoder, column, vectors = picture_vectors(args)
    results = attribute(vectors, targets, encoder, store, column, args.top, args.k,
                        args.temperature, args.artists, args.movements)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
        return EXIT_OK
    for t, r in zip(targets, results, strict=True):
        print(t.label)
        print_shares("artists (zero-shot)", r.artists, r.artists_other)
        print_shares("movements (zero-shot)", r.movements, r.movements_other)
        if r.references:
            print_shares(f"reference collections ({len(r.evidence)} nearest works)",
                         r.references, None)
            print("    evidence:")
            for e in r.evidence:
                print(f"      {e.similarity:.3f}  {e.collection}: {e.path}  ({e.weight:.1f}%)")
        elif store is not None and column:
            print("  reference collections: none yet (`loupe collection add NAME FOLDER`)")
    return EXIT_OK
