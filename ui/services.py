"""Long-lived things one server process shares between its sessions and its API
clients: the searcher, the Kosmos-2 grounder, the cap on heavy work, the background
indexing job. Each guards itself with a lock; no Streamlit here.

The Streamlit pages (ui/resources.py) and the JSON API (ui/api) reach the first three
through the process-wide registry at the end (:func:`shared_search` and friends), so a
process loads each model once, whoever asks first.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from PIL import Image

from loupe.indexer import EncoderSpec, IndexOptions, LazyEncoder, LoupeError, index_paths
from loupe.search import (
    CaptureFilter,
    QueryLimits,
    Searcher,
    SearchResult,
    Term,
    modalities,
    thumbs,
)
from loupe.search.explain import (
    Grounder,
    cache_key,
    cached_groundings,
    draw_grounding,
    ground_targets,
    load_grounder,
    normalise_prompt,
    resolve_target,
)
from loupe.search.store import IndexMeta, Store
from loupe.search.text import ocr_config, texts_of
from loupe.ui.summaries import IndexSummaries

MAX_NEW_TOKENS = 64  # as `loupe ground`: the UI and the CLI share cached answers
DISPLAY_SIDE = 1600  # longest side of pictures sent to the browser
HEAVY_SLOTS = 2  # heavy actions (grounding, duplicates, the atlas) at once per process
BUSY_WAIT_S = 2.0  # how long a heavy action waits for a slot before "busy"


def jpeg(image: Image.Image, side: int = DISPLAY_SIDE, quality: int = 88) -> bytes:
    """JPEG bytes of a picture scaled down to ``side`` (for the browser)."""
    im = image.convert("RGB")
    if max(im.size) > side:
        im = im.copy()
        im.thumbnail((side, side), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def log_unexpected(what: str, e: BaseException) -> None:
    """The traceback of an unexpected error, to stderr (never to the page)."""
    print(f"loupe ui: {what}: {type(e).__name__}: {e}", file=sys.stderr)
    traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)


class Busy(LoupeError):
    """Too much heavy work is going on in this process: try again in a moment."""


class ModelUnavailable(LoupeError):
    """A model's weights cannot be loaded (not downloaded, offline, a bad folder): the
    feature cannot answer on this server until they are there."""


class HeavyWork:
    """A process-wide cap on heavy actions (grounding, finding duplicates, drawing the
    atlas): at most ``slots`` run at once; one more waits ``wait_s`` for a slot, then
    is told :class:`Busy` (one line for the page) instead of freezing it."""

    def __init__(self, slots: int = HEAVY_SLOTS, wait_s: float = BUSY_WAIT_S):
        self._slots = threading.BoundedSemaphore(slots)
        self.wait_s = wait_s

    @contextmanager
    def slot(self, what: str) -> Iterator[None]:
        """Hold a slot for ``what`` (words for the busy message: "grounding")."""
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy(f"Loupe is busy with other work just now, so {what} cannot start: "
                       "try again in a moment")
        try:
            yield
        finally:
            self._slots.release()


class SearchService:
    """One store and its searcher for every session; calls are serialised by a lock
    (LanceDB table handles and the searcher's index cache are not shared safely).
    Queries are embedded outside it (:meth:`query`)."""

    def __init__(self, db: str):
        self.db = db
        self.store = Store(db)
        # An index without models yet has no searcher (the page says to run `loupe index`).
        self.searcher: Searcher | None = Searcher(self.store) if self.store.meta.encoders else None
        self.lock = threading.RLock()
        self.meta_mtime = _mtime(self.store.meta.path)
        # The panels' lists: their own Store and lock, so they never wait on a search.
        self.summaries = IndexSummaries(db)

    def fresh(self) -> bool:
        """False once the index's models have changed (`loupe index --add`, or a first
        run on an empty index): the service is then rebuilt. Other meta changes (every
        run records itself) keep it, and its loaded models."""
        mtime = _mtime(self.store.meta.path)
        if mtime == self.meta_mtime:
            return True
        try:
            now = IndexMeta(self.store.dir)
        except LoupeError:
            return False
        if list(now.encoders.items()) != list(self.store.meta.encoders.items()):
            return False
        with self.lock:  # the rest as it is now (a run given --ocr or --no-ocr meanwhile)
            self.store.meta.reload()
        self.meta_mtime = mtime
        return True

    def query(self, terms: Sequence[Term], k: int = 10, kind: str | None = None,
              folder: str | None = None, group: bool = True, column: str | None = None,
              since: float | None = None, until: float | None = None,
              dedupe: float | None = None, tags: Sequence[str] = (),
              limits: QueryLimits | None = None, capture: CaptureFilter | None = None,
              sort: str = "relevance", min_score: float | None = None) -> SearchResult:
        """``Searcher.query``, with the lock held only for the index search: decoding and
        embedding a viewer's pictures and sounds hold up no other session's search.
        :class:`ModelUnavailable` when the model that would answer cannot be loaded."""
        searcher = self.searcher
        if searcher is None:
            raise LoupeError("this index has no models yet: run `loupe index FOLDER`")
        if k < 1:
            raise LoupeError("ask for at least one result")
        t0 = time.perf_counter()
        needs = modalities(terms)  # (ocr: terms need no model)
        if needs and column is None:  # the model first: a missing one is not a bad query
            wanted = searcher.column_for(needs)
            try:
                searcher.encoder_of(wanted)
            except LoupeError as e:
                raise ModelUnavailable(str(e)) from e
        loading = time.perf_counter() - t0
        embedded = searcher.embed_query(terms, column, limits)
        with self.lock:
            res = searcher.search_embedded(embedded, k, kind, folder, group, since, until,
                                           dedupe, tags, capture, sort, min_score)
        res.load_seconds += loading
        return res

    def version(self) -> int:
        """The store's version (it moves on when an indexing run commits)."""
        with self.lock:
            return self.store.version()

    def counts(self) -> dict[str, int]:
        """{kind: rows}, per version of the items (without the search lock)."""
        return self.summaries.counts()

    def tag_labels(self) -> list[str]:
        """The labels the index's stored tags use (for the tag filter), per version of
        the tags; empty when the index is not tagged."""
        return self.summaries.tag_labels()

    def folders(self) -> list[str]:
        """Every folder holding indexed files (for the folder filter, searched with
        core.match_folders), per version of the file records."""
        return self.summaries.folders()

    def reads_text(self) -> bool:
        """Whether the index reads the text shown in its pictures (``loupe index --ocr``)."""
        with self.lock:
            return ocr_config(self.store) is not None

    def texts_read(self, item_id: str) -> list:
        """Every line of text read in a stored picture (``texts_of``'s lines: text, score,
        box); empty when none was, or when the index does not read text."""
        with self.lock:
            if ocr_config(self.store) is None:
                return []
            return list(texts_of(self.store, [item_id]).get(item_id) or [])


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@dataclass
class Grounded:
    """One grounded picture, ready to show."""

    item_id: str
    label: str
    timestamp: float | None
    caption: str
    phrases: list[str]
    cached: bool
    picture: bytes  # JPEG with the boxes drawn
    answer: dict = field(default_factory=dict)  # GroundResult.as_dict(): boxes, model, size


class GroundingService:
    """Kosmos-2 for the whole process: loaded on first use, one generation at a time."""

    def __init__(self, model: str | None, device: str = "auto"):
        self.model = model
        self.device = device
        self.lock = threading.Lock()
        self._grounder: Grounder | None = None
        self._stores: dict[str, Store] = {}

    def _get(self) -> Grounder:
        if self._grounder is None:
            try:
                self._grounder = load_grounder(self.model, self.device)
            except LoupeError as e:  # weights not there, or not Kosmos-2: one line as is
                raise ModelUnavailable(str(e)) from e
        return self._grounder

    def _store(self, db: str) -> Store:
        # Its own Store: grounding writes the cache while other sessions search.
        if db not in self._stores:
            self._stores[db] = Store(db)
        return self._stores[db]

    def cached(self, db: str, item_id: str, prompt: str | None) -> Grounded | None:
        """The cached answer for an item, when the model is loaded and has one (no model
        run, no waiting on a running one)."""
        if self._grounder is None or not self.lock.acquire(blocking=False):
            return None
        try:
            store = self._store(db)
            target = resolve_target(item_id, store)
            key = cache_key(target.content, normalise_prompt(prompt), self._grounder,
                            MAX_NEW_TOKENS)
            if not cached_groundings(store, [key]):
                return None
            return self._ground(store, [item_id], prompt)[0]
        finally:
            self.lock.release()

    def ground(self, db: str, item_ids: Sequence[str], prompt: str | None,
               side: int = DISPLAY_SIDE) -> list[Grounded]:
        """Ground stored pictures (cached answers come back at once); the drawn pictures
        are JPEGs at most ``side`` pixels long. :class:`Busy` when another grounding
        does not end within ``BUSY_WAIT_S``."""
        if not self.lock.acquire(timeout=BUSY_WAIT_S):
            raise Busy("Kosmos-2 is answering another viewer just now: try again in a moment")
        try:
            return self._ground(self._store(db), item_ids, prompt, side)
        finally:
            self.lock.release()

    def _ground(self, store: Store, item_ids: Sequence[str], prompt: str | None,
                side: int = DISPLAY_SIDE) -> list[Grounded]:
        normalise_prompt(prompt)  # a bad prompt fails before the model loads
        grounder = self._get()
        targets, pictures = [], []
        for item_id in item_ids:
            thumbs.item_row(store, item_id)  # only items of this index
            targets.append(resolve_target(item_id, store))
            pictures.append(thumbs.item_picture(store, item_id))
        results = ground_targets(grounder, targets, prompt, store, batch_size=4,
                                 max_new_tokens=MAX_NEW_TOKENS, images=pictures)
        out = []
        for item_id, r, pic in zip(item_ids, results, pictures, strict=True):
            g = r.grounding
            out.append(Grounded(item_id, r.target.label, r.target.timestamp, g.caption,
                                [e.phrase.strip() for e in g.entities if e.phrase.strip()],
                                r.cached, jpeg(draw_grounding(pic, g), side), r.as_dict()))
        return out


@dataclass
class JobState:
    """What the indexing job is doing (a copy is handed to the page)."""

    running: bool = False
    folder: str | None = None
    done: int = 0
    total: int = 0
    started: float | None = None
    finished: float | None = None
    report: dict | None = None
    error: str | None = None
    db: str | None = None
    runs: int = 0  # finished runs


class IndexJob:
    """Indexing in a background thread, one run at a time per process.

    Searching goes on meanwhile: the run uses its own Store, and searchers reload their
    FAISS indexes when the store version moves on.
    """

    workers: int | None = None  # decode processes (None: the library's default)

    def __init__(self):
        self.lock = threading.Lock()
        self._state = JobState()
        self._thread: threading.Thread | None = None

    def state(self) -> JobState:
        with self.lock:
            s = self._state
            return replace(s)

    def start(self, db: str, folder: str) -> str:
        """Start indexing ``folder`` into the index at ``db``; returns the folder.

        LoupeError when a run is going on, the folder is not an existing directory, or
        the index has no models yet.
        """
        path = os.path.abspath(os.path.expanduser((folder or "").strip()))
        if not (folder or "").strip():
            raise LoupeError("type the folder to index")
        if not os.path.isdir(path):
            raise LoupeError(f"{folder} is not a folder on this machine")
        store = Store(db)
        if not store.meta.encoders:
            raise LoupeError("this index has no models yet: run `loupe index FOLDER` once "
                             "(it chooses the model), then add folders here")
        with self.lock:
            if self._state.running:
                raise LoupeError(f"already indexing {self._state.folder}: wait for it to end")
            runs = self._state.runs
            self._state = JobState(running=True, folder=path, started=time.time(), db=db,
                                   runs=runs)
            self._thread = threading.Thread(target=self._run, args=(store, path),
                                            name="loupe-index", daemon=True)
            self._thread.start()
        return path

    def join(self, timeout: float | None = None) -> None:
        """Wait for the current run (tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _progress(self, done: int, total: int) -> None:
        with self.lock:
            self._state.done, self._state.total = done, total

    def _run(self, store: Store, folder: str) -> None:
        report, error = None, "the run was interrupted"
        try:
            encoders = [LazyEncoder(spec) for spec in store.meta.encoders.values()]
            opts = {"progress": False, "on_progress": self._progress,
                    "command": "loupe ui (Index a folder)"}
            if self.workers is not None:
                opts["workers"] = self.workers
            report = index_paths([folder], store, encoders, IndexOptions(**opts)).as_dict()
            error = None
        except LoupeError as e:
            error = str(e)
        except Exception as e:  # the thread must not die silently
            log_unexpected(f"indexing {folder}", e)
            error = f"Something went wrong: {type(e).__name__}"
        finally:  # whatever happened, the next run may start
            with self.lock:
                s = self._state
                s.running, s.finished, s.report, s.error = False, time.time(), report, error
                s.runs += 1


# -- the process-wide registry -----------------------------------------------------------
# One of each per process, whoever asks first (a page or an API route): the models a
# searcher or a grounder loads are loaded once for all of them.
_REGISTRY_LOCK = threading.Lock()
_SEARCH: dict[str, SearchService] = {}
_GROUNDING: dict[str | None, GroundingService] = {}
_HEAVY: list[HeavyWork] = []


def shared_search(db: str) -> SearchService:
    """The process's SearchService of the index at ``db``: opened on first use, and
    again once its models have changed (:meth:`SearchService.fresh`)."""
    with _REGISTRY_LOCK:
        svc = _SEARCH.get(db)
        if svc is None or not svc.fresh():
            svc = _SEARCH[db] = SearchService(db)
        return svc


def shared_grounding(model: str | None) -> GroundingService:
    """The process's Kosmos-2 (``model``: hub id or folder; None: the default one)."""
    with _REGISTRY_LOCK:
        if model not in _GROUNDING:
            _GROUNDING[model] = GroundingService(model)
        return _GROUNDING[model]


def shared_heavy_work() -> HeavyWork:
    """The process's cap on heavy actions, shared by every page session and API client."""
    with _REGISTRY_LOCK:
        if not _HEAVY:
            _HEAVY.append(HeavyWork())
        return _HEAVY[0]


class SharedEncoder(LazyEncoder):
    """An index column's encoder as the process's searcher has it (loaded once, on first
    use, for searching and for indexing alike): what a watcher beside a server embeds
    new files with."""

    def __init__(self, db: str, column: str, spec: EncoderSpec):
        super().__init__(spec)
        self.db, self.column = db, column

    @property
    def loaded(self):
        searcher = shared_search(self.db).searcher
        if searcher is None:
            raise LoupeError("this index has no models yet: run `loupe index FOLDER`")
        return searcher.encoder_of(self.column)


def shared_encoders(db: str) -> list[SharedEncoder]:
    """The index's encoders, shared with the process's searcher (see SharedEncoder)."""
    store = shared_search(db).store
    return [SharedEncoder(db, column, spec) for column, spec in store.meta.encoders.items()]
