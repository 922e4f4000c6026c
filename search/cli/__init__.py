"""The ``loupe`` command line: one thin command over the library functions."""

from loupe.search.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
