"""The full-text index of text read in pictures: SQLite FTS5 with its trigram tokenizer,
in ``<index>/text.sqlite``, derived from the ``texts`` table and rebuilt from it
whenever the two are out of step (so it can be deleted at any time).

Why SQLite FTS5 (trigram), not a word index (LanceDB's full-text index, Tantivy): OCR
glues words ("Region-basedsegmentation") and a word hyphenated across lines is split,
so a query must match *inside* words; the trigram index finds any substring of 3 or more
letters, and its posting lists make that fast at millions of lines (bench/bench_ocr.py
measures both). It is in Python's standard library, transactional, and readable while
an indexing run writes it.

One document per *reading*: the text of a photo, or of the frames of one shot that
share one reading (a title card held for 5 s is one document, one moment). A document
is its lines above the confidence floor, normalised and squashed (no spaces) and joined
in reading order, so a phrase split over two lines still matches.

Fuzzy matching: a query of ``n`` letters may differ by :func:`allowed_edits` ``(n)``
letters. Cut into that many + 1 pieces, one piece must be there exactly; the documents
holding any piece are verified with an edit-distance substring search (``regex``'s
fuzzy matching), so no document within the bound is missed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import regex

from loupe.indexer.errors import LoupeError
from loupe.search.store import Store
from loupe.search.text.normalise import allowed_edits, normalise, pieces, squash
from loupe.search.text.table import (
    DEFAULT_MIN_SCORE,
    index_path,
    ocr_config,
    require_ocr,
    table_version,
    text_rows,
)

SCHEMA_VERSION = "2"
MIN_LETTERS = 3  # shorter queries match whole words only (no trigram to look up)
WHOLE_WORD, INSIDE_WORD = 1.0, 0.9  # quality of an exact match as a word / inside one


@dataclass(slots=True)
class TextMatch:
    """One reading that shows the text asked for.

    ``items``/``timestamps``: the pictures sharing the reading (a photo; or frames of one
    shot, in time order). ``lines``: indexes of the lines the match lies on (among the
    reading's searched lines). ``score`` in (0, 1]: 1 for the words exactly, as words,
    read with full confidence; less inside a longer word, per edit, and for less sure
    lines. The lines themselves (boxes) are decoded only when asked for: a filter over
    tens of thousands of matches needs ids and scores only.
    """

    reading: str
    path: str
    items: list[str]
    timestamps: list[float | None]
    score: float
    edits: int
    lines: list[int]
    index_file: str = field(default="", repr=False)  # where its lines are read from

    def matched_lines(self) -> list[dict]:
        """The lines the match lies on, {text, score, box} (read from the index now:
        only the hits shown need them)."""
        con = sqlite3.connect(f"file:{self.index_file}?mode=ro", uri=True, timeout=30)
        try:
            row = con.execute("SELECT lines FROM docs WHERE reading = ?",
                              (self.reading,)).fetchone()
        finally:
            con.close()
        data = json.loads(row[0]) if row else []
        return [data[i] for i in self.lines if i < len(data)]


def _candidates(q: str, edits: int) -> str:
    """The FTS5 query of the documents that may hold ``q`` within ``edits`` edits.

    Cut into ``edits + 1`` pieces, one piece must be there intact; when ``q`` is long
    enough for ``edits + 2`` pieces of 3 letters or more, two of them must be (each edit
    breaks at most one piece), which leaves far fewer documents to check.
    """
    if len(q) >= 3 * (edits + 2):
        parts = pieces(q, edits + 1)
        pairs = [f'("{a}" AND "{b}")' for i, a in enumerate(parts) for b in parts[i + 1:]]
        return " OR ".join(pairs)
    return " OR ".join(f'"{p}"' for p in pieces(q, edits))


def _connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    return con


def _create(con: sqlite3.Connection) -> None:
    con.executescript("""
        CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE IF NOT EXISTS docs(
            rowid INTEGER PRIMARY KEY, reading TEXT UNIQUE, path TEXT,
            items TEXT, lines TEXT, spaced TEXT, offsets TEXT, scores TEXT);
        CREATE INDEX IF NOT EXISTS docs_path ON docs(path);
        CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(squashed, tokenize='trigram');
    """)


def _document(lines: Sequence[dict], min_score: float) -> tuple[list[dict], str, str, list[int]]:
    """(kept lines, spaced text, squashed text, start of each kept line in it)."""
    kept = [x for x in lines if x["score"] is not None and x["score"] >= min_score]
    parts, offsets, at = [], [], 0
    for x in kept:
        s = squash(x["text"])
        offsets.append(at)
        parts.append(s)
        at += len(s)
    spaced = " ".join(normalise(x["text"]) for x in kept)
    return kept, spaced, "".join(parts), offsets


def readings(rows: Iterable[dict]) -> dict[str, dict]:
    """Stored rows (id, path, timestamp, read_from, lines) grouped into readings:
    {reading id: {path, items: [(id, timestamp)] in time order, lines}}."""
    out: dict[str, dict] = {}
    for r in rows:
        key = r.get("read_from") or r["id"]
        g = out.setdefault(key, {"path": r["path"], "items": [], "lines": None})
        g["items"].append((r["id"], r.get("timestamp")))
        if r["id"] == key or g["lines"] is None:
            g["lines"] = r.get("lines") or []
    for g in out.values():
        g["items"].sort(key=lambda it: (it[1] is None, it[1] or 0.0, it[0]))
    return out


def _insert(con: sqlite3.Connection, groups: dict[str, dict], min_score: float) -> None:
    for reading, g in groups.items():
        kept, spaced, squashed, offsets = _document(g["lines"], min_score)
        if not squashed:
            continue  # nothing searchable: no document
        lines = [{"text": x["text"], "score": round(float(x["score"]), 4),
                  "box": [round(float(v), 1) for v in x["box"]]} for x in kept]
        # items, offsets and scores as plain text: read back for every match of a query
        # (tens of thousands for a common word), split is several times quicker than JSON
        items = "|".join(f"{i}@{'' if t is None else repr(float(t))}" for i, t in g["items"])
        cur = con.execute(
            "INSERT INTO docs(reading, path, items, lines, spaced, offsets, scores) "
            "VALUES(?,?,?,?,?,?,?)",
            (reading, g["path"], items, json.dumps(lines), spaced,
             ",".join(map(str, offsets)), ",".join(str(x["score"]) for x in lines)))
        con.execute("INSERT INTO fts(rowid, squashed) VALUES(?, ?)", (cur.lastrowid, squashed))


_ROW_COLUMNS = ["id", "path", "timestamp", "read_from", "lines"]
_rebuilding = threading.Lock()


class TextIndex:
    """The full-text index of one store (see the module's doc)."""

    def __init__(self, store: Store):
        self.store = store
        self.path = index_path(store)

    # -- keeping it in step ---------------------------------------------------------
    def stamp(self) -> str:
        """What the index must have been built from to be in step with the table now."""
        cfg = ocr_config(self.store) or {}
        score = cfg.get("min_score", DEFAULT_MIN_SCORE)
        return f"{SCHEMA_VERSION}:{table_version(self.store)}:{score}"

    def _stored_stamp(self) -> str | None:
        if not os.path.exists(self.path):
            return None
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                row = con.execute("SELECT value FROM meta WHERE key='stamp'").fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def fresh(self) -> bool:
        """True when the index holds exactly what the texts table holds."""
        return self._stored_stamp() == self.stamp()

    def ensure_fresh(self) -> bool:
        """Rebuild the index from the table if it is out of step; True when it was."""
        with _rebuilding:
            if self.fresh():
                return False
            self.rebuild()
            return True

    def rebuild(self) -> None:
        """Write the whole index anew from the texts table (to a temporary file, then
        moved into place, so a reader never sees half of it)."""
        stamp = self.stamp()
        cfg = ocr_config(self.store) or {}
        min_score = cfg.get("min_score", DEFAULT_MIN_SCORE)
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.new"
        if os.path.exists(tmp):
            os.remove(tmp)
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            _create(con)
            con.execute("BEGIN")
            # by reading, so that the rows of one reading (frames sharing it) are
            # inserted together whatever batch they come in
            table = text_rows(self.store, _ROW_COLUMNS).sort_by("read_from")
            carry: list[dict] = []
            for batch in table.to_batches(max_chunksize=20_000):
                rows = carry + batch.to_pylist()
                cut = len(rows)
                while cut > 0 and rows[cut - 1]["read_from"] == rows[-1]["read_from"]:
                    cut -= 1  # the last reading may go on in the next batch
                _insert(con, readings(rows[:cut]), min_score)
                carry = rows[cut:]
            _insert(con, readings(carry), min_score)
            con.execute("INSERT OR REPLACE INTO meta VALUES('stamp', ?)", (stamp,))
            con.execute("COMMIT")
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
        for suffix in ("-wal", "-shm"):
            try:
                os.remove(self.path + suffix)
            except FileNotFoundError:
                pass
        os.replace(tmp, self.path)

    def replace_paths(self, paths: Iterable[str], rows: list[dict], before: str) -> None:
        """Bring the index up to date after the readings of ``paths`` were replaced by
        ``rows`` (every stored row of those paths) and the table committed; ``before``:
        :meth:`stamp` just before that commit. An index that was not in step with the
        table then is rebuilt whole instead."""
        paths = sorted(set(paths))
        with _rebuilding:
            if self._stored_stamp() != before:
                self.rebuild()
                return
            cfg = ocr_config(self.store) or {}
            con = _connect(self.path)
            try:
                con.execute("BEGIN IMMEDIATE")
                for i in range(0, len(paths), 500):
                    part = paths[i:i + 500]
                    marks = ",".join("?" * len(part))
                    con.execute(f"DELETE FROM fts WHERE rowid IN (SELECT rowid FROM docs "
                                f"WHERE path IN ({marks}))", part)
                    con.execute(f"DELETE FROM docs WHERE path IN ({marks})", part)
                _insert(con, readings(rows), cfg.get("min_score", DEFAULT_MIN_SCORE))
                con.execute("INSERT OR REPLACE INTO meta VALUES('stamp', ?)", (self.stamp(),))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()

    # -- searching ------------------------------------------------------------------
    def match(self, phrase: str, fuzzy: bool = True) -> list[TextMatch]:
        """Every reading showing ``phrase`` (normalised; within the edit bound when
        ``fuzzy``), best first."""
        require_ocr(self.store)
        q = squash(phrase)
        if not q:
            raise LoupeError(f"ocr:{phrase!r} has no letters or digits to look for")
        self.ensure_fresh()
        words = normalise(phrase)
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            out: dict[int, TextMatch] = {}
            if len(q) < MIN_LETTERS:  # too short for trigrams: whole words, by scanning
                rows = con.execute(f"{_JOINED} WHERE ' ' || d.spaced || ' ' LIKE ?",
                                   (f"% {words} %",))
                self._collect(out, rows, q, words, None, self.path)
                return _ranked(out)
            self._collect(out, con.execute(f"{_JOINED} WHERE fts MATCH ?", (f'"{q}"',)),
                          q, words, None, self.path)
            edits = allowed_edits(len(q)) if fuzzy else 0
            if edits:
                pattern = regex.compile(f"(?:{regex.escape(q)}){{e<={edits}}}",
                                        regex.BESTMATCH)
                rows = con.execute(f"{_JOINED} WHERE fts MATCH ?", (_candidates(q, edits),))
                self._collect(out, rows, q, words, pattern, self.path)
            return _ranked(out)
        finally:
            con.close()

    @staticmethod
    def _collect(out: dict[int, TextMatch], rows, q: str, words: str, pattern,
                 index: str) -> None:
        """Add to ``out`` the documents of ``rows`` (``_JOINED``'s columns) showing ``q``:
        as it is (``pattern`` None), or within ``pattern``'s edits."""
        for rowid, sq, reading, path, items, spaced, offsets, scores in rows:
            if rowid in out:
                continue
            if pattern is None:
                start = sq.find(q)
                if start < 0:
                    continue
                edits, end = 0, start + len(q)
            else:
                m = pattern.search(sq)
                if m is None:
                    continue
                edits, (start, end) = sum(m.fuzzy_counts), m.span()
            if "," in offsets:  # the lines the span [start, end) of the joined text lies on
                offs = [int(o) for o in offsets.split(",")]
                on = list(range(max(0, bisect_right(offs, start) - 1),
                                max(1, bisect_left(offs, end))))
                confs = scores.split(",")
                conf = max(float(confs[j]) for j in on)
            else:  # one line (most pictures): quicker
                on, conf = [0], float(scores)
            whole = edits == 0 and f" {words} " in f" {spaced} "
            quality = (WHOLE_WORD if whole else INSIDE_WORD) * (1 - edits / (len(q) + 1))
            if "|" in items:
                item_ids, times = [], []
                for pair in items.split("|"):
                    item, _, t = pair.partition("@")
                    item_ids.append(item)
                    times.append(float(t) if t else None)
            else:
                item, _, t = items.partition("@")
                item_ids, times = [item], [float(t) if t else None]
            out[rowid] = TextMatch(reading, path, item_ids, times,
                                   round(quality * (0.5 + 0.5 * conf), 6), edits, on, index)


# A document's row, with its squashed text, as every search reads it (one query a pass).
_JOINED = ("SELECT d.rowid, fts.squashed, d.reading, d.path, d.items, d.spaced, "
           "d.offsets, d.scores FROM fts JOIN docs AS d ON d.rowid = fts.rowid")


def _ranked(found: dict[int, TextMatch]) -> list[TextMatch]:
    return sorted(found.values(), key=lambda m: (-m.score, m.path, m.timestamps[0] or 0.0))


def items_matching(store: Store, phrase: str, fuzzy: bool = True) -> dict[str, TextMatch]:
    """{item id: its reading's match} of every picture showing ``phrase``."""
    out: dict[str, TextMatch] = {}
    for m in TextIndex(store).match(phrase, fuzzy):
        for item in m.items:
            out.setdefault(item, m)
    return out
