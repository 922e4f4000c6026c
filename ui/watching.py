"""Watch mode in the UI's (or API's) server process: one watcher per index for the whole
process, started with the server (``loupe ui --watch``, ``loupe serve --watch``) and shown
by the Index page. No Streamlit here: the server, the API and the tests call it.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

from loupe.indexer import LoupeError, Watcher, WatchState, start_watch
from loupe.ui.core import AppArgs
from loupe.ui.services import shared_encoders

_lock = threading.Lock()
_watchers: dict[str, Watcher] = {}
_errors: dict[str, str] = {}  # db -> why watching could not start


def ensure_watching(args: AppArgs) -> Watcher | None:
    """The process's watcher of ``args.db`` when ``args.watch``, started on the first call
    (the index's own folders; events, or polling every ``args.poll`` seconds). A start
    that fails is said once on stderr and kept for :func:`start_error`; None then."""
    if not args.watch:
        return None
    with _lock:
        w = _watchers.get(args.db)
        if w is not None or args.db in _errors:
            return w
        try:
            # the folders the index was built from, embedded with the searcher's models
            w = start_watch(args.db, poll=args.poll, encoders=shared_encoders(args.db))
        except LoupeError as e:
            _errors[args.db] = str(e)
            print(f"loupe: watch: error: {e}", file=sys.stderr, flush=True)
            return None
        _watchers[args.db] = w
        atexit.register(w.stop)
        return w


def watcher(db: str) -> Watcher | None:
    """The watcher of the index at ``db`` in this process, if one was started."""
    with _lock:
        return _watchers.get(db)


def watch_state(db: str) -> dict | None:
    """What the watcher of ``db`` is doing, JSON-ready (the API's status); None when this
    process does not watch it."""
    w = watcher(db)
    return None if w is None else w.state().as_dict()


def start_error(db: str) -> str | None:
    """Why watching ``db`` could not start (one line), if it could not."""
    with _lock:
        return _errors.get(db)


def stop_all() -> None:
    """Stop every watcher of this process (a server shutting down; tests)."""
    with _lock:
        watchers, _ = list(_watchers.values()), _watchers.clear()
        _errors.clear()
    for w in watchers:
        w.stop()


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = max(0.0, now - t)
    if s < 60:
        return f"{s:.0f} s ago"
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def describe(state: WatchState, now: float | None = None) -> dict:
    """The Index page's words for a watcher's state: ``roots`` (one line each),
    ``activity`` (what it does now), ``last`` (the last batch), ``error``."""
    now = time.time() if now is None else now
    roots = []
    for r in state.roots:
        how = "file-system events" if r.mode == "events" else f"polling ({r.why})"
        roots.append(f"{r.path} — {how}" if r.online else
                     f"{r.path} — away ({r.why}): its rows are kept until it is back")
    if state.running:
        activity = "Indexing a batch of changes…"
    elif state.waiting_for:
        activity = f"Waiting for {state.waiting_for} to finish writing the index"
    elif state.pending:
        activity = (f"{state.pending:,} changed file{'s' if state.pending != 1 else ''} "
                    "waiting to settle (unchanged for a moment) before indexing")
    else:
        activity = "Up to date; watching for changes"
    last = None
    if state.last_run is not None:
        last = (f"{state.last_run.line()[0].upper()}{state.last_run.line()[1:]}, "
                f"{_ago(state.last_run.finished, now)} ({state.runs:,} batches since the "
                f"start; last new file searchable {_ago(state.last_searchable, now)})")
    error = None
    if state.last_error:
        error = f"{state.last_error} ({_ago(state.last_error_at, now)})"
    return {"roots": roots, "activity": activity, "last": last, "error": error,
            "pending": state.pending_paths}
