"""One indexing run: scan -> diff with the store -> decode (workers) -> embed -> write.

Crash safety: rows are keyed by a stable id and written in batches, each batch one
LanceDB commit. A run killed at any point leaves the last commit; the next run
diffs the disk against the store again and does only what is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from loupe.indexer.decode.pool import DEFAULT_SEGMENT_SECONDS, decode_files
from loupe.indexer.decode.worker import (
    DecodeSettings,
    FileResult,
    Item,
    default_workers,
)
from loupe.indexer.encoders.base import Encoder
from loupe.indexer.encoders.spec import AudioPreprocess, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.media.image import DEFAULT_MAX_PIXELS
from loupe.indexer.scan import FileEntry, ScanProblem, scan
from loupe.search.store.store import FileState, Store, item_id


@dataclass
class IndexOptions:
    """Knobs of an indexing run (CLI flags map onto these)."""

    batch_size: int = 32  # items per encoder call
    workers: int = field(default_factory=default_workers)  # decode processes; 0 = in-process
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images above this many pixels
    draft_factor: float | None = 2.0  # JPEG draft decode down to this multiple of model input
    frame_interval: float = 1.0  # seconds between sampled video frames
    # long videos are decoded in parallel segments of about this many seconds (None: not)
    video_segment: float | None = DEFAULT_SEGMENT_SECONDS
    shot_threshold: float | None = 0.35  # histogram distance counted as a cut (None: off)
    commit_rows: int = 256  # commit when this many rows are pending...
    commit_seconds: float = 10.0  # ...or this long has passed since the last commit
    retry_failed: bool = False  # look again at files skipped as bad
    # decode and embed on a Ray cluster: None = on this machine; "" = a local Ray;
    # "auto" or "ray://host:port" = that cluster (indexer/ray_index.py)
    ray: str | None = None
    progress: bool = True  # show a progress bar on stderr
    # called with (files done, files to do) after each file (the web UI's progress bar)
    on_progress: Callable[[int, int], None] | None = None


@dataclass
class IndexReport:
    """What a run did (printed by the CLI, returned to callers)."""

    files_seen: int = 0
    unchanged: int = 0
    to_process: int = 0
    embedded: int = 0  # items embedded (photos, frames, sound windows)
    reused: int = 0  # files whose vectors were reused from identical content (moves, copies)
    photos: int = 0  # files indexed, by media
    videos: int = 0
    audio_files: int = 0
    frames: int = 0  # video frames written
    sound_windows: int = 0  # audio windows written (audio files and soundtracks)
    partial: int = 0  # files indexed with a problem (a damaged tail...)
    skipped: int = 0  # bad files recorded with a reason
    unsupported: int = 0  # media this run cannot index (recorded, retried later)
    not_media: int = 0
    removed: int = 0  # files gone from disk, rows deleted
    tagged: int = 0  # photos and frames given zero-shot tags (an index with --tags)
    seconds: float = 0.0
    index_version: int = 0

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _up_to_date(e: FileEntry, st: FileState | None) -> bool:
    return st is not None and st.size == e.size and st.mtime_ns == e.mtime_ns


@dataclass
class _Column:
    """One encoder of the run and the model input it takes."""

    name: str
    encoder: Encoder
    image_input: int  # index into DecodeSettings.preprocesses
    audio: bool  # embeds sound windows too


@dataclass
class _Pending:
    """A file being embedded: its items wait in the batch queues until all are done."""

    result: FileResult
    need: frozenset[str]  # vector columns to compute for its items
    left: int = 0  # items not yet embedded
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # spilled inputs


def item_row(r: FileResult, item: Item, run_time: float) -> dict:
    """The items-table row of one item of a file (without its vectors)."""
    return {
        "id": item_id(r.path, item.kind, item.timestamp), "path": r.path, "kind": item.kind,
        "size": r.size, "mtime_ns": r.mtime_ns, "fingerprint": r.fingerprint,
        "width": item.width, "height": item.height, "timestamp": item.timestamp,
        "indexed_at": run_time, "end": item.end, "shot": item.shot, "silent": item.silent,
    }


class _Writer:
    """Buffers rows, file records and skip records; commits them in batches.

    A file's record is committed after (never before) all of its rows, and its rows
    from earlier runs that it no longer has are deleted in between: a run killed at any
    point leaves files either complete or without a record (so they are redone).
    """

    def __init__(self, store: Store, columns: list[_Column], options: IndexOptions,
                 report: IndexReport, known_items: set[str], known_skipped: set[str],
                 snapshot: int | None, run_time: float, complete: set[str]):
        self.store, self.columns, self.options, self.report = store, columns, options, report
        self.snapshot = snapshot  # items version the run started from: where reuse looks
        self.run_time = run_time  # indexed_at of every row this run writes
        self.known_items, self.known_skipped = known_items, known_skipped
        self.complete_paths = complete  # files whose rows may serve as reuse source
        self.rows: list[dict] = []
        self.files: list[dict] = []
        self.repairs: list[dict] = []  # file records of complete photos that lack one
        self.reuse: list[FileResult] = []  # waiting for rows looked up by fingerprint
        self.skips: list[dict] = []
        self.run_photos: dict[str, tuple[dict[str, np.ndarray], int, int]] = {}
        self.last_commit = time.monotonic()

    def pending(self) -> int:
        return len(self.rows) + len(self.reuse) + len(self.skips) + len(self.files)

    def add_item(self, r: FileResult, item: Item, vectors: dict[str, np.ndarray]) -> None:
        row = item_row(r, item, self.run_time)
        row.update(vectors)
        self.rows.append(row)

    def add_file(self, r: FileResult, rows: int) -> None:
        self.files.append({
            "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns,
            "fingerprint": r.fingerprint, "media": r.kind, "rows": rows,
            "duration": r.duration, "problem": r.problem, "indexed_at": self.run_time,
            "sound": r.sound,
        })
        _count_file(self.report, r.kind, r.problem)

    def add_skip(self, r: FileResult) -> None:
        self.skips.append({
            "path": r.path, "size": r.size, "mtime_ns": r.mtime_ns, "kind": r.kind,
            "code": r.code, "reason": r.reason, "at": time.time(),
        })
        self.rows = [row for row in self.rows if row["path"] != r.path]

    def maybe_commit(self) -> None:
        if (self.pending() >= self.options.commit_rows
                or time.monotonic() - self.last_commit >= self.options.commit_seconds):
            self.commit()

    def _resolve_reuse(self) -> None:
        """Copy the rows of files with identical content to the moved/copied files."""
        missing = {r.fingerprint for r in self.reuse if r.fingerprint not in self.run_photos}
        names = [c.name for c in self.columns]
        # Looked up as of the run's start: this run's own commits may already have
        # given a swapped or rewritten file's old rows new content.
        found = self.store.rows_by_fingerprint(missing, names, self.snapshot,
                                               self.complete_paths)
        for r in self.reuse:
            if r.fingerprint in self.run_photos:
                vecs, w, h = self.run_photos[r.fingerprint]
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
            _count_items(self.report, kinds)
            self.report.reused += 1
        self.reuse = []

    def commit(self) -> None:
        if self.reuse:
            self._resolve_reuse()
        if self.rows:
            # Last one wins for an id written twice (a file retried after a worker crash).
            self.store.upsert_items(list({r["id"]: r for r in self.rows}.values()))
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


def _kinds_of(c: _Column) -> list[str]:
    """Item kinds that get a vector in ``c``'s column."""
    return [ItemKind.PHOTO, ItemKind.FRAME] + ([ItemKind.AUDIO] if c.audio else [])


def _count_file(report: IndexReport, media: str | None, problem: str | None) -> None:
    if media == MediaKind.VIDEO:
        report.videos += 1
    elif media == MediaKind.AUDIO:
        report.audio_files += 1
    else:
        report.photos += 1
    if problem:
        report.partial += 1


def _count_items(report: IndexReport, kinds: Iterable[str]) -> None:
    for k in kinds:
        if k == ItemKind.FRAME:
            report.frames += 1
        elif k == ItemKind.AUDIO:
            report.sound_windows += 1


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="indexing", disable=not enabled or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def _columns(store: Store, encoders: Sequence[Encoder]) -> tuple[list[_Column], DecodeSettings]:
    """Register the run's encoders with the store; the inputs the workers must make."""
    preprocesses: list[ImagePreprocess] = []
    audio: AudioPreprocess | None = None
    columns = []
    for enc in encoders:
        name = store.register_encoder(enc.spec)
        if enc.preprocess not in preprocesses:
            preprocesses.append(enc.preprocess)
        if enc.audio is not None:
            if audio is not None and enc.audio != audio:
                raise LoupeError("two audio models with different audio preprocessing in one "
                                 "run: index them one at a time")
            audio = enc.audio
        columns.append(_Column(name, enc, preprocesses.index(enc.preprocess),
                               enc.audio is not None))
    if len({c.name for c in columns}) != len(columns):
        raise LoupeError("the same model was given twice")
    return columns, DecodeSettings(tuple(preprocesses), audio)


def _update_tags(store: Store, encoders: Sequence[Encoder]) -> int:
    """Zero-shot tags for what this run added, when the index is tagged."""
    from loupe.search.explain.tags import tagging_config, update_tags

    if not tagging_config(store):
        return 0
    by_column = {e.spec.column: e for e in encoders}

    def encoder_of(column: str) -> Encoder:
        if column not in by_column:
            from loupe.indexer.encoders import LazyEncoder

            by_column[column] = LazyEncoder(store.encoders[column])
        return by_column[column]

    return update_tags(store, encoder_of)


def index_paths(roots: Sequence[str], store: Store, encoders: Encoder | Sequence[Encoder],
                options: IndexOptions | None = None) -> IndexReport:
    """Index (or re-index) the files under ``roots`` into ``store`` with ``encoders``.

    Photos become one row each, videos one row per sampled frame (and per sound window
    when an audio model is among ``encoders``), audio files one row per window. Every
    model gets its own vector column; a model new to the index is computed for the
    files already there. Only new and changed files are decoded; identical content
    reuses its vectors; files gone from under ``roots`` lose their rows; bad files are
    recorded with a reason. The FAISS indexes are brought up to date at the end.
    """
    from loupe.search.ann.index import load_index, saved_info

    options = options or IndexOptions()
    encoders = [encoders] if isinstance(encoders, Encoder) else list(encoders)
    if not encoders:
        raise LoupeError("no model to index with")
    t0 = time.monotonic()
    run_time = time.time()
    report = IndexReport()
    columns, base_settings = _columns(store, encoders)
    store.items()  # create the tables before workers start
    store.files()
    start_version = store.version()
    roots = [os.path.abspath(r) for r in roots]
    supported = {MediaKind.IMAGE, MediaKind.VIDEO} | ({MediaKind.AUDIO} if base_settings.audio else set())

    problems: list[ScanProblem] = []
    entries = list(scan(roots, problems))
    report.files_seen = len(entries)
    item_states = store.item_states()
    # Photos committed by a run killed before their file records: complete all the same.
    orphans = store.photo_states(exclude=[p for p, st in item_states.items()
                                          if st.kind == MediaKind.IMAGE])
    item_states.update(orphans)
    skipped_states = store.skipped_states()

    # Files indexed before a model joined the index: compute what they lack. (Only for
    # columns not known complete: the lookup scans the whole items table.)
    backfill: dict[str, set[str]] = {}
    incomplete = [c for c in columns if c.name in store.incomplete_columns]
    for c in incomplete:
        for p in store.paths_missing(c.name, _kinds_of(c)):
            backfill.setdefault(p, set()).add(c.name)
    if base_settings.audio is not None:
        audio_cols = {c.name for c in columns if c.audio}
        for f in store.file_rows("media = 'video' AND (sound IS NULL OR NOT sound)"):
            backfill.setdefault(f["path"], set()).update(audio_cols)

    all_columns = frozenset(c.name for c in columns)
    todo: list[FileEntry] = []
    need: dict[str, frozenset[str]] = {}
    for e in entries:
        if _up_to_date(e, item_states.get(e.path)):
            if e.path not in backfill:
                report.unchanged += 1
                continue
            need[e.path] = frozenset(backfill[e.path])
            todo.append(e)
            continue
        sk = skipped_states.get(e.path)
        if _up_to_date(e, sk):
            retry = (sk.code == SkipCode.UNSUPPORTED and sk.kind in supported) or (
                options.retry_failed and sk.code == SkipCode.BAD)
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
    writer = _Writer(store, columns, options, report, set(item_states) - set(gone_items),
                     set(skipped_states) - set(gone_skips) - set(stale_skips), start_version,
                     run_time, set(item_states) - set(backfill))
    for p, st in orphans.items():  # write the file records they lack
        if p in by_path and _up_to_date(by_path[p], st):
            writer.repairs.append({"path": p, "size": st.size, "mtime_ns": st.mtime_ns,
                                 "fingerprint": st.fingerprint, "media": MediaKind.IMAGE, "rows": 1,
                                 "duration": None, "problem": None, "indexed_at": run_time,
                                 "sound": False})
    if problems:  # folders that could not be listed, names that are not UTF-8...
        report.skipped += len(problems)
        writer.skips.extend({"path": p.path, "size": None, "mtime_ns": None, "kind": None,
                             "code": SkipCode.BAD, "reason": p.reason, "at": time.time()}
                            for p in problems)

    # Content that can be copied instead of embedded: complete files with every vector.
    known = frozenset(s.fingerprint for p, s in item_states.items()
                      if s.fingerprint and p not in backfill)
    spill_dir = os.path.join(store.dir, ".spill")
    shutil.rmtree(spill_dir, ignore_errors=True)  # left by a killed run
    os.makedirs(spill_dir, exist_ok=True)
    settings = replace(base_settings, max_pixels=options.max_pixels,
                       draft_factor=options.draft_factor, frame_interval=options.frame_interval,
                       shot_threshold=options.shot_threshold, spill_dir=spill_dir)
    embedder = _Embedder(columns, writer, report, options.batch_size)

    bar = _progress(len(todo), options.progress)
    done = 0

    def handled(r: FileResult) -> None:
        nonlocal done
        bar.update(1)
        bar.set_postfix(items=report.embedded, reused=report.reused,
                        skipped=report.skipped, refresh=False)
        done += 1
        if options.on_progress is not None:
            options.on_progress(done, len(todo))

    try:
        local = todo
        if options.ray is not None:
            local = _index_on_ray(todo, need, all_columns, settings, known, options, store,
                                  columns, writer, report, run_time, handled)
        for r in decode_files(local, settings, known, options.workers,
                              options.workers * 4 + options.batch_size, options.video_segment):
            if r.code is not None:
                _skip(r, report, writer)
                embedder.drop(r.path)
            elif r.reused:
                writer.reuse.append(r)
            else:
                embedder.add(r, need.get(r.path, all_columns))
            writer.maybe_commit()
            handled(r)
        embedder.flush()
        writer.commit()
    except KeyboardInterrupt:
        embedder.discard()
        writer.commit()  # keep what was already embedded; the next run does the rest
        raise
    finally:
        bar.close()
        embedder.discard()
        shutil.rmtree(spill_dir, ignore_errors=True)
    if gone_items or gone_skips:
        store.delete_paths(gone_items + gone_skips)
        report.removed = len(gone_items)
    if store.version() != start_version:
        store.optimize()
    for c in columns:  # brought up to date (incrementally when it can be)
        saved = saved_info(store, c.name)
        if saved is None or saved.version != store.version():
            load_index(store, c.name)
    report.tagged = _update_tags(store, encoders)
    report.index_version = store.version()
    report.seconds = time.monotonic() - t0
    for c in incomplete:  # files outside this run's roots may still lack vectors
        if not store.paths_missing(c.name, _kinds_of(c)):
            store.mark_complete(c.name)
    store.update_meta(last_run={"finished": time.time(), "roots": roots, **report.as_dict()})
    return report


def _skip(r: FileResult, report: IndexReport, writer: _Writer) -> None:
    """Count and record a file that is not indexed."""
    if r.code == SkipCode.NOT_MEDIA:
        report.not_media += 1
    elif r.code == SkipCode.UNSUPPORTED:
        report.unsupported += 1
    else:
        report.skipped += 1
    writer.add_skip(r)


def _index_on_ray(todo: list[FileEntry], need: dict[str, frozenset[str]],
                  all_columns: frozenset[str], settings, known: frozenset[str],
                  options: IndexOptions, store: Store, columns: list[_Column],
                  writer: _Writer, report: IndexReport, run_time: float,
                  handled: Callable[[FileResult], None]) -> list[FileEntry]:
    """Decode, embed and write ``todo``'s new rows on Ray (indexer/ray_index.py),
    recording each wave's files after its rows; returns the files left for this machine
    (those that only lack a model added to the index: a partial row update)."""
    from loupe.indexer.pipeline import ray as ray_index

    missing = sorted(set(store.encoders) - all_columns)
    if missing:
        raise LoupeError("--ray indexes with every model of the index, and this index also "
                         f"has {', '.join(missing)}: name all of its models, or leave out "
                         "--ray")
    remote = [e for e in todo if need.get(e.path, all_columns) == all_columns]
    local = [e for e in todo if need.get(e.path, all_columns) != all_columns]
    if not remote:
        return local
    ray_index.connect(options.ray or None, options.workers, options.progress)
    writer.commit()  # file-level bookkeeping so far lands before the Ray waves
    schema = store.items().schema
    uri = ray_index.items_uri(store)
    # spill_dir is per task on the cluster: each decode task makes its own
    remote_settings = replace(settings, spill_dir=None)
    for results in ray_index.embed_on_ray(remote, remote_settings, known, columns, uri,
                                          schema, run_time, options.batch_size):
        for r in results:
            if r.code is not None:
                _skip(r, report, writer)
            elif r.reused:
                writer.reuse.append(r)
            else:  # its rows are in the store already
                report.embedded += len(r.items)
                _count_items(report, [i.kind for i in r.items])
                writer.add_file(r, len(r.items))
            handled(r)
        writer.commit()
    return local


class _Embedder:
    """Batches items of many files per model input, embeds them, hands rows to the writer.

    Photos, frames and sound windows of different files share batches. A file's record
    goes to the writer once its last item is embedded (and its spill is then deleted).
    """

    def __init__(self, columns: list[_Column], writer: _Writer, report: IndexReport,
                 batch_size: int):
        self.columns, self.writer, self.report = columns, writer, report
        self.batch_size = batch_size
        self.all_columns = frozenset(c.name for c in columns)
        self.queues: dict[str, list[tuple[_Pending, Item]]] = {"image": [], "audio": []}
        self.files: dict[str, _Pending] = {}
        self.twins: dict[str, list[FileResult]] = {}  # photos waiting for a queued twin

    def add(self, r: FileResult, need: frozenset[str]) -> None:
        if r.kind == MediaKind.IMAGE and r.fingerprint is not None and need == self.all_columns:
            # Identical content decoded twice in one run: embed it once.
            if r.fingerprint in self.writer.run_photos:
                self.writer.reuse.append(r)
                return
            if r.fingerprint in self.twins:
                self.twins[r.fingerprint].append(r)
                return
            self.twins[r.fingerprint] = []
        p = _Pending(r, need, left=len(r.items))
        if r.spill is not None:
            p.arrays = r.spill.arrays()
        self.files[r.path] = p
        if not r.items:
            self._done(p)
            return
        for item in r.items:
            self.queues["audio" if item.kind == ItemKind.AUDIO else "image"].append((p, item))
        for q in self.queues:
            while len(self.queues[q]) >= self.batch_size:
                self._embed(q, self.batch_size)

    def flush(self) -> None:
        for q in self.queues:
            while self.queues[q]:
                self._embed(q, self.batch_size)

    def drop(self, path: str) -> None:
        """Forget a file's queued items (it turned out bad on a retry)."""
        p = self.files.pop(path, None)
        if p is not None:
            for q in self.queues:
                self.queues[q] = [(f, i) for f, i in self.queues[q] if f is not p]
            self._remove_spill(p)

    def discard(self) -> None:
        """Drop everything queued (interrupted run) and delete the spills."""
        for p in list(self.files.values()):
            self._remove_spill(p)
        self.files.clear()
        for q in self.queues:
            self.queues[q] = []

    @staticmethod
    def _remove_spill(p: _Pending) -> None:
        p.arrays = {}
        if p.result.spill is not None:
            p.result.spill.remove()

    @staticmethod
    def _input(p: _Pending, item: Item, key: str) -> np.ndarray:
        if p.result.pixels is not None:  # a photo: inputs inline
            return p.result.pixels[int(key[3:])]
        return p.arrays[key][item.src]

    def _embed(self, q: str, n: int) -> None:
        batch, self.queues[q] = self.queues[q][:n], self.queues[q][n:]
        vectors: list[dict[str, np.ndarray]] = [{} for _ in batch]
        for c in self.columns:
            if q == "audio" and not c.audio:
                continue
            rows = [i for i, (p, _) in enumerate(batch) if c.name in p.need]
            if not rows:
                continue
            key = "audio" if q == "audio" else f"img{c.image_input}"
            inputs = np.stack([self._input(batch[i][0], batch[i][1], key) for i in rows])
            out = (c.encoder.embed_audio(inputs) if q == "audio"
                   else c.encoder.embed_pixels(inputs))
            for i, v in zip(rows, out, strict=True):
                vectors[i][c.name] = v.astype(np.float32)
        for (p, item), vecs in zip(batch, vectors, strict=True):
            self.writer.add_item(p.result, item, vecs)
            if item.kind == ItemKind.PHOTO and p.need == self.all_columns:
                self.writer.run_photos[p.result.fingerprint] = (vecs, item.width, item.height)
                self.writer.reuse.extend(self.twins.pop(p.result.fingerprint, []))
            self.report.embedded += 1
            p.left -= 1
            if p.left == 0:
                self._done(p)

    def _done(self, p: _Pending) -> None:
        _count_items(self.report, [i.kind for i in p.result.items])
        self.writer.add_file(p.result, len(p.result.items))
        self.files.pop(p.result.path, None)
        self._remove_spill(p)
