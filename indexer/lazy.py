"""Public names of a package, loaded on first use (PEP 562).

A package surface lists its names once, in ``_EXPORTS`` ({name: defining module}; a
public module maps to itself: ``"thumbs": "loupe.search.thumbs"``). Importing the
package then costs nothing until a name is used, so that a decode worker importing
``loupe.indexer.decode`` never pulls in the store or the models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """(``__getattr__``, ``__dir__``) for ``package`` serving ``names``."""

    def getattr_(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        if hasattr(module, name):
            value = getattr(module, name)
        elif names[name].rpartition(".")[2] == name:
            value = module  # a public module
        else:
            raise AttributeError(f"{names[name]} has no {name!r} (listed in {package})")
        importlib.import_module(package).__dict__[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return getattr_, dir_
