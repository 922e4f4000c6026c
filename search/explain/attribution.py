"""Style attribution: "whose style is this, in what share?", answered two ways.

1. **Zero-shot** over vocabularies of artists and art movements (shipped in
   ``datasets/labels/``; prompts such as "a painting in the style of {}"): shares from
   CLIP's zero-shot classifier (see search/labels.py), summing to 100.
2. **Reference collections**: a person registers works per artist or style
   (``loupe collection add "Monet" ./refs/monet``). A picture's attribution is the share
   of its ``k`` nearest reference works that each collection holds, each work weighted by
   ``exp(cosine / temperature)`` (a softmax over the neighbours), and those nearest works
   are listed as the evidence, so credit can be checked, not just claimed.

Reference works are embedded with every model of the index that embeds pictures, when
added; a model added later embeds them on first use.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from loupe.indexer.encoders import Encoder
from loupe.indexer.errors import LoupeError
from loupe.indexer.fingerprint import fingerprint_file
from loupe.indexer.kinds import MediaKind, Modality
from loupe.indexer.media.image import ImageDecodeError, upright_image_file
from loupe.indexer.media.sniff import kind_from_extension, sniff
from loupe.indexer.scan import ScanProblem
from loupe.indexer.scan import scan as scan_folders
from loupe.search.explain.grounding.cache import Target
from loupe.search.explain.labels import Tag, load_vocabulary
from loupe.search.explain.tags import tag_vectors
from loupe.search.store import Store, scan, sql_str, upsert, where_in

# Reference works for style attribution: one row per work and model column.
REFERENCES = "references"
REFERENCES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # hash of collection, path, column
        pa.field("collection", pa.string()),  # the artist or style it stands for
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("column", pa.string()),
        pa.field("vector", pa.list_(pa.float32())),
        pa.field("added_at", pa.float64()),
    ]
)


def _references_table(store: Store, create: bool = False):
    return store.table(REFERENCES, lambda: REFERENCES_SCHEMA, create)


def reference_rows(store: Store, where: str | None = None,
                   columns: list[str] | None = None) -> pa.Table:
    """Reference works (optionally filtered), all columns unless ``columns``."""
    t = _references_table(store)
    names = columns or REFERENCES_SCHEMA.names
    if t is None:
        return REFERENCES_SCHEMA.empty_table().select(names)
    return scan(t, names, where)


def upsert_references(store: Store, rows: list[dict]) -> None:
    """Insert or replace reference works by key, in one commit."""
    if rows:
        upsert(_references_table(store, create=True), "key", rows, REFERENCES_SCHEMA)


def delete_references(store: Store, where: str) -> None:
    """Drop the reference works matching ``where``."""
    t = _references_table(store)
    if t is not None:
        t.delete(where)

DEFAULT_K = 10
DEFAULT_TEMPERATURE = 0.05
EMBED_BATCH = 16


@dataclass
class Evidence:
    """One reference work near the picture."""

    collection: str
    path: str
    similarity: float
    weight: float  # percent of the neighbours' total weight
    key: str = ""  # the reference row (loupe.search.thumbs.reference_thumbnail)


@dataclass
class Attribution:
    """Both answers for one picture."""

    target: dict
    model: str
    artists: list[Tag] = field(default_factory=list)
    artists_other: float = 0.0
    movements: list[Tag] = field(default_factory=list)
    movements_other: float = 0.0
    references: list[Tag] = field(default_factory=list)  # per collection, sums to 100
    evidence: list[Evidence] = field(default_factory=list)  # nearest works, nearest first

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


@dataclass
class ReferenceSet:
    """One model's reference works: names, paths and unit vectors, row-aligned."""

    collections: np.ndarray  # object, (n,)
    paths: np.ndarray  # object, (n,)
    vectors: np.ndarray  # float32, (n, dim)
    keys: np.ndarray | None = None  # object, (n,): reference row keys


def knn_shares(vector: np.ndarray, refs: ReferenceSet, k: int = DEFAULT_K,
               temperature: float = DEFAULT_TEMPERATURE) -> tuple[list[Tag], list[Evidence]]:
    """Per-collection shares (percent, summing to 100, largest first) among the ``k``
    nearest reference works, each weighted by ``exp(cosine / temperature)``; and those
    works as evidence."""
    if not temperature > 0 or k < 1:
        raise LoupeError("attribution needs k >= 1 and a temperature > 0")
    if len(refs.vectors) == 0:
        return [], []
    sims = refs.vectors @ np.asarray(vector, np.float32)
    k = min(k, len(sims))
    near = np.argsort(-sims, kind="stable")[:k]
    logits = (sims[near] - sims[near[0]]) / temperature
    w = np.exp(logits.astype(np.float64))
    w = 100.0 * w / w.sum()
    per: dict[str, float] = {}
    for i, wi in zip(near, w, strict=True):
        per[str(refs.collections[i])] = per.get(str(refs.collections[i]), 0.0) + float(wi)
    ranked = sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))
    evidence = [Evidence(str(refs.collections[i]), str(refs.paths[i]), float(sims[i]),
                         float(wi), str(refs.keys[i]) if refs.keys is not None else "")
                for i, wi in zip(near, w, strict=True)]
    return [Tag(name, share) for name, share in ranked], evidence


# -- reference collections -------------------------------------------------------------

@dataclass
class CollectionReport:
    """What ``add_collection`` did."""

    collection: str
    added: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _key(collection: str, path: str, column: str) -> str:
    raw = "\0".join([collection, path, column]).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def picture_columns(store: Store) -> list[str]:
    """The index's model columns that embed pictures (and texts), in model order."""
    return [c for c, s in store.meta.encoders.items()
            if {Modality.IMAGE, Modality.TEXT} <= set(s.modalities)]


def _picture_files(folders: Sequence[str]) -> tuple[list, list[tuple[str, str]]]:
    problems: list[ScanProblem] = []
    files, skipped = [], []
    for folder in folders:
        if not os.path.exists(folder):
            raise LoupeError(f"no such file or folder: {folder}")
    for entry in scan_folders(folders, problems):
        try:
            with open(entry.path, "rb") as f:
                kind = sniff(f.read(64)) or kind_from_extension(entry.path)
        except OSError as e:
            skipped.append((entry.path, f"cannot read: {e.strerror or e}"))
            continue
        if kind == MediaKind.IMAGE:
            files.append(entry)
    skipped += [(p.path, p.reason) for p in problems]
    return files, skipped


def _embed_files(encoder: Encoder, paths: Sequence[str],
                 skipped: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(paths), EMBED_BATCH):
        pics, names = [], []
        for p in paths[start:start + EMBED_BATCH]:
            try:
                pics.append(upright_image_file(p))
                names.append(p)
            except (ImageDecodeError, OSError) as e:
                skipped.append((p, str(e)))
        if pics:
            for p, v in zip(names, encoder.embed_images(pics), strict=True):
                out[p] = v
    return out


def add_collection(store: Store, name: str, folders: Sequence[str],
                   encoder_of: Callable[[str], Encoder],
                   on_progress: Callable[[int, int], None] | None = None) -> CollectionReport:
    """Register the pictures under ``folders`` as works of ``name`` (an artist or style),
    embedded with each picture model of the index. Running it again adds new and changed
    files only, and forgets works that are gone from those folders."""
    name = name.strip()
    if not name:
        raise LoupeError("a collection needs a name (the artist or style it stands for)")
    columns = picture_columns(store)
    if not columns:
        raise LoupeError("the index has no model that embeds pictures: run `loupe index` first")
    folders = [os.path.abspath(os.path.expanduser(f)) for f in folders]
    files, skipped = _picture_files(folders)
    report = CollectionReport(name, skipped=skipped)
    if not files:
        raise LoupeError(f"no pictures under {', '.join(folders)}")
    where = f"collection = {sql_str(name)}"
    have = {(r["path"], r["column"]): r for r in reference_rows(
        store, where, ["path", "column", "size", "mtime_ns"]).to_pylist()}
    found = {e.path for e in files}
    gone = {p for p, _ in have if p not in found and any(
        p == f or p.startswith(f.rstrip(os.sep) + os.sep) for f in folders)}
    for paths in where_in("path", gone):
        delete_references(store, f"{where} AND {paths}")
    report.removed = len(gone)
    total = len(files) * len(columns)
    done = 0
    for column in columns:
        todo = []
        for e in files:
            old = have.get((e.path, column))
            if old and old["size"] == e.size and old["mtime_ns"] == e.mtime_ns:
                report.unchanged += 1
            else:
                todo.append(e)
        if todo:
            vecs = _embed_files(encoder_of(column), [e.path for e in todo], report.skipped)
            rows = []
            for e in todo:
                if e.path in vecs:
                    rows.append({"key": _key(name, e.path, column), "collection": name,
                                 "path": e.path, "size": e.size, "mtime_ns": e.mtime_ns,
                                 "fingerprint": fingerprint_file(e.path, e.size),
                                 "column": column, "vector": vecs[e.path].tolist(),
                                 "added_at": time.time()})
            upsert_references(store, rows)
            report.added += len(rows)
        done += len(files)
        if on_progress:
            on_progress(done, total)
    report.added //= max(1, len(columns))
    report.unchanged //= max(1, len(columns))
    return report


def remove_collection(store: Store, name: str) -> int:
    """Forget a collection; returns how many works it had."""
    count = collections(store).get(name, 0)
    if not count:
        raise LoupeError(f"no collection named {name!r} (see `loupe collection list`)")
    delete_references(store, f"collection = {sql_str(name)}")
    return count


def collections(store: Store) -> dict[str, int]:
    """{collection: number of works}, by name."""
    rows = reference_rows(store, columns=["collection", "path"]).to_pylist()
    works: dict[str, set[str]] = {}
    for r in rows:
        works.setdefault(r["collection"], set()).add(r["path"])
    return {name: len(paths) for name, paths in sorted(works.items())}


def reference_set(store: Store, column: str, encoder: Encoder | None = None) -> ReferenceSet:
    """The reference works' vectors in ``column``. Works registered before this model
    joined the index are embedded now (with ``encoder``) and stored."""
    rows = reference_rows(store, columns=["key", "collection", "path", "size", "mtime_ns",
                                         "fingerprint", "column", "vector"]).to_pylist()
    mine = [r for r in rows if r["column"] == column]
    have = {(r["collection"], r["path"]) for r in mine}
    missing: dict[tuple[str, str], dict] = {}
    for r in rows:
        if (r["collection"], r["path"]) not in have:
            missing.setdefault((r["collection"], r["path"]), r)
    if missing and encoder is not None:
        skipped: list[tuple[str, str]] = []
        vecs = _embed_files(encoder, sorted({p for _, p in missing}), skipped)
        new = [{**r, "key": _key(c, p, column), "column": column,
                "vector": vecs[p].tolist(), "added_at": time.time()}
               for (c, p), r in missing.items() if p in vecs]
        upsert_references(store, new)
        mine += new
    if not mine:
        return ReferenceSet(np.array([], object), np.array([], object),
                            np.zeros((0, encoder.dim if encoder else 0), np.float32))
    return ReferenceSet(np.array([r["collection"] for r in mine], object),
                        np.array([r["path"] for r in mine], object),
                        np.asarray([r["vector"] for r in mine], np.float32),
                        np.array([r["key"] for r in mine], object))


# -- both answers ----------------------------------------------------------------------

def attribute(vectors: np.ndarray, targets: Sequence[Target], encoder: Encoder,
              store: Store | None = None, column: str | None = None, top: int = 5,
              k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE,
              artists: str = "artists", movements: str = "art-movements") -> list[Attribution]:
    """Attribute each picture (its vector) with both methods."""
    artist_vocab, movement_vocab = load_vocabulary(artists), load_vocabulary(movements)
    refs = reference_set(store, column, encoder) if store is not None and column else None
    by_artist = tag_vectors(vectors, encoder, artist_vocab, top, store)
    by_movement = tag_vectors(vectors, encoder, movement_vocab, top, store)
    out = []
    for vec, t, art, mov in zip(vectors, targets, by_artist, by_movement, strict=True):
        a = Attribution(t.as_dict(), encoder.spec.describe())
        (a.artists, a.artists_other), (a.movements, a.movements_other) = art, mov
        if refs is not None:
            a.references, a.evidence = knn_shares(vec, refs, k, temperature)
        out.append(a)
    return out
