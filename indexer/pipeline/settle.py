"""Debouncing for watch mode: the changed paths, each taken once it has settled.

A file being copied sends many events (or, polled, looks different at each poll); it is
taken when nothing has happened to it for ``settle`` seconds *and* its size and mtime
have not moved over that time. With events, a file written and not yet closed (no
close-after-write seen) waits longer still, up to ``open_grace`` seconds of silence.
Pure bookkeeping: no threads (the watcher's lock guards it), times are passed in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

Stat = tuple[int, int] | None  # (size, mtime_ns); None: not there


def stat_key(path: str, stat: Callable[[str], os.stat_result] = os.stat) -> Stat:
    """What a file looks like now, for "has it moved?" (None when it is not there)."""
    try:
        st = stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class _Entry:
    last_event: float  # when something last happened to it
    seen: Stat  # what it looked like ...
    seen_at: float  # ... since this moment
    writing: bool  # written and not closed since (events only)


class Pending:
    """Changed paths waiting to settle."""

    def __init__(self, settle: float, open_grace: float = 60.0):
        self.settle = settle
        self.open_grace = max(open_grace, settle)
        self._paths: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def paths(self) -> list[str]:
        """The waiting paths, sorted."""
        return sorted(self._paths)

    def touch(self, path: str, now: float, seen: Stat, writing: bool | None = None) -> None:
        """Something happened to ``path`` at ``now`` (it looks like ``seen``).
        ``writing``: True when it was written (open for writing until closed), False when
        closed or renamed into place, None when the event says nothing of it."""
        e = self._paths.get(path)
        if e is None:
            self._paths[path] = _Entry(now, seen, now, bool(writing))
            return
        e.last_event = now
        if seen != e.seen:
            e.seen, e.seen_at = seen, now
        if writing is not None:
            e.writing = writing

    def discard_under(self, folder: str) -> None:
        """Forget what waits under ``folder`` (a root that went away: it is scanned
        again, whole, when it is back)."""
        prefix = folder.rstrip(os.sep) + os.sep
        for p in [p for p in self._paths if p == folder or p.startswith(prefix)]:
            del self._paths[p]

    def take(self, now: float, stat: Callable[[str], Stat] = stat_key) -> list[str]:
        """The paths that have settled by ``now`` (removed from the waiting ones).

        Each candidate is looked at again: one that changed since it was last seen
        starts its ``settle`` over."""
        out = []
        for path, e in list(self._paths.items()):
            quiet = now - e.last_event
            if quiet < self.settle or (e.writing and quiet < self.open_grace):
                continue
            seen = stat(path)
            if seen != e.seen:
                e.seen, e.seen_at = seen, now
                continue
            if now - e.seen_at < self.settle:
                continue
            del self._paths[path]
            out.append(path)
        return sorted(out)

    def next_due(self, now: float) -> float | None:
        """Seconds until :meth:`take` may have something (None: nothing waits)."""
        if not self._paths:
            return None
        due = []
        for e in self._paths.values():
            wait = self.open_grace if e.writing else self.settle
            due.append(max(e.last_event + wait, e.seen_at + self.settle))
        return max(0.0, min(due) - now)
