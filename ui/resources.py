"""Per-process resources and the friendly-error guard.

The searcher, the grounder and the cap on heavy work come from the process-wide registry
of ui/services.py, which the JSON API (ui/api) shares: one loaded model per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from loupe.indexer import LoupeError
from loupe.ui.services import (
    GroundingService,
    HeavyWork,
    IndexJob,
    SearchService,
    log_unexpected,
    shared_grounding,
    shared_heavy_work,
    shared_search,
)


def search_service(db: str) -> SearchService:
    """The store and searcher of ``db``, opened once per process (again when the index's
    models change, e.g. a model was added by `loupe index --add`); the API's too."""
    return shared_search(db)


def grounding_service(model: str | None) -> GroundingService:
    """Kosmos-2, loaded on first use and kept for the life of the process."""
    return shared_grounding(model)


def heavy_work() -> HeavyWork:
    """The process's cap on heavy actions (grounding, duplicates, the atlas), shared by
    every session and API client: one more than it allows is told "busy, try again in a
    moment"."""
    return shared_heavy_work()


@st.cache_resource(show_spinner=False)
def index_job() -> IndexJob:
    """The process's one indexing job."""
    return IndexJob()


@contextmanager
def friendly(what: str = "that") -> Iterator[None]:
    """Show errors as one polite line: a LoupeError's message, or the kind of an
    unexpected error (its traceback goes to stderr, never to the page).

    Streamlit's own control flow (st.rerun, st.stop) passes through: those are
    BaseExceptions, not Exceptions.
    """
    try:
        yield
    except LoupeError as e:
        st.error(str(e), icon=":material/info:")
    except Exception as e:
        log_unexpected(what, e)
        st.error(f"Something went wrong: {type(e).__name__}", icon=":material/error:")


def open_index(db: str, title: str | None = None) -> SearchService | None:
    """The index's search service for a page, or None (the page says why: it could not
    be opened, or it holds nothing yet). ``title``: shown above that message."""
    svc = None
    with friendly("opening the index"):
        svc = search_service(db)
    if svc is None:
        return None
    if not svc.store.meta.encoders:
        if title:
            st.title(title)
        st.info(f"The index at `{svc.db}` has nothing in it yet: run `loupe index FOLDER` "
                "first.", icon=":material/photo_library:")
        return None
    return svc
