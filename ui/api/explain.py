"""The API's answers about pictures: zero-shot tags, style attribution, duplicates and
Kosmos-2 grounding, each as its CLI command answers, each holding a heavy-work slot."""

from __future__ import annotations

from loupe.indexer import PICTURE_KINDS, ItemKind, LoupeError, Modality
from loupe.search import Store
from loupe.search.explain import (
    BUILTIN,
    DEFAULT_TAGS,
    TagResult,
    attribute,
    check_threshold,
    find_duplicates,
    load_vocabulary,
    resolve_target,
    tag_vectors,
    tagging_config,
    tags_of,
    target_vectors,
)
from loupe.ui.api import models as m
from loupe.ui.api.common import ApiSettings, item_row_or_404, searching
from loupe.ui.services import (
    ModelUnavailable,
    SearchService,
    shared_grounding,
    shared_heavy_work,
    shared_search,
)

DUPLICATE_KINDS = {"photo": ItemKind.PHOTO, "video": ItemKind.FRAME, "all": None}


def _picture_model(svc: SearchService):
    """(column, encoder) of the index's first model that embeds pictures and text."""
    column = svc.searcher.column_for({Modality.IMAGE, Modality.TEXT})
    try:
        return column, svc.searcher.encoder_of(column)
    except LoupeError as e:
        raise ModelUnavailable(str(e)) from e


def _picture(svc: SearchService, item_id: str):
    row = item_row_or_404(svc.store, item_id)
    if row["kind"] not in PICTURE_KINDS:
        raise LoupeError("only pictures (photos and video moments) have tags and a style")
    return resolve_target(item_id, svc.store)


def tags(settings: ApiSettings, item_id: str, q: m.TagsQuery) -> dict:
    """Zero-shot tags of a stored picture (as ``loupe tag ID``), with its stored tags."""
    if q.top < 1:
        raise LoupeError("--top must be at least 1")
    svc = searching(settings)
    with svc.lock:
        own = (tagging_config(svc.store) or {}).get("vocabulary")
    name = q.vocabulary or own or DEFAULT_TAGS
    if name not in BUILTIN and name != own:  # never a file named by a client
        raise LoupeError(f"unknown vocabulary {name!r}: use one of "
                         f"{', '.join(dict.fromkeys([*([own] if own else []), *BUILTIN]))}")
    with shared_heavy_work().slot("tagging"), svc.lock:
        target = _picture(svc, item_id)
        column, encoder = _picture_model(svc)
        vocab = load_vocabulary(name)
        vectors = target_vectors(encoder, [target], svc.store, column)
        ((found, other),) = tag_vectors(vectors, encoder, vocab, q.top, svc.store)
        stored = tags_of(svc.store, [item_id]).get(item_id)
    out = TagResult(target.as_dict(), found, other, vocab.name,
                    encoder.spec.describe()).as_dict()
    out.pop("extra", None)
    out["stored"] = None if stored is None else [{"label": t.label, "share": t.share}
                                                 for t in stored]
    return out


def attribution(settings: ApiSettings, item_id: str, q: m.AttributionQuery) -> dict:
    """Whose style a stored picture resembles (as ``loupe attribute ID``)."""
    if q.top < 1:
        raise LoupeError("--top must be at least 1")
    if q.k < 1 or not q.temperature > 0:
        raise LoupeError("-k must be at least 1 and --temperature above 0")
    svc = searching(settings)
    with shared_heavy_work().slot("attribution"), svc.lock:
        target = _picture(svc, item_id)
        column, encoder = _picture_model(svc)
        vectors = target_vectors(encoder, [target], svc.store, column)
        result = attribute(vectors, [target], encoder, svc.store, column, q.top, q.k,
                           q.temperature)[0]
    return result.as_dict()


def duplicates(settings: ApiSettings, q: m.DuplicatesQuery) -> dict:
    """Groups of identical and near-identical items (as ``loupe duplicates``), the first
    ``limit`` of each sort."""
    check_threshold(q.threshold)
    with shared_heavy_work().slot("finding duplicates"):
        report = find_duplicates(Store(settings.db), None, q.threshold,
                                 DUPLICATE_KINDS[q.kind], q.folder).as_dict()
    report["exact_total"], report["near_total"] = len(report["exact"]), len(report["near"])
    report["exact"], report["near"] = report["exact"][:q.limit], report["near"][:q.limit]
    return report


def grounding(settings: ApiSettings, item_id: str, req: m.GroundingRequest) -> dict:
    """Kosmos-2's caption of a stored picture, its phrases with their boxes (cached
    answers come back at once; 503 when the weights are not there)."""
    with shared_heavy_work().slot("grounding"):
        svc = shared_search(settings.db)
        with svc.lock:
            item_row_or_404(svc.store, item_id)
        done = shared_grounding(settings.grounding_model).ground(settings.db, [item_id],
                                                                 req.prompt)[0]
    a = done.answer
    return {"id": item_id, "caption": a["caption"], "entities": a["entities"],
            "prompt": a["prompt"], "model": a["model"], "width": a["width"],
            "height": a["height"], "cached": a["cached"]}
