"""Duplicates: byte-identical copies and near duplicates (resized, re-encoded, cropped).

Exact duplicates are files with the same fingerprint (same bytes) at different paths.
Near duplicates are the connected components of the graph whose edges join items with
cosine similarity >= a threshold, found with FAISS range search in bounded blocks after
collapsing exact copies into one node. Video frames and sound windows are matched only
across files by default (a group lists such a file once, at its best-matching moment),
so a re-encoded copy of a video, or a photo of one of its shots, is found but a static
shot is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import PICTURE_KINDS, ItemKind, Modality
from loupe.search.ann import load_index
from loupe.search.store import Store

# Float32 dot products of identical unit vectors can come out at 0.99999994.
SIM_TOLERANCE = 1e-6
BLOCK = 4096  # range-search queries per block: bounds the memory of one search
KINDS = tuple(ItemKind)
# kind=None: pictures only, never sound windows (PICTURE_KINDS from loupe.indexer.kinds)


@dataclass
class DupItem:
    """One member of a duplicate group (for videos and sounds compared per file: the
    file's moment that best matches the group's representative)."""

    id: str
    path: str
    kind: str
    timestamp: float | None
    fingerprint: str | None
    similarity: float  # cosine with the group's representative (1.0 for itself)


@dataclass
class DuplicateGroup:
    """Items that are copies of one another, the representative first.

    ``exact``: the sets of member ids that are byte-identical files (same fingerprint,
    different paths); the other members are near duplicates.
    """

    items: list[DupItem]
    exact: list[list[str]] = field(default_factory=list)

    @property
    def representative(self) -> DupItem:
        """The member the others are compared with."""
        return self.items[0]

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


@dataclass
class DuplicateReport:
    """What :func:`find_duplicates` found."""

    column: str
    threshold: float
    kind: str | None
    compared: int  # items compared
    exact: list[DuplicateGroup] = field(default_factory=list)  # identical files
    near: list[DuplicateGroup] = field(default_factory=list)  # similar, may hold exact sets

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)


def check_threshold(threshold: float) -> float:
    """The threshold as a float, or LoupeError unless 0 < threshold <= 1."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise LoupeError(f"duplicate threshold must be a number, not {threshold!r}") from None
    if not 0.0 < t <= 1.0:
        raise LoupeError(f"duplicate threshold must be > 0 and <= 1 (cosine), not {threshold}")
    return t


def drop_near_duplicates(vectors: np.ndarray, threshold: float,
                         limit: int | None = None) -> list[int]:
    """Positions to keep of ranked unit ``vectors``: greedily, in rank order, a vector is
    kept unless its cosine with an already kept one is >= ``threshold``.

    ``limit``: stop once that many are kept (the rest are not looked at).
    """
    t = check_threshold(threshold) - SIM_TOLERANCE
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    kept: list[int] = []
    for start in range(0, len(v), 512):
        block = v[start:start + 512]
        near_kept = (block @ v[kept].T >= t).any(axis=1) if kept else np.zeros(len(block), bool)
        within = block @ block.T
        mine: list[int] = []
        for i in range(len(block)):
            if limit is not None and len(kept) + len(mine) >= limit:
                break
            if not near_kept[i] and not (within[i, mine] >= t).any():
                mine.append(i)
        kept.extend(start + i for i in mine)
        if limit is not None and len(kept) >= limit:
            break
    return kept


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return int(a)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class _Selection:
    """The items compared, and the nodes they collapse into: identical content (the same
    photo file, or the same moment of the same video / sound file) is one node."""

    vectors: np.ndarray  # (n, d)
    ids: np.ndarray
    paths: np.ndarray
    kinds: np.ndarray
    timestamps: np.ndarray  # NaN for photos
    fingerprints: list[str | None]
    files: np.ndarray  # item -> file content number (same bytes, same number)
    nodes: np.ndarray  # item -> node


def find_duplicates(store: Store, column: str | None = None, threshold: float = 0.95,
                    kind: str | None = ItemKind.PHOTO, folder: str | None = None,
                    across_files_only: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> DuplicateReport:
    """Exact and near-duplicate groups among the indexed items of ``kind``.

    ``kind``: "photo" (default), "frame", "audio", or None for all pictures (photos and
    video frames; sound windows are never mixed with pictures). ``threshold``: the cosine
    similarity at which two items count as near duplicates (model dependent).
    ``across_files_only``: items of one file (video frames, sound windows) never match
    each other, and a group lists each file once, at its moment closest to the group's
    representative; otherwise every matching moment is a member.
    ``on_progress(done, total)``: items searched so far.
    """
    threshold = check_threshold(threshold)
    if kind is not None and kind not in KINDS:
        raise LoupeError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)} (or none)")
    column = _column(store, column, kind)
    sel = _select(store, column, kind, folder)
    report = DuplicateReport(column, threshold, kind, len(sel.ids))
    if not len(sel.ids):
        return report
    edges, sims = _edges(sel, threshold, across_files_only, on_progress)
    report.exact = _exact_groups(sel)
    report.near = _near_groups(sel, edges, sims, per_file=across_files_only)
    return report


def _column(store: Store, column: str | None, kind: str | None) -> str:
    if column is None:
        need = Modality.AUDIO if kind == ItemKind.AUDIO else Modality.IMAGE
        return store.meta.query_column(None, {need})[0]
    if column not in store.meta.encoders:
        raise LoupeError(f"the index has no vector column {column!r} "
                         f"(it has: {', '.join(store.meta.encoders) or 'none'})")
    return column


def _select(store: Store, column: str, kind: str | None, folder: str | None) -> _Selection:
    index = load_index(store, column)
    cat = index.catalog
    mask = np.isin(cat.kinds, PICTURE_KINDS if kind is None else [kind])
    where = cat.mask(folder=folder)
    if where is not None:
        mask &= where
    pos = np.flatnonzero(mask)
    paths, timestamps = cat.paths[pos], cat.timestamps[pos]
    by_path = {r["path"]: r["fingerprint"] for r in store.file_rows()} if len(pos) else {}
    fingerprints = [by_path.get(p) for p in paths]
    # an unknown fingerprint: the file is only identical to itself
    contents = [fp if fp is not None else ("path", p)
                for fp, p in zip(fingerprints, paths, strict=True)]
    node_keys = [(c, None if np.isnan(t) else float(t))
                 for c, t in zip(contents, timestamps, strict=True)]
    return _Selection(index.vectors(pos), cat.ids[pos], paths, cat.kinds[pos], timestamps,
                      fingerprints, _numbered(contents), _numbered(node_keys))


def _numbered(keys: list) -> np.ndarray:
    """Equal keys get equal numbers 0, 1, ... in order of first appearance."""
    seen: dict = {}
    return np.array([seen.setdefault(k, len(seen)) for k in keys], np.int64)


def _edges(sel: _Selection, threshold: float, across_files_only: bool,
           on_progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """Unique node pairs (a < b) joined by some item pair with cosine >= threshold, and
    the best cosine of each pair."""
    n, d = sel.vectors.shape
    flat = faiss.IndexFlatIP(d)
    flat.add(sel.vectors)
    n_nodes = int(sel.nodes.max()) + 1
    keys: list[np.ndarray] = []
    best: list[np.ndarray] = []
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        lims, dist, found = flat.range_search(sel.vectors[start:stop],
                                              threshold - SIM_TOLERANCE)
        query = np.repeat(np.arange(start, stop), np.diff(lims).astype(np.int64))
        a, b = sel.nodes[query], sel.nodes[found]
        keep = (found > query) & (a != b)  # each pair once; not within one node
        if across_files_only:
            keep &= sel.files[query] != sel.files[found]
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        k, s = _max_per_key(lo * n_nodes + hi, dist[keep])
        keys.append(k)
        best.append(s)
        if on_progress:
            on_progress(stop, n)
    k, s = _max_per_key(np.concatenate(keys), np.concatenate(best))
    return np.stack([k // n_nodes, k % n_nodes], axis=1), s


def _max_per_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(keys):
        return keys.astype(np.int64), values.astype(np.float32)
    order = np.lexsort((-values, keys))  # by key, best value first
    keys, values = keys[order], values[order]
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first], values[first]


def _exact_groups(sel: _Selection) -> list[DuplicateGroup]:
    """One group per content held by two or more paths, one member per path."""
    by_file: dict[int, dict[str, int]] = {}
    for i in np.argsort(np.nan_to_num(sel.timestamps), kind="stable").tolist():
        if sel.fingerprints[i] is not None:
            by_file.setdefault(int(sel.files[i]), {}).setdefault(str(sel.paths[i]), i)
    groups = []
    for first_items in by_file.values():
        if len(first_items) > 1:
            items = [_item(sel, first_items[p], 1.0) for p in sorted(first_items)]
            groups.append(DuplicateGroup(items, [[it.id for it in items]]))
    return _sorted_groups(groups)


def _near_groups(sel: _Selection, edges: np.ndarray, sims: np.ndarray,
                 per_file: bool) -> list[DuplicateGroup]:
    n_nodes = int(sel.nodes.max()) + 1
    uf = _UnionFind(n_nodes)
    for a, b in edges.tolist():
        uf.union(a, b)
    degree = np.bincount(edges.ravel(), minlength=n_nodes)
    strength = np.bincount(edges.ravel(), weights=np.repeat(sims, 2), minlength=n_nodes)
    node_items: dict[int, list[int]] = {}
    for i, node in enumerate(sel.nodes.tolist()):
        node_items.setdefault(node, []).append(i)
    components: dict[int, list[int]] = {}
    for node in np.unique(edges).tolist():
        components.setdefault(uf.find(node), []).append(node)
    groups = []
    for nodes in components.values():
        # the most connected node (ties: the closest to its neighbours, then first path)
        rep = min(nodes, key=lambda v: (-degree[v], -strength[v],
                                        min(sel.paths[i] for i in node_items[v])))
        groups.append(_near_group(sel, [i for v in nodes for i in node_items[v]],
                                  min(node_items[rep], key=lambda i: sel.paths[i]), per_file))
    return _sorted_groups(groups)


def _near_group(sel: _Selection, items: list[int], rep: int, per_file: bool) -> DuplicateGroup:
    """The group of ``items`` around item ``rep``: one member per file (its best match
    with ``rep``) or per item."""
    sims = np.minimum(sel.vectors[items] @ sel.vectors[rep], 1.0)
    sims[sel.nodes[items] == sel.nodes[rep]] = 1.0  # the same bytes
    best: dict[object, tuple[float, int]] = {}
    for i, s in zip(items, sims.tolist(), strict=True):
        key = sel.paths[i] if per_file else i
        if key not in best or s > best[key][0]:
            best[key] = (s, i)
    chosen = sorted(best.values(), key=lambda b: (b[1] != rep, -b[0], sel.paths[b[1]]))
    same_bytes: dict[int, list[str]] = {}
    for _, i in chosen:
        if sel.fingerprints[i] is not None:
            key = sel.files[i] if per_file else sel.nodes[i]
            same_bytes.setdefault(int(key), []).append(str(sel.ids[i]))
    exact = sorted(sorted(ids) for ids in same_bytes.values() if len(ids) > 1)
    return DuplicateGroup([_item(sel, i, s) for s, i in chosen], exact)


def _item(sel: _Selection, i: int, similarity: float) -> DupItem:
    ts = sel.timestamps[i]
    return DupItem(str(sel.ids[i]), str(sel.paths[i]), str(sel.kinds[i]),
                   None if np.isnan(ts) else float(ts), sel.fingerprints[i], similarity)


def _sorted_groups(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    return sorted(groups, key=lambda g: (-len(g.items), g.items[0].path))
