"""Watch mode: keep an index up to date with its folders while they change.

:func:`start_watch` starts a :class:`Watcher` thread. Changes come as file-system events
(watchdog's native observer: inotify on Linux, FSEvents, ReadDirectoryChangesW) or, on
network and FUSE mounts (which send no events for changes made elsewhere) and when asked
(``poll``), from a stat walk of the folder every ``poll`` seconds. A changed path waits
until it has settled (``loupe.indexer.pipeline.settle``), then the settled paths become
one :func:`index_paths` run over just those paths: new and changed files are embedded,
deleted ones lose their rows, a moved file reuses its vectors by fingerprint (the old and
new path are in the same run). The writer lock is taken only for that run, never while
waiting, so ``loupe index`` and other writers run in between; when another one holds it
the batch waits and is tried again. A root that goes away (an unmounted drive, a folder
renamed away, an empty mount point) keeps its rows, as ``loupe index`` does without
--prune, and is scanned once, whole, when it comes back. Errors are one line in the
state and on stderr; the thread goes on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

from loupe.indexer.encoders import Encoder
from loupe.indexer.errors import LoupeError
from loupe.indexer.pipeline.encoders import encoders_for_run
from loupe.indexer.pipeline.mounts import fs_type, needs_polling
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.run import index_paths
from loupe.indexer.pipeline.settle import Pending, Stat, stat_key
from loupe.indexer.scan import scan
from loupe.search.store import Store, sql_str, where_in
from loupe.search.store.lock import describe, holder

DEFAULT_SETTLE = 2.0  # seconds a file must stay unchanged before it is indexed
DEFAULT_POLL = 30.0  # seconds between stat walks of a polled folder
CHECK_SECONDS = 1.0  # how often each root is looked at (gone? back? replaced?)
BUSY_RETRY = 0.5  # seconds between looks at a writer lock someone else holds
# batches of at most this many files decode in-process: spawning the decode pool costs
# more than it saves for them (20 photos with ViT-B-32 on 2 cores: 3.4 s in-process, 12-16
# s with 2 workers, which import torch first)
SMALL_BATCH = 64
COMMAND = "loupe index --watch"


@dataclass
class RootState:
    """One watched folder."""

    path: str
    mode: str  # "events" or "polling"
    fs: str | None = None  # file-system type ("ext4", "nfs4"...) where known
    online: bool = True  # False: missing or empty (rows kept), watched for its return
    why: str = ""  # why this mode, or why it is offline ("nfs4 mount", "--poll")


@dataclass
class BatchSummary:
    """What one watch-mode run did."""

    new: int = 0
    changed: int = 0
    moved: int = 0
    removed: int = 0
    skipped: int = 0  # bad or unsupported files, recorded with a reason
    seconds: float = 0.0
    finished: float = 0.0  # epoch seconds
    rescanned: list[str] = field(default_factory=list)  # whole roots scanned again

    @property
    def anything(self) -> bool:
        """Whether the run changed what the index holds."""
        return bool(self.new or self.changed or self.moved or self.removed or self.skipped)

    def line(self) -> str:
        """"indexed 3 new, 1 changed, 2 removed in 1.2 s" (moves and skips when any)."""
        parts = [f"{self.new} new", f"{self.changed} changed", f"{self.removed} removed"]
        if self.moved:
            parts.append(f"{self.moved} moved")
        if self.skipped:
            parts.append(f"{self.skipped} not indexed")
        return f"indexed {', '.join(parts)} in {self.seconds:.1f} s"


@dataclass
class WatchState:
    """A snapshot of what the watcher is doing (a copy: safe to keep and show)."""

    db: str
    roots: list[RootState]
    pending: int = 0  # changed paths waiting to settle
    pending_paths: list[str] = field(default_factory=list)  # the first few of them
    running: bool = False  # a batch is being indexed now
    waiting_for: str | None = None  # another writer holds the lock: who
    runs: int = 0  # batches indexed since the start
    last_run: BatchSummary | None = None  # the last that changed something (or a rescan)
    last_error: str | None = None  # one line
    last_error_at: float | None = None  # epoch seconds
    last_searchable: float | None = None  # when the last new or changed file was searchable
    started: float = 0.0  # epoch seconds
    alive: bool = True  # False once stopped

    def as_dict(self) -> dict:
        """JSON-ready (the API's status, the UI)."""
        return asdict(self)


def _hidden_below(path: str, root: str) -> bool:
    """Whether ``path`` is not a file the scan of ``root`` would list: hidden (a name
    starting with "." on the way), outside it, or the root itself (the checks' business)."""
    rel = os.path.relpath(path, root)
    return rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep) or any(
        part.startswith(".") for part in rel.split(os.sep))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _has_entries(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(".") for e in it)
    except OSError:
        return False


def _dir_key(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(folder) else None


def _records(store: Store, targets: Iterable[str]) -> dict[str, tuple]:
    """{path: (size, mtime_ns, fingerprint)} of the indexed files at or under ``targets``."""
    targets = sorted(set(targets))
    filters = list(where_in("path", targets))
    filters += [f"starts_with(path, {sql_str(t.rstrip(os.sep) + os.sep)})" for t in targets
                if os.path.isdir(t) or not os.path.exists(t)]
    out: dict[str, tuple] = {}
    for i in range(0, len(filters), 50):
        for r in store.file_rows(" OR ".join(f"({f})" for f in filters[i:i + 50])):
            out[r["path"]] = (r["size"], r["mtime_ns"], r["fingerprint"])
    return out


def summarize(before: dict[str, tuple], after: dict[str, tuple], report: IndexReport,
              seconds: float) -> BatchSummary:
    """A batch's counts from the file records before and after it: a path that left
    whose content arrived under another path is a move."""
    gone = [p for p in before if p not in after]
    arrived = [p for p in after if p not in before]
    changed = sum(1 for p in after if p in before and after[p][:2] != before[p][:2])
    left = {}
    for p in gone:
        left.setdefault(before[p][2], []).append(p)
    moved = 0
    new = 0
    for p in arrived:
        fp = after[p][2]
        if fp and left.get(fp):
            left[fp].pop()
            moved += 1
        else:
            new += 1
    return BatchSummary(new=new, changed=changed, moved=moved, removed=len(gone) - moved,
                        skipped=report.skipped + report.unsupported, seconds=seconds,
                        finished=time.time())


class Watcher:
    """Keeps an index up to date with ``roots`` in a background thread (see the module
    docstring); made and started by :func:`start_watch`."""

    def __init__(self, db: str, roots: Sequence[str], poll: float | None = None,
                 settle: float = DEFAULT_SETTLE, on_state: Callable[[WatchState], None] | None
                 = None, *, encoders: Sequence[Encoder] | None = None,
                 options: IndexOptions | None = None, initial_scan: bool = True,
                 check: float = CHECK_SECONDS, open_grace: float = 60.0):
        if poll is not None and not poll > 0:
            raise LoupeError("--poll must be a positive number of seconds")
        if not settle >= 0:
            raise LoupeError("the settle time must be 0 seconds or more")
        self.db = os.path.abspath(db)
        self.poll = poll
        self.on_state = on_state
        self.options = options or IndexOptions()
        self.check = check
        self._encoders = list(encoders) if encoders is not None else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending = Pending(settle, open_grace)
        self._rescan: set[str] = set()
        self._snapshots: dict[str, dict[str, Stat]] = {}  # polled root -> its last walk
        self._watches: dict[str, object] = {}  # events root -> watchdog's ObservedWatch
        self._keys: dict[str, tuple[int, int] | None] = {}
        self._observer = None
        self._next_poll = 0.0
        self._retry_at = 0.0
        self._fails = 0
        roots = [os.path.abspath(r) for r in roots]
        files = [r for r in roots if os.path.isfile(r)]
        if files:
            raise LoupeError(f"watch mode watches folders: {files[0]} is a file")
        if not roots:
            raise LoupeError("no folder to watch")
        self._state = WatchState(self.db, [self._root_state(r) for r in dict.fromkeys(roots)],
                                 started=time.time())
        if initial_scan:
            self._rescan.update(r.path for r in self._state.roots)
        self._thread = threading.Thread(target=self._main, name="loupe-watch", daemon=True)

    # -- the public face ---------------------------------------------------------------
    def start(self) -> Watcher:
        """Start watching (the roots are looked at and watched from this call on)."""
        self._setup()
        self._thread.start()
        return self

    def state(self) -> WatchState:
        """What the watcher is doing now (a copy)."""
        with self._lock:
            s = self._state
            s.pending, s.pending_paths = len(self._pending), self._pending.paths()[:20]
            return replace(s, roots=[replace(r) for r in s.roots],
                           pending_paths=list(s.pending_paths),
                           last_run=replace(s.last_run) if s.last_run else None)

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching and wait for the thread (a batch being written is finished)."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout)
            except Exception:
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._lock:
            self._state.alive = self._thread.is_alive()
        self._told()

    @property
    def alive(self) -> bool:
        """Whether the watcher thread still runs."""
        return self._thread.is_alive()

    # -- roots -------------------------------------------------------------------------
    def _root_state(self, path: str) -> RootState:
        fs = fs_type(path) if os.path.isdir(path) else None
        if self.poll is not None:
            return RootState(path, "polling", fs, why=f"every {self.poll:g} s (--poll)")
        if needs_polling(fs):
            return RootState(path, "polling", fs,
                             why=f"{fs} mount: every {DEFAULT_POLL:g} s (no events)")
        return RootState(path, "events", fs, why="file-system events")

    def _poll_every(self) -> float:
        return self.poll if self.poll is not None else DEFAULT_POLL

    def _setup(self) -> None:
        for r in self._state.roots:
            self._keys[r.path] = _dir_key(r.path)
            if not self._is_online(r.path):
                self._offline(r, "missing or empty at the start")
            else:
                self._watch(r)
        self._next_poll = time.monotonic() + self._poll_every()

    def _is_online(self, root: str) -> bool:
        if not os.path.isdir(root):
            return False
        if _has_entries(root):
            return True
        # an empty folder is a root gone away (an empty mount point) only when the index
        # holds files under it; a new, empty inbox is watched as it is
        try:
            return not Store(self.db).holds_paths_under(root)
        except LoupeError:
            return True

    def _watch(self, r: RootState) -> None:
        if r.mode == "events":
            try:
                self._schedule(r.path)
                return
            except OSError as e:  # inotify's watch limit on a very large tree
                r.mode, r.why = "polling", (f"events failed ({e.strerror or e}): every "
                                            f"{self._poll_every():g} s")
                self._say(f"{r.path}: file-system events failed ({e.strerror or e}); "
                          "polling instead")
        self._snapshots[r.path] = self._walk(r.path)

    def _schedule(self, root: str) -> None:
        from watchdog.observers import Observer

        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        self._watches[root] = self._observer.schedule(_Handler(self, root), root,
                                                      recursive=True)

    def _unwatch(self, root: str) -> None:
        w = self._watches.pop(root, None)
        if w is not None and self._observer is not None:
            try:
                self._observer.unschedule(w)
            except Exception:  # its folder is gone: watchdog may have dropped it already
                pass
        self._snapshots.pop(root, None)

    def _offline(self, r: RootState, why: str) -> None:
        self._unwatch(r.path)
        with self._lock:
            r.online, r.why = False, why
            self._pending.discard_under(r.path)
            self._rescan.discard(r.path)
        self._say(f"{r.path} is {why}: the rows of its files are kept; watching for it to "
                  "come back")

    def _check_roots(self) -> None:
        for r in self._state.roots:
            online, key = self._is_online(r.path), _dir_key(r.path)
            if r.online and not online:
                self._offline(r, "missing or empty")
            elif online and (not r.online or key != self._keys.get(r.path)):
                back = not r.online
                self._unwatch(r.path)
                fresh = self._root_state(r.path)
                with self._lock:
                    r.online, r.mode, r.fs, r.why = True, fresh.mode, fresh.fs, fresh.why
                    self._rescan.add(r.path)
                self._keys[r.path] = key
                self._watch(r)
                self._say(f"{r.path} is {'back' if back else 'replaced'}: scanning it again")
            self._keys[r.path] = key

    # -- changes -----------------------------------------------------------------------
    def touched(self, path: str, root: str, writing: bool | None = None) -> None:
        """``path`` (under ``root``) changed: it waits to settle (the event handler and
        the polling walk call this)."""
        if _hidden_below(path, root) or _under(path, self.db):
            return  # the scan skips hidden files; the index's own folder is no archive
        seen = stat_key(path)
        with self._lock:
            self._pending.touch(path, time.monotonic(), seen, writing)
        self._wake.set()

    def _walk(self, root: str) -> dict[str, Stat]:
        return {e.path: (e.size, e.mtime_ns) for e in scan([root])
                if not _under(e.path, self.db)}

    def _poll_roots(self) -> None:
        for r in self._state.roots:
            if r.mode != "polling" or not r.online or self._stop.is_set():
                continue
            old = self._snapshots.get(r.path)
            new = self._walk(r.path)
            self._snapshots[r.path] = new
            if old is None:
                continue
            for p in old.keys() | new.keys():
                if old.get(p) != new.get(p):
                    self.touched(p, r.path)

    # -- runs --------------------------------------------------------------------------
    def _main(self) -> None:
        next_check = time.monotonic() + self.check
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_check:
                self._guarded(self._check_roots)
                next_check = now + self.check
            if now >= self._next_poll:
                self._guarded(self._poll_roots)
                self._next_poll = time.monotonic() + self._poll_every()
            if now >= self._retry_at:
                self._guarded(self._maybe_index)
            with self._lock:
                due = self._pending.next_due(time.monotonic())
                if self._rescan:
                    due = 0.0
            waits = [next_check, self._next_poll] + (
                [max(self._retry_at, time.monotonic() + due)] if due is not None else [])
            self._wake.wait(max(0.0, min(waits) - time.monotonic()))
            self._wake.clear()
        with self._lock:
            self._state.alive = False

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as e:  # one line in the state and on stderr; the watcher goes on
            self._error(e)

    def _error(self, e: BaseException) -> None:
        line = str(e) if isinstance(e, LoupeError) else f"{type(e).__name__}: {e}"
        line = " ".join(line.split())
        with self._lock:
            self._state.last_error, self._state.last_error_at = line, time.time()
        self._say(f"error: {line}")
        self._told()

    def _maybe_index(self) -> None:
        with self._lock:
            rescan = sorted(self._rescan)
            self._rescan.clear()
            paths = [] if rescan else self._pending.take(time.monotonic())
            if not rescan and not paths:
                return
            self._state.running = True  # with the take: never idle-looking in between
        ok = done = False
        try:
            done = self._index(rescan, paths)
            ok = True
        finally:
            if not ok:  # an error (raised on): tried again later, less and less often
                self._fails += 1
                self._retry_at = time.monotonic() + min(60.0, 2.0 ** self._fails)
            elif not done:  # another writer holds the lock: try again in a moment
                self._retry_at = time.monotonic() + BUSY_RETRY
            else:
                self._fails = 0
            if not (ok and done):
                self._put_back(rescan, paths)
            with self._lock:
                self._state.running = False

    def _put_back(self, rescan: list[str], paths: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            self._rescan.update(rescan)
            for p in paths:
                self._pending.touch(p, now - self._pending.settle, stat_key(p))

    def _targets(self, rescan: list[str], paths: list[str]) -> tuple[list[str], bool]:
        """The run's roots and whether it prunes (only when deleted paths are in it)."""
        # looked at again now: a root emptied a moment ago must not lose its rows
        online = [r.path for r in self._state.roots if r.online and self._is_online(r.path)]
        keep = [p for p in paths if any(_under(p, r) for r in online)]
        if rescan:  # whole roots, never pruned; the deleted paths wait for the next run
            return rescan + [p for p in keep if os.path.exists(p)], False
        present = [p for p in keep if os.path.isfile(p)
                   or (os.path.isdir(p) and _has_entries(p))]
        missing = [p for p in keep if not os.path.exists(p)]
        return present + missing, bool(missing)

    def _index(self, rescan: list[str], paths: list[str]) -> bool:
        targets, prune = self._targets(rescan, paths)
        if not targets:
            return True
        who = holder(self.db)
        if who is not None:
            self._waiting(describe(who))
            return False
        t0 = time.monotonic()
        store = Store(self.db)  # fresh: other writers may have changed it since
        encoders = self._encoders
        if encoders is None:
            if not store.meta.encoders:
                raise LoupeError("this index has no model yet: run `loupe index FOLDER` "
                                 "once")
            encoders = self._encoders = encoders_for_run(store.meta.encoders.values())
        small = not rescan and len(targets) <= SMALL_BATCH and all(
            not os.path.isdir(t) for t in targets)
        opts = replace(self.options, prune=prune, wait=False, progress=False,
                       command=COMMAND, on_progress=None,
                       workers=0 if small else self.options.workers)
        before = _records(store, targets)
        with self._lock:
            self._state.waiting_for = None
        self._told()
        try:
            report = index_paths(targets, store, encoders, opts)
        except LoupeError as e:
            if holder(self.db) is not None or "is being written" in str(e):
                self._waiting(describe(holder(self.db)))
                return False
            raise
        summary = summarize(before, _records(store, targets), report, time.monotonic() - t0)
        summary.rescanned = rescan
        with self._lock:
            s = self._state
            s.runs += 1
            if summary.anything or summary.rescanned:  # not a batch that found nothing new
                s.last_run = summary
            s.last_error = s.last_error_at = None
            if summary.new or summary.changed or summary.moved:
                s.last_searchable = summary.finished
        self._told()
        return True

    def _waiting(self, who: str) -> None:
        with self._lock:
            changed = self._state.waiting_for != who
            self._state.waiting_for = who
        if changed:
            self._told()

    def _told(self) -> None:
        if self.on_state is not None:
            try:
                self.on_state(self.state())
            except Exception as e:  # a front end's callback must not stop the watcher
                self._say(f"error in a watch callback: {type(e).__name__}: {e}")

    @staticmethod
    def _say(line: str) -> None:
        print(f"loupe: watch: {line}", file=sys.stderr, flush=True)


class _Handler:
    """watchdog's events for one root, turned into :meth:`Watcher.touched` calls.

    Opening and reading (our own decoding does both) are no change. A new folder's files
    come as events of their own (watchdog walks a folder created or moved in), so a
    folder is only taken itself when it left (deleted or renamed away: its rows go).
    """

    def __init__(self, watcher: Watcher, root: str):
        self.watcher, self.root = watcher, root

    def dispatch(self, event) -> None:
        """watchdog's entry point (duck-typed: no handler base class needed)."""
        kind, src = event.event_type, os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        touch = self.watcher.touched
        if event.is_directory:
            if kind in ("deleted", "moved"):
                touch(src, self.root, False)
            return
        if kind == "moved":
            touch(src, self.root, False)
            if dest:
                touch(dest, self.root, False)
        elif kind == "modified":
            touch(src, self.root, True)  # written: open until its close-after-write
        elif kind in ("closed", "deleted"):
            touch(src, self.root, False)
        elif kind in ("created", "attrib"):
            touch(src, self.root)


def watch_roots(store: Store) -> list[str]:
    """The folders an index was built from (its kept roots that are folders, or were:
    a root away just now is watched for its return); for ``loupe ui/serve --watch``."""
    roots = store.meta.roots
    if not roots:
        raise LoupeError("this index keeps no folders to watch: run `loupe index FOLDER` "
                         "once (or `loupe index --watch FOLDER`)")
    return [r for r in roots if not os.path.isfile(r)]


def start_watch(db: str, roots: Sequence[str] | None = None, poll: float | None = None,
                settle: float = DEFAULT_SETTLE,
                on_state: Callable[[WatchState], None] | None = None, *,
                encoders: Sequence[Encoder] | None = None, options: IndexOptions | None = None,
                initial_scan: bool = True, check: float = CHECK_SECONDS) -> Watcher:
    """Keep the index at ``db`` up to date with ``roots`` (default: the folders it was
    built from) in a background thread; returns the running :class:`Watcher`
    (``.state()``, ``.stop()``).

    ``poll``: seconds between stat walks, for every root (default: events, and polling
    every 30 s on network and FUSE mounts only). ``settle``: seconds a file must stay
    unchanged before it is indexed. ``on_state``: called (from the watcher's thread) with
    a :class:`WatchState` after each batch, error or change of state. ``encoders``: the
    index's models already loaded (default: loaded when first needed); ``options``: the
    knobs of each run (prune, wait and progress are the watcher's). ``initial_scan``:
    scan the roots once at the start (changes made while nobody watched).
    """
    if roots is None:
        roots = watch_roots(Store(db))
    return Watcher(db, roots, poll, settle, on_state, encoders=encoders, options=options,
                   initial_scan=initial_scan, check=check).start()
