"""The API's searches: a SearchRequest answered as ``loupe search`` answers its flags,
more like a stored item, and the index's status.

Flags are read by the CLI's own library functions (``CaptureFilter.of``, ``day_range``,
``parse_where``, ``check_threshold``), so a bad value is told in the CLI's words. Query
pictures and sounds go through the UI's upload checks (``core.upload_terms``: magic
bytes, private temporary files) and are embedded outside the search lock
(``SearchService.query``).
"""

from __future__ import annotations

import base64
import binascii

from loupe.indexer import ItemKind, LoupeError, Modality
from loupe.search import CaptureFilter, Term, day_range
from loupe.search.explain import check_threshold, parse_where
from loupe.ui import core
from loupe.ui.api import models as m
from loupe.ui.api.common import ApiSettings, check_k, item_row_or_404, page, searching
from loupe.ui.api.errors import ApiError
from loupe.ui.services import log_unexpected, shared_search


def _decoded(term: m.FileTerm, i: int) -> bytes:
    try:
        return base64.b64decode(term.data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"terms.{i}.data: not base64") from None


def _wanted_tags(where: list[str]) -> list[str]:
    """``where`` as ``--where`` reads it: "tag=LABEL" clauses, or bare labels."""
    return parse_where([w if "=" in w else f"tag={w}" for w in where])


def search(settings: ApiSettings, req: m.SearchRequest) -> dict:
    """A SearchRequest answered as ``loupe search`` would (see the module docstring)."""
    check_k(req.k, req.offset)
    limits = settings.limits
    terms: list[Term | None] = list(core.text_terms(req.q or "", limits))
    uploads: list[core.Upload] = []
    for i, t in enumerate(req.terms):
        if isinstance(t, m.TextTerm):
            if not t.text.strip():
                raise LoupeError("empty query term")
            terms.append(Term(float(t.weight), Modality.TEXT, t.text))
        elif isinstance(t, m.OcrTerm):
            if not t.text.strip():
                raise LoupeError("empty query term")
            terms.append(Term(float(t.weight), core.OCR, t.text))
        else:
            uploads.append(core.Upload(t.kind, t.name, _decoded(t, i), float(t.weight)))
            terms.append(None)  # its place, filled once written
    wanted = _wanted_tags(req.where)
    if req.hide_duplicates is not None:
        check_threshold(req.hide_duplicates)
    try:
        capture = CaptureFilter.of(req.taken_since, req.taken_until, req.or_modified,
                                   req.near, req.within, req.camera, req.lens)
    except ValueError as e:
        raise LoupeError(str(e)) from e
    since, until = day_range(req.since, req.until)
    kind = ItemKind.FRAME if req.kind == "video" else req.kind
    svc = shared_search(settings.db)
    with core.upload_terms(uploads) as made:
        files = iter(made)
        query = [t if t is not None else next(files) for t in terms]
        try:
            res = svc.query(query, req.offset + req.k, kind, req.folder, not req.frames,
                            None, since, until, req.hide_duplicates, wanted, limits,
                            capture, req.sort, req.min_score)
        except LoupeError as e:
            msg = str(e)
            for term, up in zip(made, uploads, strict=True):
                msg = msg.replace(term.value, up.name)  # the upload's name, not the temp file
            e.args = (msg,)
            raise
    return page(res, req.offset, req.k)


def similar(settings: ApiSettings, item_id: str, q: m.SimilarQuery) -> dict:
    """More like a stored item, searched with its own vector (itself left out)."""
    check_k(q.k, q.offset)
    svc = searching(settings)
    kind = ItemKind.FRAME if q.kind == "video" else q.kind
    with svc.lock:
        item_row_or_404(svc.store, item_id)
        res = svc.searcher.more_like(item_id, q.offset + q.k, kind, None, not q.frames)
    return page(res, q.offset, q.k)


def status(settings: ApiSettings) -> dict:
    """The index this server answers for (counts from LanceDB's row counts)."""
    from importlib.metadata import PackageNotFoundError, version

    svc = shared_search(settings.db)
    counts = svc.counts()
    try:
        loupe = version("loupe-archive")
    except PackageNotFoundError:
        loupe = "unknown"
    models = [{"column": column, "backend": spec.backend, "model": spec.model,
               "weights": spec.weights, "dim": spec.dim,
               "modalities": sorted(spec.modalities)}
              for column, spec in svc.store.meta.encoders.items()]
    return {"db": svc.db, "version": svc.version(), "items": sum(counts.values()),
            "counts": counts, "models": models, "folders": len(svc.folders()),
            "server": settings.server, "loupe": loupe,
            "watch": settings.watch() if settings.watch else None}


def warm_up(db: str) -> None:
    """Load the index's default model and its search index now (a server starting),
    not on the first query; what fails is left for that query to say."""
    try:
        svc = shared_search(db)
        if svc.searcher is not None:
            svc.searcher.encoder_of()
            with svc.lock:
                svc.searcher.index_of()
    except LoupeError:
        pass
    except Exception as e:
        log_unexpected("loading the model", e)
