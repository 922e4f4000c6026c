"""One indexing run: scan -> diff with the store -> decode (workers) -> embed -> write.

Crash safety: rows are keyed by a stable id and written in batches, each batch one
LanceDB commit. A run killed at any point leaves the last commit; the next run
diffs the disk against the store again and does only what is missing.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field

import numpy as np

from indexer.encoders.base import Encoder
from indexer.image_decode import DEFAULT_MAX_PIXELS
from indexer.scan import FileEntry, ScanProblem, scan
from indexer.worker import (
    DecodeSettings,
    FileResult,
    default_workers,
    init_worker,
    process_file,
    process_file_with,
)
from search.store import CODE_BAD, CODE_NOT_MEDIA, CODE_UNSUPPORTED, FileState, Store, item_id

SUPPORTED_KINDS = {"image"}
PHOTO = "photo"


@dataclass
class IndexOptions:
    """Knobs of an indexing run (CLI flags map onto these)."""

    batch_size: int = 32  # images per encoder call
    workers: int = field(default_factory=default_workers)  # decode processes; 0 = in-process
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images above this many pixels
    draft_factor: float | None = 2.0  # JPEG draft decode down to this multiple of model input
    commit_rows: int = 256  # commit when this many rows are pending...
    commit_seconds: float = 10.0  # ...or this long has passed since the last commit
    retry_failed: bool = False  # look again at files skipped as bad
    progress: bool = True  # show a progress bar on stderr


@dataclass
class IndexReport:
    """What a run did (printed by the CLI, returned to callers)."""

    files_seen: int = 0
    unchanged: int = 0
    to_process: int = 0
    embedded: int = 0
    reused: int = 0  # vectors reused from identical content (moves, copies)
    skipped: int = 0  # bad files recorded with a reason
    unsupported: int = 0  # media this version does not index (recorded, retried later)
    not_media: int = 0
    removed: int = 0  # files gone from disk, rows deleted
    seconds: float = 0.0
    index_version: int = 0

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _up_to_date(e: FileEntry, st: FileState | None) -> bool:
    return st is not None and st.size == e.size and st.mtime_ns == e.mtime_ns


class _Writer:
    """Buffers rows and skip records; commits them in batches, each batch atomically."""

    def __init__(self, store: Store, column: str, options: IndexOptions, report: IndexReport,
                 known_items: set[str], known_skipped: set[str], snapshot: int | None = None):
        self.store, self.column, self.options, self.report = store, column, options, report
        self.snapshot = snapshot  # items version the run started from: where reuse looks
        self.known_items, self.known_skipped = known_items, known_skipped
        self.rows: list[dict] = []
        self.reuse: list[FileResult] = []  # waiting for a vector looked up by fingerprint
        self.skips: list[dict] = []
        self.run_vectors: dict[str, tuple[np.ndarray, int, int]] = {}  # fp -> vector, w, h
        self.last_commit = time.monotonic()

    def pending(self) -> int:
        return len(self.rows) + len(self.reuse) + len(self.skips)

    def add_vector(self, r: FileResult, vec: np.ndarray, width: int, height: int) -> None:
        self.rows.append({
            "id": item_id(r.path, PHOTO), "path": r.path, "kind": PHOTO, "size": r.size,
            "mtime_ns": r.mtime_ns, "fingerprint": r.fingerprint, "width": width,
            "height": height, "timestamp": None, "indexed_at": time.time(),
            self.column: vec.astype(np.float32),
        })

    def add_skip(self, r: FileResult) -> None:
        self.skips.append({
            "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns, "kind": r.kind,
            "code": r.code, "reason": r.reason, "at": time.time(),
        })

    def maybe_commit(self) -> None:
        if (self.pending() >= self.options.commit_rows
                or time.monotonic() - self.last_commit >= self.options.commit_seconds):
            self.commit()

    def commit(self) -> None:
        if self.reuse:
            missing = {r.fingerprint for r in self.reuse if r.fingerprint not in self.run_vectors}
            # Looked up as of the run's start: this run's own commits may already have
            # given a swapped or rewritten file's old row new content.
            found = self.store.rows_by_fingerprint(missing, self.column, self.snapshot)
            for r in self.reuse:
                if r.fingerprint in self.run_vectors:
                    vec, w, h = self.run_vectors[r.fingerprint]
                    self.add_vector(r, vec, w, h)
                elif r.fingerprint in found:
                    row = found[r.fingerprint]
                    self.add_vector(r, np.asarray(row[self.column], np.float32),
                                    row["width"], row["height"])
                else:  # the source row vanished meanwhile; the next run embeds this file
                    continue
                self.report.reused += 1
            self.reuse = []
        if self.rows:
            self.store.upsert_items(self.rows)
            paths = [r["path"] for r in self.rows]
            stale = [p for p in paths if p in self.known_skipped]
            if stale:  # files that were bad before and are good now
                self.store.delete_paths(stale, items=False)
                self.known_skipped.difference_update(stale)
            self.known_items.update(paths)
            self.rows = []
        if self.skips:
            gone_bad = [s["path"] for s in self.skips if s["path"] in self.known_items]
            if gone_bad:  # files that had rows and are now unreadable
                self.store.delete_paths(gone_bad, skipped=False)
                self.known_items.difference_update(gone_bad)
            self.store.upsert_skipped(self.skips)
            self.known_skipped.update(s["path"] for s in self.skips)
            self.skips = []
        self.last_commit = time.monotonic()


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="indexing", disable=not enabled or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def _results(todo: list[FileEntry], settings: DecodeSettings, known: frozenset[str],
             options: IndexOptions) -> Iterator[FileResult]:
    """Process files in worker processes (or in-process), yielding results as they finish.

    A worker that dies (a decoder crash) breaks the pool: the files in flight are
    retried in a new pool, and a file that breaks it twice is reported as bad.
    """
    if options.workers <= 0:
        for e in todo:
            yield process_file_with(e.path, e.size, e.mtime_ns, settings, known)
        return
    ctx = multiprocessing.get_context("spawn")  # Lance and torch are not fork-safe

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(options.workers, mp_context=ctx, initializer=init_worker,
                                   initargs=(settings, known))

    pool = new_pool()
    queue = list(reversed(todo))
    attempts: dict[str, int] = {}
    inflight: dict[Future, FileEntry] = {}
    limit = options.workers * 4 + options.batch_size
    try:
        while queue or inflight:
            while queue and len(inflight) < limit:
                e = queue.pop()
                try:
                    inflight[pool.submit(process_file, e.path, e.size, e.mtime_ns)] = e
                except BrokenProcessPool:
                    queue.append(e)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                e = inflight.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    attempts[e.path] = attempts.get(e.path, 0) + 1
                    if attempts[e.path] >= 2:
                        yield FileResult(e.path, e.size, e.mtime_ns, code=CODE_BAD,
                                         reason="the image decoder crashed on this file")
                    else:
                        queue.append(e)
                except Exception as exc:  # a bug in a worker: report the file, go on
                    yield FileResult(e.path, e.size, e.mtime_ns, code=CODE_BAD,
                                     reason=f"worker error: {type(exc).__name__}: {exc}")
            if broken:
                queue.extend(inflight.values())
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def index_paths(roots: Sequence[str], store: Store, encoder: Encoder,
                options: IndexOptions | None = None) -> IndexReport:
    """Index (or re-index) the files under ``roots`` into ``store`` with ``encoder``.

    Only new and changed files are decoded; identical content reuses its vector;
    files gone from under ``roots`` lose their rows; bad files are recorded with a
    reason. The FAISS index is rebuilt at the end so it matches the store.
    """
    from search.ann import build_index, saved_info

    options = options or IndexOptions()
    t0 = time.monotonic()
    report = IndexReport()
    column = store.register_encoder(encoder.spec)
    store.items()  # create the table with the vector column before workers start
    start_version = store.version()
    roots = [os.path.abspath(r) for r in roots]

    problems: list[ScanProblem] = []
    entries = list(scan(roots, problems))
    report.files_seen = len(entries)
    item_states = store.item_states()
    skipped_states = store.skipped_states()

    todo: list[FileEntry] = []
    for e in entries:
        if _up_to_date(e, item_states.get(e.path)):
            report.unchanged += 1
            continue
        sk = skipped_states.get(e.path)
        if _up_to_date(e, sk):
            retry = (sk.code == CODE_UNSUPPORTED and sk.kind in SUPPORTED_KINDS) or (
                options.retry_failed and sk.code == CODE_BAD)
            if not retry:
                report.unchanged += 1
                continue
        todo.append(e)
    report.to_process = len(todo)

    # Files gone from disk (under the roots scanned, outside folders we could not read).
    seen = {e.path for e in entries}
    unreadable = [p.path for p in problems]
    gone_items = [p for p in item_states if _under(p, roots) and p not in seen
                  and not _under(p, unreadable)]
    gone_skips = [p for p in skipped_states if _under(p, roots) and p not in seen
                  and not _under(p, unreadable)]
    # Skip records of files that have up-to-date rows (a run killed between commits).
    by_path = {e.path: e for e in entries}
    stale_skips = [p for p in skipped_states if p in item_states and p in by_path
                   and _up_to_date(by_path[p], item_states[p])]
    # Rows of vanished files are deleted at the end of the run, so that a moved or
    # renamed file can still reuse their vectors.
    if stale_skips:
        store.delete_paths(stale_skips, items=False)
    writer = _Writer(store, column, options, report, set(item_states) - set(gone_items),
                     set(skipped_states) - set(gone_skips) - set(stale_skips), start_version)
    if problems:  # folders that could not be listed, names that are not UTF-8...
        report.skipped += len(problems)
        writer.skips.extend({"path": p.path, "size": None, "mtime_ns": None, "kind": None,
                             "code": CODE_BAD, "reason": p.reason, "at": time.time()}
                            for p in problems)

    known = frozenset(s.fingerprint for s in item_states.values() if s.fingerprint)
    settings = DecodeSettings(encoder.preprocess, options.max_pixels, options.draft_factor)
    batch: list[FileResult] = []

    def embed_batch() -> None:
        fresh: list[FileResult] = []
        fresh_fps: set[str | None] = set()
        for r in batch:  # identical content decoded twice in one run: embed it once
            if r.fingerprint in writer.run_vectors or r.fingerprint in fresh_fps:
                writer.reuse.append(r)
            else:
                fresh.append(r)
                fresh_fps.add(r.fingerprint)
        if fresh:
            vecs = encoder.embed_pixels(np.stack([r.pixels for r in fresh]))
            for r, v in zip(fresh, vecs, strict=True):
                writer.run_vectors[r.fingerprint] = (v, r.width, r.height)
                writer.add_vector(r, v, r.width, r.height)
                report.embedded += 1
        batch.clear()

    bar = _progress(len(todo), options.progress)
    try:
        for r in _results(todo, settings, known, options):
            if r.code is not None:
                if r.code == CODE_NOT_MEDIA:
                    report.not_media += 1
                elif r.code == CODE_UNSUPPORTED:
                    report.unsupported += 1
                else:
                    report.skipped += 1
                writer.add_skip(r)
            elif r.reused:
                writer.reuse.append(r)
            else:
                batch.append(r)
                if len(batch) >= options.batch_size:
                    embed_batch()
            writer.maybe_commit()
            bar.update(1)
            bar.set_postfix(embedded=report.embedded, reused=report.reused,
                            skipped=report.skipped, refresh=False)
        embed_batch()
        writer.commit()
    except KeyboardInterrupt:
        writer.commit()  # keep what was already embedded; the next run does the rest
        raise
    finally:
        bar.close()
    if gone_items or gone_skips:
        store.delete_paths(gone_items + gone_skips)
        report.removed = len(gone_items)
    if store.version() != start_version:
        store.optimize()
    saved = saved_info(store, column)
    if saved is None or saved.version != store.version():
        saved = build_index(store, column)
    report.index_version = saved.version
    report.seconds = time.monotonic() - t0
    store.update_meta(last_run={"finished": time.time(), "roots": roots, **report.as_dict()})
    return report
