"""The ``loupe`` command line: one thin module per command over the library functions.

Each command module has ``NAME``, ``register(subparsers)`` and ``run(args) -> int``
(and may have ``usage_error(args) -> str | None`` for checks argparse cannot make).
:func:`main` is the error boundary: a LoupeError is one line on stderr and exit 1.

The modules are imported when needed: ``loupe search`` imports ``search`` alone (it may
be answered by a running server within a tenth of a second, so it cannot pay for the
others' imports), ``loupe --help`` imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from loupe.indexer import LoupeError
from loupe.search.cli.common import EXIT_ERROR, EXIT_INTERRUPTED

# The commands in `loupe --help` order: each the name of a module of this package
# (its NAME), imported by command().
COMMANDS = ["index", "search", "ground", "ui", "serve", "tag", "attribute", "collection",
            "duplicates", "atlas", "status"]

__all__ = ["COMMANDS", "build_parser", "command", "main"]


def command(name: str) -> ModuleType:
    """The module of the command ``name`` (one of COMMANDS)."""
    return importlib.import_module(f"{__name__}.{name}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loupe")
    except PackageNotFoundError:
        return "unknown"


class _Version(argparse.Action):
    """--version, read from the package metadata only when asked (importlib.metadata
    costs more than the rest of a command line's start)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "show program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"loupe {_version()}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests); ``only``: with that command's
    arguments alone (what it reads of a command line is the same)."""
    parser = argparse.ArgumentParser(
        prog="loupe", description="Search your photos by words, by example image, or both.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--ann", choices=["auto", "faiss", "lance"], default=None,
                        help="index backend: FAISS in memory, or LanceDB's index in the table "
                             "(default: $LOUPE_ANN, else auto: LanceDB for tables on object "
                             "storage or vectors beyond the memory budget)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if only is None or name == only:
            command(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loupe`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # A command line naming a command needs that command's parser only (--help and
    # mistakes go through the whole parser: they list every command).
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.ann:  # read by loupe.search.ann.lance_plan.requested_backend
        os.environ["LOUPE_ANN"] = args.ann
    cmd = command(args.command)
    usage_error = getattr(cmd, "usage_error", None)
    message = usage_error(args) if usage_error is not None else None
    if message:
        parser.error(message)
    try:
        return cmd.run(args)
    except LoupeError as e:
        print(f"loupe: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("loupe: interrupted; everything committed so far is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
