"""Worker tasks for tests of loupe.indexer.decode.pool: the real ones, wrapped to record what
ran and to misbehave on cue. Module-level (the pool pickles tasks by name); they act on
environment variables, which spawned workers inherit:

- LOUPE_TEST_LOG: a file each task appends "file PATH" or "part PATH N" to;
- LOUPE_TEST_CRASH: a path whose tasks kill their worker, as a decoder crash does
  (LOUPE_TEST_CRASH_ONCE=1: only the first of its tasks, for the first part);
- LOUPE_TEST_IRREGULAR: a path whose segments report irregular timestamps;
- LOUPE_TEST_RAISE: a path whose segment 1 raises.
"""

from __future__ import annotations

import os

from loupe.indexer.decode.results import FileResult, PartResult
from loupe.indexer.decode.worker import process_file, process_part


def _log(line: str) -> None:
    log = os.environ.get("LOUPE_TEST_LOG")
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


def _maybe_crash(path: str) -> None:
    if path != os.environ.get("LOUPE_TEST_CRASH"):
        return
    if os.environ.get("LOUPE_TEST_CRASH_ONCE"):
        marker = os.environ["LOUPE_TEST_LOG"] + ".crashed"
        if os.path.exists(marker):
            return
        open(marker, "w").close()
    os._exit(3)


def file_task(path: str, size: int, mtime_ns: int, attempt: int = 0,
              split_seconds: float | None = None) -> FileResult:
    _log(f"file {path}")
    if not os.environ.get("LOUPE_TEST_CRASH_ONCE"):
        _maybe_crash(path)
    return process_file(path, size, mtime_ns, attempt, split_seconds)


def part_task(path: str, size: int, mtime_ns: int, part: int, starts: list[int],
              attempt: int = 0) -> PartResult:
    _log(f"part {path} {part}")
    if part == 1:
        _maybe_crash(path)
        if path == os.environ.get("LOUPE_TEST_RAISE"):
            raise RuntimeError("a bug in segment 1")
    out = process_part(path, size, mtime_ns, part, starts, attempt)
    if path == os.environ.get("LOUPE_TEST_IRREGULAR") and out.edges is not None:
        out.edges.irregular = "timestamps out of order"
    return out
