"""The atlas: a 2-D map of the whole index, one point per item, cached per store version.

Items whose vectors lie close together (similar pictures) land close together on the
map. Coordinates come from UMAP (umap-learn, cosine metric) when it is installed and the
index is big enough, else from PCA (the top two principal components, by NumPy). Both
are deterministic for a given seed.

A computed atlas is kept in ``DB/atlas/`` as one Arrow (feather) file per set of
parameters, the parameters and the store version it reflects in the file's schema
metadata. The file is replaced atomically (temp file + ``os.replace``), so readers see
the old atlas or the new one, whole. When the store moves on (an indexing run commits),
the next :func:`load_atlas` recomputes it. A read-only index gets its atlas computed
and not saved.

Nothing here is tied to the UI: it hands out NumPy arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind
from loupe.indexer.timecode import clock
from loupe.search.store import Store

ATLAS_FORMAT = 1
DEFAULT_KINDS: tuple[str, ...] = (ItemKind.PHOTO, ItemKind.FRAME)  # sound windows: ask for them
METHODS = ("auto", "umap", "pca")
UMAP_NEIGHBOURS = 15
# "auto" uses UMAP from this many points on: below it the k-NN graph is too small for
# UMAP's layout to mean much, and PCA answers at once (UMAP's numba code compiles on its
# first call in a process: ~12 s for a small map, ~50 s once pynndescent is needed).
UMAP_MIN_POINTS = 100

Progress = Callable[[str], None]


@dataclass(eq=False)
class Atlas:
    """Map coordinates of the index's items (arrays aligned by position)."""

    column: str  # the vector column mapped
    version: int  # the store version it reflects
    method: str  # "umap" or "pca": what was used
    requested: str  # the method asked for ("auto", "umap" or "pca")
    seed: int
    mapped_kinds: tuple[str, ...]  # which kinds of item were mapped
    ids: np.ndarray  # item ids (object array of str)
    paths: np.ndarray  # object array of str
    kinds: np.ndarray  # object array: "photo", "frame" or "audio"
    timestamps: np.ndarray  # float64 seconds into a video / sound; NaN for photos
    labels: np.ndarray  # object array: file name (" · m:ss" for moments), for hover text
    x: np.ndarray  # float32 in [0, 1]
    y: np.ndarray  # float32 in [0, 1]
    total: int  # items of those kinds in the index (more than len(self) when sampled)
    sampled: bool = False  # a seeded random subsample of ``total`` items
    seconds: float = 0.0  # time the computation took (0 for a loaded atlas's own time)
    cached: bool = False  # loaded from DB/atlas/
    _index: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def position_of(self) -> dict[str, int]:
        """{item id: position on the map} (made once per atlas)."""
        if self._index is None:
            self._index = {i: p for p, i in enumerate(self.ids.tolist())}
        return self._index


# -- computing -------------------------------------------------------------------------
def point_labels(paths: Sequence[str], timestamps: np.ndarray) -> np.ndarray:
    """Hover labels: the file name, with m:ss for a video moment or a sound window."""
    out = []
    for p, t in zip(paths, timestamps.tolist(), strict=True):
        name = os.path.basename(p)
        out.append(name if t != t else f"{name} · {clock(t)}")  # t != t: NaN (a photo)
    return np.asarray(out, dtype=object)


def umap_available() -> bool:
    """Whether umap-learn can be imported."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def pca_2d(vectors: np.ndarray, dims: int = 2) -> np.ndarray:
    """Projection on the top ``dims`` principal components (n, dims), float64.

    Deterministic: each component's sign is fixed so that its largest loading is
    positive (an eigensolver may return either sign). The components are the
    eigenvectors of the (d, d) covariance: cheaper than an SVD of the (n, d) data.
    """
    x = np.asarray(vectors)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n, d = x.shape
    if n == 0:
        return np.zeros((0, dims))
    mean = x.mean(axis=0, dtype=np.float64).astype(x.dtype)
    # In row blocks: no (n, d) float64 copy (400 MB at 100k x 512), and float32 data
    # keeps BLAS in single precision (twice as fast); blocks are summed in float64.
    step = 16_384
    cov = np.zeros((d, d))
    for s in range(0, n, step):
        c = x[s:s + step] - mean
        cov += c.T @ c
    cov /= max(1, n - 1)
    vals, vecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(vals)[::-1][:dims]
    comps = vecs[:, order]
    big = np.argmax(np.abs(comps), axis=0)
    comps = comps * np.sign(comps[big, np.arange(comps.shape[1])])
    out = np.concatenate([(x[s:s + step] - mean) @ comps.astype(x.dtype)
                          for s in range(0, n, step)]).astype(np.float64)
    if out.shape[1] < dims:  # fewer dimensions than asked for
        out = np.concatenate([out, np.zeros((n, dims - out.shape[1]))], axis=1)
    return out


def umap_2d(vectors: np.ndarray, seed: int = 0,
            n_neighbors: int = UMAP_NEIGHBOURS) -> np.ndarray:
    """UMAP of unit vectors to 2-D (cosine metric), deterministic for a seed."""
    import warnings

    import umap

    x = np.asarray(vectors, dtype=np.float32)
    # random_state makes UMAP single-threaded (n_jobs=1): the price of a repeatable map.
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), n_components=2,
                        metric="cosine", random_state=seed, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden", numba's notes
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def _unit_square(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shift into [0, 1] x [0, 1], keeping the aspect ratio (centred)."""
    if len(xy) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max())
    if not np.isfinite(span) or span <= 0:
        return np.full(len(xy), 0.5, np.float32), np.full(len(xy), 0.5, np.float32)
    out = (xy - lo) / span + (1.0 - (hi - lo) / span) / 2.0
    return out[:, 0].astype(np.float32), out[:, 1].astype(np.float32)


def _resolve_column(store: Store, column: str | None) -> str:
    if column is None:
        return store.meta.query_column()[0]  # LoupeError when the index has no model
    if column not in store.meta.encoders:
        raise LoupeError(f"this index has no vector column {column!r}")
    return column


def _check(method: str, kinds: Iterable[str]) -> tuple[str, ...]:
    if method not in METHODS:
        raise LoupeError(f"unknown map method {method!r} (one of {', '.join(METHODS)})")
    kinds = tuple(sorted(set(kinds)))
    bad = set(kinds) - {ItemKind.PHOTO, ItemKind.FRAME, ItemKind.AUDIO}
    if bad or not kinds:
        raise LoupeError(f"map kinds must be among photo, frame, audio (got {kinds})")
    return kinds


def compute_atlas(store: Store, column: str | None = None, method: str = "auto",
                  seed: int = 0, max_points: int = 200_000,
                  kinds: Iterable[str] = DEFAULT_KINDS,
                  on_progress: Progress | None = None) -> Atlas:
    """Compute the map of the index's items of ``kinds`` from one store snapshot.

    ``method``: "umap", "pca", or "auto" (UMAP when umap-learn is installed and there
    are at least UMAP_MIN_POINTS points, else PCA). More items than ``max_points``: a
    random subsample (seeded), and the atlas says so (``sampled``, ``total``).
    ``on_progress`` gets one line per stage.
    """
    kinds = _check(method, kinds)
    column = _resolve_column(store, column)
    say = on_progress or (lambda _msg: None)
    t0 = time.perf_counter()
    say("reading the vectors")
    version, table = store.read_vectors(column)
    if table.num_rows and "kind" in table.column_names:
        mask = np.isin(np.asarray(table["kind"].to_pylist(), dtype=object), list(kinds))
        table = table.filter(pa.array(mask))
    n = table.num_rows
    total = n
    sampled = False
    if n > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        table = table.take(pa.array(keep))
        n, sampled = max_points, True
    if n:
        dim = table.schema.field(column).type.list_size
        flat = table[column].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = flat.reshape(n, dim)
        ids = np.asarray(table["id"].to_pylist(), dtype=object)
        paths = np.asarray(table["path"].to_pylist(), dtype=object)
        item_kinds = np.asarray(table["kind"].to_pylist(), dtype=object)
        # nulls (photos) come out as NaN
        timestamps = table["timestamp"].to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        vectors = np.zeros((0, 2), np.float32)
        ids = paths = item_kinds = np.zeros(0, dtype=object)
        timestamps = np.zeros(0, np.float64)
    used = method
    if method == "auto":
        used = "umap" if n >= UMAP_MIN_POINTS and umap_available() else "pca"
    if used == "umap" and n <= UMAP_NEIGHBOURS:
        raise LoupeError(f"UMAP needs more than {UMAP_NEIGHBOURS} points (this map has {n})")
    say(f"{'UMAP' if used == 'umap' else 'PCA'} of {n:,} points")
    xy = umap_2d(vectors, seed) if used == "umap" else pca_2d(vectors)
    x, y = _unit_square(xy)
    say("labelling the points")
    labels = point_labels(paths.tolist(), timestamps)
    return Atlas(column=column, version=version, method=used, requested=method, seed=seed,
                 mapped_kinds=kinds, ids=ids, paths=paths, kinds=item_kinds,
                 timestamps=timestamps, labels=labels, x=x, y=y, total=total,
                 sampled=sampled, seconds=time.perf_counter() - t0)


# -- the cache -------------------------------------------------------------------------
def _params(column: str, method: str, seed: int, max_points: int,
            kinds: tuple[str, ...]) -> dict:
    return {"format": ATLAS_FORMAT, "column": column, "method": method, "seed": seed,
            "max_points": max_points, "kinds": list(kinds)}


def atlas_dir(store: Store) -> str:
    """Where atlases (and mosaics) are cached: ``DB/atlas/``."""
    return os.path.join(store.dir, "atlas")


def _cache_path(store: Store, params: dict) -> str:
    key = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(),
                          digest_size=8).hexdigest()
    return os.path.join(atlas_dir(store), f"{params['column']}-{key}.arrow")


def write_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".atlas-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the old file or the new one, whole
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def save_atlas(store: Store, atlas: Atlas, max_points: int) -> str:
    """Write ``atlas`` to the cache (atomically); returns the file's path."""
    params = _params(atlas.column, atlas.requested, atlas.seed, max_points, atlas.mapped_kinds)
    meta = {**params, "version": atlas.version, "used": atlas.method, "total": atlas.total,
            "sampled": atlas.sampled, "seconds": atlas.seconds}
    table = pa.table({
        "id": pa.array(atlas.ids.tolist(), pa.string()),
        "path": pa.array(atlas.paths.tolist(), pa.string()),
        "kind": pa.array(atlas.kinds.tolist(), pa.string()),
        "timestamp": pa.array(atlas.timestamps, pa.float64()),
        "label": pa.array(atlas.labels.tolist(), pa.string()),
        "x": pa.array(atlas.x, pa.float32()),
        "y": pa.array(atlas.y, pa.float32()),
    }).replace_schema_metadata({"loupe_atlas": json.dumps(meta)})
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    path = _cache_path(store, params)
    write_atomic(path, sink.getvalue())
    return path


def _read_meta(path: str) -> dict | None:
    try:
        with ipc.open_file(path) as r:  # the schema only: cheap
            raw = (r.schema.metadata or {}).get(b"loupe_atlas")
        return json.loads(raw) if raw else None
    except (OSError, ValueError, pa.ArrowException):
        return None


def cached_atlas(store: Store, column: str | None = None, method: str = "auto",
                 seed: int = 0, max_points: int = 200_000,
                 kinds: Iterable[str] = DEFAULT_KINDS) -> Atlas | None:
    """The saved atlas for these parameters when it reflects the store's current
    version, else None (missing, stale or damaged)."""
    kinds = _check(method, kinds)
    column = _resolve_column(store, column)
    params = _params(column, method, seed, max_points, kinds)
    path = _cache_path(store, params)
    meta = _read_meta(path)
    if meta is None or meta.get("version") != store.version() or any(
            meta.get(k) != v for k, v in params.items()):
        return None
    try:
        with ipc.open_file(path) as r:
            t = r.read_all()
    except (OSError, pa.ArrowException):
        return None
    return Atlas(column=column, version=meta["version"], method=meta["used"],
                 requested=method, seed=seed, mapped_kinds=kinds,
                 ids=np.asarray(t["id"].to_pylist(), dtype=object),
                 paths=np.asarray(t["path"].to_pylist(), dtype=object),
                 kinds=np.asarray(t["kind"].to_pylist(), dtype=object),
                 timestamps=t["timestamp"].to_numpy(),
                 labels=np.asarray(t["label"].to_pylist(), dtype=object),
                 x=t["x"].to_numpy(), y=t["y"].to_numpy(), total=meta["total"],
                 sampled=meta["sampled"], seconds=meta.get("seconds", 0.0), cached=True)


def _drop_stale_mosaics(store: Store, atlas: Atlas) -> None:
    """Remove the mosaics (atlas_select.mosaic) of this column's older atlases."""
    prefix = f"mosaic-{atlas.column}-"
    keep = f".v{atlas.version}."
    for name in os.listdir(atlas_dir(store)):
        if name.startswith(prefix) and keep not in name:
            try:
                os.remove(os.path.join(atlas_dir(store), name))
            except OSError:
                pass


def load_atlas(store: Store, column: str | None = None, method: str = "auto",
               seed: int = 0, max_points: int = 200_000,
               kinds: Iterable[str] = DEFAULT_KINDS,
               on_progress: Progress | None = None) -> Atlas:
    """The atlas of the store's current version: the cached one when it was computed
    for this version with these parameters, else computed now and saved (not saved when
    ``DB/atlas/`` cannot be written: a read-only index still gets its map)."""
    hit = cached_atlas(store, column, method, seed, max_points, kinds)
    if hit is not None:
        return hit
    atlas = compute_atlas(store, column, method, seed, max_points, kinds, on_progress)
    try:
        save_atlas(store, atlas, max_points)
        _drop_stale_mosaics(store, atlas)
    except OSError:
        pass
    return atlas
