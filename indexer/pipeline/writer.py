"""The commit protocol of a run: rows, file records and skip records in batches.

A file's record is committed after (never before) all of its rows, and its rows from
earlier runs that it no longer has are deleted in between: a run killed at any point
leaves files either complete or without a record (so they are redone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from loupe.indexer.decode.results import FileResult, Item
from loupe.indexer.errors import IndexFault
from loupe.indexer.kinds import ItemKind, SkipCode
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.plan import Column, RunPlan
from loupe.indexer.pipeline.records import (
    FileRecord,
    ItemRow,
    SkipRecord,
    file_record,
    item_row,
    name_places,
    photo_record,
    skip_record,
    warm_places,
)
from loupe.indexer.scan import ScanProblem
from loupe.search.store import Store


@dataclass
class ReuseBook:
    """Content a run can copy instead of embedding: files waiting for the rows of an
    identical file (moved, copied, or a twin decoded in this run), and this run's own
    photos by fingerprint."""

    waiting: list[FileResult] = field(default_factory=list)  # copy rows once looked up
    run_photos: dict[str, tuple[dict[str, np.ndarray], int, int]] = field(
        default_factory=dict)  # fingerprint -> (vectors, width, height)
    twins: dict[str, list[FileResult]] = field(default_factory=dict)  # queued twin's copies


class Writer:
    """Buffers rows, file records and skip records; commits them in batches (see the
    module docstring for the order)."""

    def __init__(self, store: Store, columns: list[Column], options: IndexOptions,
                 report: IndexReport, plan: RunPlan, snapshot: int | None, run_time: float,
                 reuse: ReuseBook):
        self.store, self.columns, self.options, self.report = store, columns, options, report
        self.snapshot = snapshot  # items version the run started from: where reuse looks
        self.run_time = run_time  # indexed_at of every row this run writes
        self.known_items, self.known_skipped = plan.known_items, plan.known_skipped
        self.complete_paths = plan.complete  # files whose rows may serve as reuse source
        self.book = reuse
        self.rows: list[ItemRow] = []
        self.files: list[FileRecord] = []
        # file records of complete photos that lack one
        self.repairs: list[FileRecord] = [
            photo_record(p, st.size, st.mtime_ns, st.fingerprint, run_time)
            for p, st in plan.repairs]
        self.skips: list[SkipRecord] = []
        self.last_commit = time.monotonic()

    def pending(self) -> int:
        return len(self.rows) + len(self.book.waiting) + len(self.skips) + len(self.files)

    def add_item(self, r: FileResult, item: Item, vectors: dict[str, np.ndarray]) -> None:
        row = item_row(r, item, self.run_time)
        row.update(vectors)
        if row["lat"] is not None:
            warm_places()  # named at the commit
        self.rows.append(row)

    def add_file(self, r: FileResult, rows: int) -> None:
        self.files.append(file_record(r, rows, self.run_time))
        self.report.count_file(r.kind, r.problem)

    def add_skip(self, r: FileResult) -> None:
        """Count and record a file that is not indexed (its queued rows are dropped)."""
        self.report.count_skip(r.code)
        self.skips.append(skip_record(r.path, r.size, r.mtime_ns, r.kind, r.code, r.reason))
        self.rows = [row for row in self.rows if row["path"] != r.path]

    def add_problems(self, problems: list[ScanProblem]) -> None:
        """Folders that could not be listed, names that are not UTF-8...: skipped as bad."""
        self.report.skipped += len(problems)
        self.skips.extend(skip_record(p.path, None, None, None, SkipCode.BAD, p.reason)
                          for p in problems)

    def maybe_commit(self) -> None:
        if (self.pending() >= self.options.commit_rows
                or time.monotonic() - self.last_commit >= self.options.commit_seconds):
            self.commit()

    def _resolve_reuse(self) -> None:
        """Copy the rows of files with identical content to the moved/copied files."""
        book = self.book
        missing = {r.fingerprint for r in book.waiting if r.fingerprint not in book.run_photos}
        names = [c.name for c in self.columns]
        # Looked up as of the run's start: this run's own commits may already have
        # given a swapped or rewritten file's old rows new content.
        found = self.store.rows_by_fingerprint(missing, names, self.snapshot,
                                               self.complete_paths)
        for r in book.waiting:
            if r.fingerprint in book.run_photos:
                vecs, w, h = book.run_photos[r.fingerprint]
                self.add_item(r, Item(ItemKind.PHOTO, width=w, height=h), vecs)
                kinds = [ItemKind.PHOTO]
            elif r.fingerprint in found:
                kinds = []
                for row in found[r.fingerprint]:
                    item = Item(row["kind"], row["timestamp"], row["end"], row["shot"],
                                row["silent"], row["width"], row["height"])
                    vecs = {n: np.asarray(row[n], np.float32) for n in names
                            if row.get(n) is not None}
                    self.add_item(r, item, vecs)
                    kinds.append(item.kind)
            else:  # the source rows vanished meanwhile; the next run embeds this file
                continue
            self.add_file(r, len(kinds))
            self.report.count_items(kinds)
            self.report.reused += 1
        book.waiting = []

    def commit(self) -> None:
        """Commit what is pending (see the module docstring for the order). A failed
        write is the index's fault (:class:`IndexFault`), never a source file's."""
        try:
            self._commit()
        except OSError as e:
            raise IndexFault.of(self.store.tables_uri, e) from e

    def _commit(self) -> None:
        if self.book.waiting:
            self._resolve_reuse()
        if self.rows:
            # Last one wins for an id written twice (a file retried after a worker crash).
            rows = list({r["id"]: r for r in self.rows}.values())
            name_places(rows)
            self.store.upsert_items(rows)
            self.rows = []
        if self.repairs:
            self.store.upsert_files(self.repairs)
            self.repairs = []
        if self.files:
            paths = [f["path"] for f in self.files]
            self.store.delete_older_rows(paths, self.run_time)
            self.store.upsert_files(self.files)
            stale = [p for p in paths if p in self.known_skipped]
            if stale:  # files that were bad before and are good now
                self.store.delete_paths(stale, items=False)
                self.known_skipped.difference_update(stale)
            self.known_items.update(paths)
            self.complete_paths.update(paths)
            self.files = []
        if self.skips:
            gone_bad = [s["path"] for s in self.skips if s["path"] in self.known_items]
            if gone_bad:  # files that had rows and are now unreadable
                self.store.delete_paths(gone_bad, skipped=False)
                self.known_items.difference_update(gone_bad)
            self.store.upsert_skipped(self.skips)
            self.known_skipped.update(s["path"] for s in self.skips)
            self.skips = []
        self.last_commit = time.monotonic()
