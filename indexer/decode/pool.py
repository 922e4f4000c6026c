"""Decode files in a pool of worker processes, yielding each file's result as it is ready.

Files are spread over the workers one per task. A long video would keep one worker busy
for its whole length while the others idle (the end of a run, an archive of a few
films), so a video longer than two segments is decoded in segments of about
``split_seconds``, each a task of its own, plus one task for its soundtrack; the parts
are joined into exactly the result one pass gives (:func:`loupe.indexer.decode.worker.join_video`).
When they do not join (irregular timestamps, a seek that lands elsewhere), or a part
fails, the video is decoded again in one pass.

A worker that dies (a decoder crash) breaks the pool: the tasks in flight are retried in
a new pool. A file caught in two crashes is retried alone, and reported as bad when it
breaks the pool by itself.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from loupe.indexer.decode.results import SOUNDTRACK, DecodeSettings, FileResult, PartResult
from loupe.indexer.decode.worker import (
    init_worker,
    join_video,
    process_file,
    process_file_with,
    process_part,
)
from loupe.indexer.errors import IndexFault
from loupe.indexer.kinds import SkipCode
from loupe.indexer.scan import FileEntry

DEFAULT_SEGMENT_SECONDS = 120.0  # a split video's segments (a few thousand frames each)


@dataclass
class _Task:
    entry: FileEntry
    part: int | None = None  # a split video's segment (or SOUNDTRACK); None: the whole file
    split: bool = True  # a whole-file task may answer with a plan to split
    alone: bool = False  # run with no other task in flight (it may crash the pool)


@dataclass
class _Split:
    """A video being decoded in parts."""

    plan: FileResult
    waiting: int
    parts: dict[int, PartResult] = field(default_factory=dict)


def decode_files(todo: list[FileEntry], settings: DecodeSettings, known: frozenset[str],
                 workers: int, in_flight: int,
                 split_seconds: float | None = DEFAULT_SEGMENT_SECONDS,
                 tasks: tuple[Callable[..., FileResult], Callable[..., PartResult]] = (
                     process_file, process_part)) -> Iterator[FileResult]:
    """Decode ``todo`` on ``workers`` processes (0: in this process), yielding results as
    they finish. ``in_flight`` bounds the tasks submitted ahead; ``split_seconds``
    (None or 0: never) sets the segments of long videos, split only with 2+ workers.
    ``tasks`` are the worker functions (module-level: they are pickled by name)."""
    if workers <= 0:
        for e in todo:
            yield process_file_with(e.path, e.size, e.mtime_ns, settings, known)
        return
    yield from _Pool(todo, settings, known, workers, in_flight,
                     split_seconds if workers >= 2 else None, tasks).run()


class _Pool:
    def __init__(self, todo: list[FileEntry], settings: DecodeSettings, known: frozenset[str],
                 workers: int, in_flight: int, split_seconds: float | None,
                 tasks: tuple[Callable[..., FileResult], Callable[..., PartResult]]):
        self.file_task, self.part_task = tasks
        self.settings, self.known, self.workers = settings, known, workers
        self.limit, self.split_seconds = in_flight, split_seconds or None
        self.queue = [_Task(e) for e in reversed(todo)]  # a stack: next task last
        self.attempts: dict[str, int] = {}
        self.inflight: dict[Future, _Task] = {}
        self.splits: dict[str, _Split] = {}
        self.ctx = multiprocessing.get_context("spawn")  # Lance and torch are not fork-safe

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self.ctx, initializer=init_worker,
                                   initargs=(self.settings, self.known))

    def _submit(self, pool: ProcessPoolExecutor, t: _Task) -> Future:
        e, attempt = t.entry, self.attempts.get(t.entry.path, 0)
        if t.part is None:
            return pool.submit(self.file_task, e.path, e.size, e.mtime_ns, attempt,
                               self.split_seconds if t.split else None)
        plan = self.splits[e.path].plan
        assert plan.segments is not None
        return pool.submit(self.part_task, e.path, e.size, e.mtime_ns, t.part, plan.segments,
                           attempt)

    def run(self) -> Iterator[FileResult]:
        pool = self._new_pool()
        try:
            while self.queue or self.inflight:
                while self.queue and len(self.inflight) < self.limit:
                    if self.queue[-1].alone and self.inflight or any(
                            x.alone for x in self.inflight.values()):
                        break
                    t = self.queue.pop()
                    try:
                        self.inflight[self._submit(pool, t)] = t
                    except BrokenProcessPool:
                        self.queue.append(t)
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = self._new_pool()
                        break
                done, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
                crashed: list[_Task] = []
                for fut in done:
                    t = self.inflight.pop(fut)
                    try:
                        out = fut.result()
                    except BrokenProcessPool:
                        crashed.append(t)
                    except IndexFault:
                        raise  # the index's disk, not the file: the run stops
                    except Exception as exc:  # a bug in a worker: report the file, go on
                        yield from self._failed(t, f"worker error: {type(exc).__name__}: {exc}")
                    else:
                        yield from self._finished(t, out)
                if crashed:
                    yield from self._crashed(crashed)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._new_pool()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for path in list(self.splits):  # an interrupted run leaves no spill behind
                self._drop_split(path)

    def _finished(self, t: _Task, out: FileResult | PartResult) -> Iterator[FileResult]:
        if isinstance(out, FileResult):
            if out.segments is None:
                yield out
                return
            parts = list(range(len(out.segments) + 1)) + ([SOUNDTRACK] if out.sound else [])
            self.splits[out.path] = _Split(out, waiting=len(parts))
            # Next in line (the queue is a stack), first segment first.
            self.queue.extend(_Task(t.entry, k) for k in reversed(parts))
            return
        s = self.splits.get(t.entry.path)
        if s is None:  # its video was given up meanwhile
            out.spill.remove()
            return
        s.parts[out.part] = out
        s.waiting -= 1
        if s.waiting:
            return
        try:
            result = join_video(s.plan, list(s.parts.values()), self.settings.shot_threshold)
        except ValueError:
            self._one_pass(t.entry)
            return
        del self.splits[t.entry.path]
        yield result

    def _failed(self, t: _Task, reason: str) -> Iterator[FileResult]:
        e = t.entry
        if t.part is None:
            yield FileResult(e.path, e.size, e.mtime_ns, code=SkipCode.BAD, reason=reason)
        elif e.path in self.splits:
            self._one_pass(e)

    def _crashed(self, crashed: list[_Task]) -> Iterator[FileResult]:
        """The pool broke: every file in flight is decoded again (a split video in one
        pass). Which one crashed is unknown, so a file caught in two crashes is tried
        alone, and reported as bad when it crashes the pool by itself."""
        for path in {t.entry.path for t in crashed}:
            self.attempts[path] = self.attempts.get(path, 0) + 1
        again: dict[str, _Task] = {}
        for t in [*crashed, *self.inflight.values()]:
            again.setdefault(t.entry.path, t)
        self.inflight.clear()
        for path, t in again.items():
            was_split = self._drop_split(path) or t.part is not None
            self.queue = [q for q in self.queue if q.entry.path != path]  # one retry below
            twice = self.attempts.get(path, 0) >= 2
            if twice and len(again) == 1:
                e = t.entry
                yield FileResult(e.path, e.size, e.mtime_ns, code=SkipCode.BAD,
                                 reason="the decoder crashed on this file (twice)")
            else:
                self.queue.append(_Task(t.entry, split=t.split and not was_split,
                                        alone=twice))

    def _one_pass(self, e: FileEntry) -> None:
        """Give up decoding a video in parts: decode it again in one pass."""
        self._drop_split(e.path)
        self.queue.append(_Task(e, split=False))

    def _drop_split(self, path: str) -> bool:
        """Forget a split video: remove its parts' spills and its queued parts. Parts
        still in flight are dropped as they come back. True if it was being split."""
        s = self.splits.pop(path, None)
        if s is None:
            return False
        for p in s.parts.values():
            p.spill.remove()
        self.queue = [t for t in self.queue if t.entry.path != path or t.part is None]
        return True


def default_workers() -> int:
    """Decode processes to start: one per core (the embedder runs in the main process)."""
    return max(1, os.cpu_count() or 1)
