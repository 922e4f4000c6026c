"""The ``loupe`` command line: one thin module per command over the library functions.

Each command module has ``NAME``, ``register(subparsers)`` and ``run(args) -> int``
(and may have ``usage_error(args) -> str | None`` for checks argparse cannot make).
:func:`main` is the error boundary: a LoupeError is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loupe.indexer import LoupeError
from loupe.search.cli import (
    atlas,
    attribute,
    collection,
    duplicates,
    ground,
    index,
    search,
    status,
    tag,
    ui,
)
from loupe.search.cli.common import EXIT_ERROR, EXIT_INTERRUPTED

COMMANDS = [index, search, ground, ui, tag, attribute, collection, duplicates, atlas, status]

__all__ = ["COMMANDS", "build_parser", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loupe")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="loupe", description="Search your photos by words, by example image, or both.")
    parser.add_argument("--version", action="version", version=f"loupe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loupe`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = next(c for c in COMMANDS if c.NAME == args.command)
    usage_error = getattr(command, "usage_error", None)
    message = usage_error(args) if usage_error is not None else None
    if message:
        parser.error(message)
    try:
        return command.run(args)
    except LoupeError as e:
        print(f"loupe: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("loupe: interrupted; everything committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
