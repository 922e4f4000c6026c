"""A stored picture described: its zero-shot tags and its style attribution at once (the
UI's "Tags and style"), from its stored vector."""

from __future__ import annotations

from loupe.indexer.encoders import Encoder
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import PICTURE_KINDS
from loupe.search.explain.attribution import Attribution, attribute
from loupe.search.explain.grounding.cache import resolve_target
from loupe.search.explain.labels import load_vocabulary
from loupe.search.explain.tags import TagResult, tag_vectors, target_vectors
from loupe.search.store import Store
from loupe.search.thumbs import item_row


def describe(store: Store, encoder: Encoder, column: str, item_id: str,
             vocabulary: str = "everyday", top: int = 8, style_top: int = 6, k: int = 10,
             temperature: float = 0.05) -> tuple[TagResult, Attribution]:
    """A stored picture's zero-shot tags (as ``loupe tag``) and style attribution (as
    ``loupe attribute``), from its vector in ``column`` (whose model is ``encoder``:
    one that embeds pictures and text)."""
    vocab = load_vocabulary(vocabulary)
    if item_row(store, item_id)["kind"] not in PICTURE_KINDS:
        raise LoupeError("only pictures (photos and video moments) have tags and a style")
    target = resolve_target(item_id, store)
    vec = target_vectors(encoder, [target], store, column)
    ((tags, other),) = tag_vectors(vec, encoder, vocab, top, store)
    style = attribute(vec, [target], encoder, store, column, style_top, k, temperature)[0]
    return TagResult(target.as_dict(), tags, other, vocab.name, encoder.spec.describe()), style
