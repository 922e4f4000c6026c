"""What the API's modules share: its settings, its paths, and how an item asked for and a
page of hits are read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from loupe.indexer import LoupeError
from loupe.search import QueryLimits, Store, thumbs
from loupe.ui.api.errors import ApiError
from loupe.ui.services import SearchService, shared_search

PREFIX = "/api/v1"
MAX_HITS = 10_000  # offset + k of one search, at most


@dataclass(frozen=True)
class ApiSettings:
    """What one server's API answers with."""

    db: str
    server: str = "serve"  # "serve" (the API alone) or "ui" (beside the pages)
    limits: QueryLimits = field(default_factory=QueryLimits)
    grounding_model: str | None = None
    max_body: int = 50 * 2**20 * 4 // 3 + 64 * 1024  # 50 MB of uploads as base64
    watch: Callable[[], dict | None] | None = None  # the watcher's state, when watching


def item_row_or_404(store: Store, item_id: str) -> dict:
    """The stored row of an item asked for; 404 when it is not one of this index."""
    try:
        return thumbs.item_row(store, item_id)
    except LoupeError as e:
        raise ApiError(404, str(e)) from None


def check_k(k: int, offset: int = 0) -> None:
    """-k as ``loupe search`` checks it, and offset + k within MAX_HITS."""
    if k < 1:
        raise LoupeError("-k must be at least 1")
    if offset + k > MAX_HITS:
        raise LoupeError(f"at most {MAX_HITS:,} hits are served (offset + k)")


def page(res, offset: int, k: int) -> dict:
    """A SearchResponse: the hits [offset, offset + k) of a SearchResult."""
    return {"hits": [h.as_dict() for h in res.hits[offset:offset + k]], "column": res.column,
            "seconds": res.seconds, "load_seconds": res.load_seconds, "hidden": res.hidden,
            "offset": offset, "k": k}


def searching(settings: ApiSettings) -> SearchService:
    """The process's SearchService of the index; LoupeError when it has no models yet."""
    svc = shared_search(settings.db)
    if svc.searcher is None:
        raise LoupeError("this index has no models yet: run `loupe index FOLDER`")
    return svc
