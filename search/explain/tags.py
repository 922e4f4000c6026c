"""Zero-shot tags: "96% cat, 1% mouse" from a label vocabulary, for one picture or for
the whole index (stored, and filterable in search with ``tag=LABEL``).

A picture's tags are the softmax, over the vocabulary's labels, of its cosine
similarity with each label's prompt-ensemble vector times the model's logit scale: CLIP's
zero-shot classifier. Shares over the whole vocabulary sum to 100; a top-N list comes
with the share of the rest ("other").

Index tags are computed from the stored vectors (no picture is decoded again) for photos
and video frames, after each indexing run, and kept in the ``tags`` table: an item's top
labels with at least ``min_share`` percent. The configuration lives in the index's meta.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.encoders import Encoder
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, Modality
from loupe.search.explain.grounding.cache import Target, target_image
from loupe.search.explain.labels import (
    DEFAULT_TAGS,
    Tag,
    Vocabulary,
    label_vectors,
    load_vocabulary,
    shares,
    top_labels,
    top_shares,
)
from loupe.search.store import Store, read_columns, scan, upsert, where_in

# The tags table: an item's top labels (one row per item), kept by ``update_tags``.
TAGS = "tags"
TAGS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the item
        pa.field("key", pa.string()),  # model column : vocabulary hash : top : min share
        pa.field("labels", pa.list_(pa.string())),
        pa.field("shares", pa.list_(pa.float32())),  # percent, same order as labels
        pa.field("tagged_at", pa.float64()),
    ]
)


def _tags_table(store: Store, create: bool = False):
    return store.table(TAGS, lambda: TAGS_SCHEMA, create)


def tag_keys(store: Store) -> dict[str, str]:
    """{item id: key of the settings its tags were computed with}."""
    t = _tags_table(store)
    if t is None:
        return {}
    a = scan(t, ["id", "key"])
    return dict(zip(a["id"].to_pylist(), a["key"].to_pylist(), strict=True))


def tag_rows(store: Store, where: str | None = None) -> pa.Table:
    """Stored tags (id, labels, shares), optionally filtered."""
    t = _tags_table(store)
    if t is None:
        return TAGS_SCHEMA.empty_table().select(["id", "labels", "shares"])
    return scan(t, ["id", "labels", "shares"], where)


def tagged_count(store: Store) -> int:
    """How many items have stored tags (counted, not read)."""
    t = _tags_table(store)
    return 0 if t is None else t.count_rows()


def tag_labels(store: Store) -> list[str]:
    """The labels the stored tags use, sorted without regard to case (only that column
    is read)."""
    t = _tags_table(store)
    if t is None:
        return []
    flat = pc.unique(pc.list_flatten(read_columns(t, ["labels"])["labels"])).to_pylist()
    return sorted((x for x in flat if x is not None), key=str.lower)


def upsert_tags(store: Store, rows: list[dict]) -> None:
    """Insert or replace items' tags by id, in one commit."""
    if rows:
        upsert(_tags_table(store, create=True), "id", rows, TAGS_SCHEMA)


def delete_tags(store: Store, ids) -> None:
    """Drop the tags of these items."""
    t = _tags_table(store)
    if t is not None:
        for where in where_in("id", ids):
            t.delete(where)


def drop_tags(store: Store) -> None:
    """Drop every stored tag (tagging turned off)."""
    store.drop_table(TAGS)

TAG_KINDS = (ItemKind.PHOTO, ItemKind.FRAME)
DEFAULT_TOP = 5
DEFAULT_MIN_SHARE = 5.0
BATCH = 8192
_ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)


@dataclass
class TagResult:
    """A picture's top labels; ``other`` is the share of all the rest (sums to 100)."""

    target: dict
    tags: list[Tag]
    other: float
    vocabulary: str
    model: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def bare(label: str) -> str:
    """How a label is matched by ``tag=``: lower case, without a leading article
    ("a cat" and "cat" are the same tag)."""
    return _ARTICLE.sub("", label.strip().lower())


def labels_dir(store: Store | None) -> str | None:
    """Where label vectors are cached (under the index, when there is one)."""
    return os.path.join(store.dir, "labels") if store is not None else None


def target_vectors(encoder: Encoder, targets: Sequence[Target], store: Store | None = None,
                   column: str | None = None) -> np.ndarray:
    """(N, dim) vectors of targets: an indexed item's stored vector in ``column`` when it
    has one, else the picture embedded by ``encoder`` now."""
    out: list[np.ndarray | None] = [None] * len(targets)
    if store is not None and column:
        ids = [t.item_id for t in targets if t.item_id]
        rows = store.get_items(ids, ["id", "timestamp", column]) if ids else {}
        for i, t in enumerate(targets):
            row = rows.get(t.item_id or "")
            same_moment = row is not None and (t.timestamp is None or row["timestamp"] is None
                                              or abs(row["timestamp"] - t.timestamp) < 1e-6)
            if row is not None and row.get(column) is not None and same_moment:
                out[i] = np.asarray(row[column], np.float32)
    todo = [i for i, v in enumerate(out) if v is None]
    if todo:
        vecs = encoder.embed_images([target_image(targets[i]) for i in todo])
        for i, v in zip(todo, vecs, strict=True):
            out[i] = v
    return np.stack(out) if out else np.zeros((0, encoder.dim), np.float32)  # type: ignore


def tag_vectors(vectors: np.ndarray, encoder: Encoder, vocab: Vocabulary, top: int,
                store: Store | None = None) -> list[tuple[list[Tag], float]]:
    """Top tags (and the rest's share) of each vector."""
    lv = label_vectors(encoder, vocab, labels_dir(store))
    return [top_labels(row, vocab.labels, top)
            for row in shares(vectors, lv, encoder.logit_scale)]


# -- tags of the whole index ------------------------------------------------------------

def tagging_config(store: Store) -> dict | None:
    """The index's tagging settings (None: the index is not tagged)."""
    return store.meta.get("tagging")


def enable_tagging(store: Store, vocabulary: str = DEFAULT_TAGS, column: str | None = None,
                   top: int = DEFAULT_TOP, min_share: float = DEFAULT_MIN_SHARE) -> dict:
    """Turn on (or change) tagging of the whole index; tags are (re)computed by
    :func:`update_tags`, at the end of every indexing run."""
    vocab = load_vocabulary(vocabulary)  # fails now, not after indexing
    if column is None:
        column = store.meta.query_column(None, {Modality.IMAGE, Modality.TEXT})[0]
    elif column not in store.meta.encoders:
        raise LoupeError(f"the index has no model column {column}")
    if top < 1 or not 0 <= min_share < 100:
        raise LoupeError("tags: top must be at least 1 and min share in [0, 100)")
    cfg = {"vocabulary": vocab.name, "column": column, "top": int(top),
           "min_share": float(min_share)}
    store.meta.update(tagging=cfg)
    return cfg


def update_tags(store: Store, encoder_of: Callable[[str], Encoder],
                on_progress: Callable[[int, int], None] | None = None) -> int:
    """Tag the photos and frames that have no tags from the current settings; drop the
    tags of items that are gone. Returns how many items were tagged.

    Cheap when nothing changed: the items version and settings of the last complete run
    are recorded, and a run at the same ones returns at once.
    """
    cfg = tagging_config(store)
    if not cfg:
        return 0
    column = cfg["column"]
    if column not in store.meta.encoders:
        raise LoupeError(f"tagging uses model column {column}, which the index no longer has")
    vocab = load_vocabulary(cfg["vocabulary"])
    stamp = [store.version(), vocab.key, column, cfg["top"], cfg["min_share"]]
    if store.meta.get("tagged") == stamp:
        return 0
    version, table = store.read_vectors(column)
    table = table.filter(pc.is_in(table["kind"], pa.array(TAG_KINDS)))
    key = f"{column}:{vocab.key}:{cfg['top']}:{cfg['min_share']}"
    done = tag_keys(store)
    ids = table["id"].to_pylist()
    todo = [i for i, item in enumerate(ids) if done.get(item) != key]
    gone = set(done) - set(ids)
    if todo:
        encoder = encoder_of(column)
        lv = label_vectors(encoder, vocab, labels_dir(store))
        dim = lv.shape[1]
        for start in range(0, len(todo), BATCH):
            part = todo[start:start + BATCH]
            vecs = table[column].take(pa.array(part)).combine_chunks().flatten()
            vecs = vecs.to_numpy(zero_copy_only=False).reshape(len(part), dim)
            rows = []
            at, vals = top_shares(shares(vecs, lv, encoder.logit_scale), cfg["top"])
            now = time.time()
            for i, pos, val in zip(part, at, vals, strict=True):
                keep = max(1, int((val >= cfg["min_share"]).sum()))  # at least the top one
                rows.append({"id": ids[i], "key": key,
                             "labels": [vocab.labels[j] for j in pos[:keep]],
                             "shares": val[:keep].tolist(), "tagged_at": now})
            upsert_tags(store, rows)
            if on_progress:
                on_progress(min(start + BATCH, len(todo)), len(todo))
    if gone:
        delete_tags(store, gone)
    store.meta.update(tagged=[version, *stamp[1:]])
    return len(todo)


def ids_with_tags(store: Store, wanted: Sequence[str]) -> set[str]:
    """Ids of the items whose stored tags include every label of ``wanted`` (matched
    by :func:`bare`)."""
    if not tagging_config(store):
        raise LoupeError("this index has no tags: index with --tags (e.g. `loupe index "
                         "DIR --tags`) to tag every photo and frame")
    table = tag_rows(store)
    if table.num_rows == 0:
        return set()
    flat = pc.list_flatten(table["labels"]).to_pylist()
    parents = pc.list_parent_indices(table["labels"]).to_numpy()
    ids = table["id"].to_pylist()
    keep: set[str] | None = None
    for w in wanted:
        target = bare(w)
        hit = {ids[p] for p, label in zip(parents, flat, strict=True) if bare(label) == target}
        keep = hit if keep is None else keep & hit
    return keep or set()


def tags_of(store: Store, item_ids: Sequence[str]) -> dict[str, list[Tag]]:
    """{id: stored tags} of these items (those that have some)."""
    if not item_ids or not tagging_config(store):
        return {}
    out = {}
    rows = [r for where in where_in("id", item_ids) for r in tag_rows(store, where).to_pylist()]
    for row in rows:
        out[row["id"]] = [Tag(label, share)
                          for label, share in zip(row["labels"], row["shares"], strict=True)]
    return out


def parse_where(clauses: Sequence[str]) -> list[str]:
    """The tags asked for by ``--where tag=LABEL`` clauses (all must hold)."""
    wanted = []
    for c in clauses:
        key, sep, value = c.partition("=")
        if not sep or key.strip().lower() != "tag" or not value.strip():
            raise LoupeError(f"--where {c!r}: the filter is tag=LABEL (e.g. --where tag=dog)")
        wanted.append(value.strip())
    return wanted


def set_tagging(store: Store, vocabulary: str | None, encoders: Sequence[Encoder] = ()) -> None:
    """Turn index-time tags on (with ``vocabulary``; "" keeps the current or default one)
    or off (None: the settings and the stored tags are dropped).

    ``encoders``: the run's models; those the index does not record yet (a new index
    registers its models when the run starts) are registered first, so that tags can
    name their column.
    """
    if vocabulary is None:
        store.meta.update(tagging=None, tagged=None)
        drop_tags(store)
        return
    for e in encoders:
        if e.spec.column not in store.meta.encoders:
            store.register_encoder(e.spec)
    current = tagging_config(store) or {}
    enable_tagging(store, vocabulary or current.get("vocabulary", DEFAULT_TAGS),
                   current.get("column"))
