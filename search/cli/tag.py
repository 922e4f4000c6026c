"""``loupe tag``: zero-shot tags of pictures, items or video moments, in percent."""

from __future__ import annotations

import argparse
import json

from loupe.search.cli.common import EXIT_OK, add_db
from loupe.search.cli.pictures import (
    add_model_args,
    add_target_args,
    picture_vectors,
    print_shares,
)

NAME = "tag"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe tag`` to the subparsers."""
    from loupe.search.explain import BUILTIN, DEFAULT_TAGS

    p = sub.add_parser(NAME, help="zero-shot tags: what is in this picture, in percent",
                       description="Zero-shot tags of pictures, items or video moments: the "
                                   "share (percent) of each label of a vocabulary. Examples: "
                                   "loupe tag photo.jpg; loupe tag 3f2a...c1 --labels "
                                   "imagenet-1k --top 3; loupe tag clip.mp4 --at 12")
    add_target_args(p)
    p.add_argument("--labels", default=DEFAULT_TAGS, metavar="NAME_OR_FILE",
                   help=f"vocabulary: {', '.join(BUILTIN)}, or a text file with one label per "
                        f"line ('# template: a photo of {{}}.' lines set the prompts); default "
                        f"{DEFAULT_TAGS}")
    add_db(p)
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    """Tag each target and print its labels' shares (or JSON)."""
    from loupe.search.explain import TagResult, load_vocabulary, tag_vectors

    vocab = load_vocabulary(args.labels)
    store, targets, encoder, column, vectors = picture_vectors(args)
    shares = tag_vectors(vectors, encoder, vocab, args.top, store)
    results = [TagResult(t.as_dict(), tags, other, vocab.name, encoder.spec.describe())
               for t, (tags, other) in zip(targets, shares, strict=True)]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2, ensure_ascii=False))
        return EXIT_OK
    for t, r in zip(targets, results, strict=True):
        print(t.label)
        print_shares("", r.tags, r.other)
    return EXIT_OK
