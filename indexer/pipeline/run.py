"""One indexing run: prepare -> plan (the diff with the store) -> execute (decode in
workers, embed, write) -> finish (deletions, compaction, FAISS, tags, meta).

Crash safety: rows are keyed by a stable id and written in batches, each batch one
LanceDB commit. A run killed at any point leaves the last commit; the next run
diffs the disk against the store again and does only what is missing.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

from loupe.indexer.decode.pool import decode_files
from loupe.indexer.decode.results import DecodeSettings, FileResult
from loupe.indexer.encoders import AudioPreprocess, Encoder, EncoderSet, ImagePreprocess
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import MediaKind
from loupe.indexer.ocr.update import update_texts
from loupe.indexer.pipeline.embedder import Embedder
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.plan import Column, RunPlan, plan_run, read_state, vanished_roots
from loupe.indexer.pipeline.ray import index_on_ray
from loupe.indexer.pipeline.recapture import recapture
from loupe.indexer.pipeline.writer import ReuseBook, Writer
from loupe.indexer.scan import ScanProblem, scan
from loupe.search.ann import load_index, saved_info
from loupe.search.explain.tags import tagging_config, update_tags
from loupe.search.store import Store
from loupe.search.text.table import ocr_config

SPILL_DIR = ".spill"  # inside the index folder: one sub-folder per run


def prepare(store: Store, encoders: Sequence[Encoder]) -> tuple[list[Column], DecodeSettings]:
    """Register the run's encoders with the store and create its tables (before workers
    start); returns the run's columns and the inputs the workers must make."""
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
        columns.append(Column(name, preprocesses.index(enc.preprocess), enc.audio is not None,
                              enc))
    if len({c.name for c in columns}) != len(columns):
        raise LoupeError("the same model was given twice")
    store.items()
    store.add_capture_columns()  # an items table made before captures were read
    store.files()
    return columns, DecodeSettings(tuple(preprocesses), audio)


def _own_spill(store: Store) -> str:
    """This run's own spill folder, made anew; the spills other runs left are removed
    (they are dead: this run holds the writer lock)."""
    root = os.path.join(store.dir, SPILL_DIR)
    if os.path.isdir(root):
        for name in os.listdir(root):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    path = os.path.join(root, f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path)
    return path


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="indexing", disable=not enabled or total == 0,
                dynamic_ncols=True, smoothing=0.1)


def execute(plan: RunPlan, settings: DecodeSettings, store: Store, columns: list[Column],
            options: IndexOptions, report: IndexReport, writer: Writer,
            embedder: Embedder, run_time: float) -> None:
    """Decode the plan's files (on this machine's workers, or on Ray), embed and write
    them; what was committed stays when interrupted."""
    all_columns = frozenset(c.name for c in columns)
    bar = _progress(len(plan.todo), options.progress)
    done = 0

    def handled(r: FileResult) -> None:
        nonlocal done
        bar.update(1)
        bar.set_postfix(items=report.embedded, reused=report.reused,
                        skipped=report.skipped, refresh=False)
        done += 1
        if options.on_progress is not None:
            options.on_progress(done, len(plan.todo))

    try:
        local = plan.todo
        if options.ray is not None:
            local = index_on_ray(plan, settings, options, store, columns, writer, report,
                                 run_time, handled)
        for r in decode_files(local, settings, plan.known_fingerprints, options.workers,
                              options.workers * 4 + options.batch_size, options.video_segment):
            if r.code is not None:
                writer.add_skip(r)
                embedder.drop(r.path)
            elif r.reused:
                writer.book.waiting.append(r)
            else:
                embedder.add(r, plan.need.get(r.path, all_columns))
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


def finish(store: Store, plan: RunPlan, report: IndexReport, columns: list[Column],
           encoders: Sequence[Encoder], incomplete: list[str], start_version: int,
           progress: bool = False) -> None:
    """Forget files gone from disk, compact, bring the FAISS indexes, tags and text read
    in pictures up to date, and record columns that are now complete."""
    if plan.gone_items or plan.gone_skips:
        store.delete_paths(plan.gone_items + plan.gone_skips)
        report.removed = len(plan.gone_items)
    if store.version() != start_version:
        store.optimize()
    for c in columns:  # brought up to date (incrementally when it can be)
        saved = saved_info(store, c.name)
        if saved is None or (saved.version, saved.capture_rev) != (store.version(),
                                                                   store.capture_rev()):
            load_index(store, c.name)
    if tagging_config(store):  # zero-shot tags for what this run added
        report.tagged = update_tags(store, EncoderSet(store.meta.encoders, given=encoders))
    if ocr_config(store):  # the text shown in what this run added
        ocr = update_texts(store, progress=progress)
        report.texts_read, report.texts_shared = ocr.read, ocr.shared
        report.texts_with_text, report.text_lines = ocr.with_text, ocr.lines
    report.index_version = store.version()
    by_name = {c.name: c for c in columns}
    for name in incomplete:  # files outside this run's roots may still lack vectors
        if not store.paths_missing(name, by_name[name].kinds):
            store.meta.mark_complete(name)


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
    options = options or IndexOptions()
    encoders = [encoders] if isinstance(encoders, Encoder) else list(encoders)
    if not encoders:
        raise LoupeError("no model to index with")
    with store.writing(options.command, wait=options.wait):
        return _index(roots, store, encoders, options)


def _index(roots: Sequence[str], store: Store, encoders: list[Encoder],
           options: IndexOptions) -> IndexReport:
    t0 = time.monotonic()
    run_time = time.time()
    report = IndexReport()
    columns, base_settings = prepare(store, encoders)
    start_version = store.version()
    roots = [os.path.abspath(r) for r in roots]
    supported = {MediaKind.IMAGE, MediaKind.VIDEO} | (
        {MediaKind.AUDIO} if base_settings.audio else set())

    missing = [r for r in roots if not (os.path.isdir(r) or os.path.isfile(r))]
    # Kept before any row is written (a killed run's rows are under them too): the index
    # serves only files that lie under a root it was built from.
    store.meta.add_roots([r for r in roots if r not in missing], run_time)
    problems: list[ScanProblem] = []
    entries = list(scan(roots, problems))
    report.files_seen = len(entries)
    state = read_state(store, columns, base_settings.audio is not None)
    vanished = vanished_roots(roots, missing, entries, problems, state)
    if options.prune:
        report.pruned_roots = vanished
        vanished = []
    else:
        report.kept_roots = vanished
    # A missing root is no bad file of the archive: it is kept or pruned, not recorded.
    problems = [p for p in problems if p.path not in missing]
    plan = plan_run(entries, problems, roots, state, supported, options.retry_failed, vanished)
    report.unchanged, report.to_process = plan.unchanged, len(plan.todo)
    # Rows of vanished files are deleted at the end of the run, so that a moved or
    # renamed file can still reuse their vectors.
    if plan.stale_skips:
        store.delete_paths(plan.stale_skips, items=False)
    book = ReuseBook()
    writer = Writer(store, columns, options, report, plan, start_version, run_time, book)
    writer.add_problems(plan.problems)
    embedder = Embedder(columns, writer, report, options.batch_size, book)

    spill_dir = _own_spill(store)
    settings = replace(base_settings, max_pixels=options.max_pixels,
                       draft_factor=options.draft_factor, frame_interval=options.frame_interval,
                       shot_threshold=options.shot_threshold, spill_dir=spill_dir)
    try:
        execute(plan, settings, store, columns, options, report, writer, embedder, run_time)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(spill_dir))  # .spill itself, now empty
        except OSError:
            pass
    # Files indexed before captures were read: their metadata alone, no model runs.
    report.recaptured = recapture(store, plan.recapture)
    finish(store, plan, report, columns, encoders, state.incomplete, start_version,
           options.progress)
    report.seconds = time.monotonic() - t0
    store.meta.update(last_run={"finished": time.time(), "roots": roots, **report.as_dict()})
    return report
