"""What ``loupe tag`` and ``loupe attribute`` share: the pictures they look at (item ids,
files, video moments), the model they look with, and the shares they print."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from loupe.indexer import LoupeError, Modality
from loupe.search.cli.common import DEVICE_HELP, db_dir, open_store


def add_target_args(p: argparse.ArgumentParser) -> None:
    """ITEM_ID_OR_PATH..., --at, --top and --json."""
    p.add_argument("targets", nargs="+", metavar="ITEM_ID_OR_PATH",
                   help="an item id (from `loupe search --json`) or a picture / video file")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="for a video file: the moment to look at")
    p.add_argument("--top", type=int, default=5, help="how many labels to list (5)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model / --pretrained / --device of the picture-and-text model."""
    p.add_argument("--model", default=None,
                   help="model to use (default: the index's first model that embeds pictures "
                        "and text); needed to look at files without an index")
    p.add_argument("--pretrained", default=None, help="pretrained tag or weight file of --model")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def picture_encoder(args: argparse.Namespace, store) -> tuple:
    """(encoder, the index column of its vectors or None) for tag / attribute."""
    from loupe.indexer import encoder_from_spec, load_encoder

    if args.model:
        encoder = load_encoder(args.model, args.pretrained, args.device)
        column = None
        if store is not None and encoder.spec.column in store.meta.encoders and \
                store.meta.encoders[encoder.spec.column].mismatch(encoder.spec) is None:
            column = encoder.spec.column
        return encoder, column
    if store is None:
        raise LoupeError(f"no Loupe index at {db_dir(args)}: pass --model (e.g. --model "
                         "ViT-B-32) to look at files without an index, or --db")
    column, spec = store.meta.query_column(None, {Modality.IMAGE, Modality.TEXT})
    return encoder_from_spec(spec, args.device), column


def resolve_targets(args: argparse.Namespace, store) -> list:
    """The Targets named on the command line (after checking --top)."""
    from loupe.search.explain import resolve_target

    if args.top < 1:
        raise LoupeError("--top must be at least 1")
    return [resolve_target(t, store, args.at) for t in args.targets]


def picture_vectors(args: argparse.Namespace) -> tuple:
    """(store or None, targets, encoder, column, their vectors): what tag and attribute
    both start from."""
    from loupe.search.explain import target_vectors

    store = open_store(args, required=False)
    targets = resolve_targets(args, store)
    encoder, column = picture_encoder(args, store)
    return store, targets, encoder, column, target_vectors(encoder, targets, store, column)


def print_shares(title: str, tags: Sequence, other: float | None, indent: str = "  ") -> None:
    """Labels with their percent and a bar of #, then "(all others)" when it counts."""
    if title:
        print(f"{indent}{title}")
        indent += "  "
    width = max((len(t.label) for t in tags), default=0)
    for t in tags:
        print(f"{indent}{t.label:<{width}}  {t.share:5.1f}%  {'#' * round(t.share / 4)}")
    if other is not None and other >= 0.05:
        print(f"{indent}{'(all others)':<{width}}  {other:5.1f}%")
