"""What a run must do: the diff between the files on disk and what the store holds.

:func:`read_state` reads the store's side once; :func:`plan_run` is then a pure function
of the scan and that state (unit-tested without decoding or writing anything).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from loupe.indexer.encoders import Encoder
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.scan import FileEntry, ScanProblem
from loupe.search.store import FileState, Store


@dataclass(frozen=True)
class Column:
    """One encoder's vector column in a run, and the model input it takes."""

    name: str
    image_input: int  # index into DecodeSettings.preprocesses
    audio: bool  # embeds sound windows too
    encoder: Encoder | None = field(default=None, compare=False)  # None in plan-only tests

    @property
    def kinds(self) -> list[str]:
        """Item kinds that get a vector in this column."""
        return [ItemKind.PHOTO, ItemKind.FRAME] + ([ItemKind.AUDIO] if self.audio else [])


@dataclass
class StoreState:
    """The store's side of the diff, read once at the start of a run."""

    items: dict[str, FileState]  # files whose rows are complete (orphan photos included)
    orphans: dict[str, FileState]  # photo rows whose file record a killed run never wrote
    skipped: dict[str, FileState]
    backfill: dict[str, set[str]] = field(default_factory=dict)  # path -> columns it lacks
    incomplete: list[str] = field(default_factory=list)  # columns that may lack vectors
    uncaptured: set[str] = field(default_factory=set)  # files whose capture was never read


@dataclass
class RunPlan:
    """What a run does, decided before any file is decoded."""

    todo: list[FileEntry]  # files to decode (new, changed, retried, or lacking a column)
    need: dict[str, frozenset[str]]  # path -> the only columns to compute (backfills)
    unchanged: int  # files left as they are
    gone_items: list[str]  # indexed files gone from disk: their rows go at the end
    gone_skips: list[str]  # skip records of files gone from disk
    stale_skips: list[str]  # skip records of files that have up-to-date rows
    repairs: list[tuple[str, FileState]]  # orphan photos that only lack their record
    problems: list[ScanProblem]  # what the scan could not list or name
    known_fingerprints: frozenset[str]  # content whose vectors can be copied
    known_items: set[str]  # paths with rows that this run keeps
    known_skipped: set[str]  # paths with skip records that this run keeps
    complete: set[str]  # files whose rows may serve as reuse source
    # unchanged files indexed before captures were read: (path, media) to read now,
    # metadata only (loupe.indexer.pipeline.recapture)
    recapture: list[tuple[str, str | None]] = field(default_factory=list)


def read_state(store: Store, columns: Sequence[Column], audio: bool) -> StoreState:
    """The store's side of the diff for a run over ``columns`` (``audio``: the run
    decodes sound, so videos indexed without theirs are done again)."""
    items = store.item_states()
    # Photos committed by a run killed before their file records: complete all the same.
    orphans = store.photo_states(exclude=[p for p, st in items.items()
                                          if st.kind == MediaKind.IMAGE])
    items.update(orphans)
    state = StoreState(items, orphans, store.skipped_states())
    state.uncaptured = store.uncaptured_files() | set(orphans)
    # Files indexed before a model joined the index: compute what they lack. (Only for
    # columns not known complete: the lookup scans the whole items table.)
    known_incomplete = set(store.meta.incomplete_columns)
    state.incomplete = [c.name for c in columns if c.name in known_incomplete]
    for c in columns:
        if c.name in known_incomplete:
            for p in store.paths_missing(c.name, c.kinds):
                state.backfill.setdefault(p, set()).add(c.name)
    if audio:
        audio_cols = {c.name for c in columns if c.audio}
        for f in store.file_rows("media = 'video' AND (sound IS NULL OR NOT sound)"):
            state.backfill.setdefault(f["path"], set()).update(audio_cols)
    return state


def under(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies inside one."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def up_to_date(e: FileEntry, st: FileState | None) -> bool:
    """Whether the store's record of a file still matches it (size and mtime)."""
    return st is not None and st.size == e.size and st.mtime_ns == e.mtime_ns


def vanished_roots(roots: Sequence[str], missing: Sequence[str], entries: Sequence[FileEntry],
                   problems: Sequence[ScanProblem], state: StoreState) -> list[str]:
    """The roots that look gone while the store holds rows under them: ``missing`` ones
    (not there, or neither a folder nor a file: an unmounted drive, a share that is
    down, a renamed folder) and folders the scan found empty (an empty mount point).
    Their rows are kept unless the run prunes them."""
    out = []
    for r in roots:
        looks_gone = r in missing or not (
            any(under(e.path, [r]) for e in entries)
            or any(under(p.path, [r]) for p in problems))
        # (checked first: what the scan saw answers at once; the store's paths are
        # looked through only for a root that looks gone)
        if looks_gone and any(under(p, [r]) for p in (*state.items, *state.skipped)):
            out.append(r)
    return out


def plan_run(entries: Sequence[FileEntry], problems: Sequence[ScanProblem],
             roots: Sequence[str], state: StoreState, supported: set[str],
             retry_failed: bool = False, kept_roots: Sequence[str] = ()) -> RunPlan:
    """The diff of a scan of ``roots`` against ``state``.

    ``supported``: the media kinds this run can index (skips recorded as unsupported
    for one of them are tried again); ``retry_failed``: bad files are tried again;
    ``kept_roots``: roots that vanished (:func:`vanished_roots`), whose rows stay.
    """
    items, skipped, backfill = state.items, state.skipped, state.backfill
    todo: list[FileEntry] = []
    need: dict[str, frozenset[str]] = {}
    unchanged = 0
    recapture: list[tuple[str, str | None]] = []
    for e in entries:
        if up_to_date(e, items.get(e.path)):
            if e.path not in backfill:
                unchanged += 1
                if e.path in state.uncaptured:
                    recapture.append((e.path, items[e.path].kind))
                continue
            need[e.path] = frozenset(backfill[e.path])
            todo.append(e)
            continue
        sk = skipped.get(e.path)
        if up_to_date(e, sk):
            retry = (sk.code == SkipCode.UNSUPPORTED and sk.kind in supported) or (
                retry_failed and sk.code == SkipCode.BAD)
            if not retry:
                unchanged += 1
                continue
        todo.append(e)

    # Files gone from disk (under the roots scanned, outside folders we could not read).
    seen = {e.path for e in entries}
    unreadable = [p.path for p in problems] + list(kept_roots)

    def gone(paths: Iterable[str]) -> list[str]:
        return [p for p in paths if under(p, roots) and p not in seen
                and not under(p, unreadable)]

    gone_items, gone_skips = gone(items), gone(skipped)
    # Skip records of files that have up-to-date rows (a run killed between commits).
    by_path = {e.path: e for e in entries}
    stale_skips = [p for p in skipped if p in items and p in by_path
                   and up_to_date(by_path[p], items[p])]
    repairs = [(p, st) for p, st in state.orphans.items()
               if p in by_path and up_to_date(by_path[p], st)]
    # Content that can be copied instead of embedded: complete files with every vector.
    known = frozenset(s.fingerprint for p, s in items.items()
                      if s.fingerprint and p not in backfill)
    return RunPlan(
        todo=todo, need=need, unchanged=unchanged, gone_items=gone_items,
        gone_skips=gone_skips, stale_skips=stale_skips, repairs=repairs,
        problems=list(problems), known_fingerprints=known,
        known_items=set(items) - set(gone_items),
        known_skipped=set(skipped) - set(gone_skips) - set(stale_skips),
        complete=set(items) - set(backfill),
        recapture=recapture,
    )
