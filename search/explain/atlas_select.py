"""Reading the atlas: the positions of given items, what a box, a lasso or a click picks,
and a picture of the whole map (a mosaic of thumbnails, cached beside the atlas)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from loupe.indexer.errors import LoupeError
from loupe.search import thumbs
from loupe.search.explain.atlas import Atlas, Progress, atlas_dir, write_atomic
from loupe.search.store import Store


# -- reading the map -------------------------------------------------------------------
def atlas_positions(atlas: Atlas, ids: Iterable[str]) -> np.ndarray:
    """Positions on the map of ``ids`` (in their order, once each; ids not on the map,
    e.g. sound windows or items left out of a subsample, are skipped)."""
    where = atlas.position_of()
    seen: dict[int, None] = {}
    for i in ids:
        p = where.get(i)
        if p is not None:
            seen.setdefault(p, None)
    return np.fromiter(seen, dtype=np.int64, count=len(seen))


def region(atlas: Atlas, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """Positions of the points inside the box (either corner order), ascending."""
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    inside = (atlas.x >= xa) & (atlas.x <= xb) & (atlas.y >= ya) & (atlas.y <= yb)
    return np.flatnonzero(inside)


def lasso(atlas: Atlas, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Positions of the points inside the polygon (xs, ys) (even-odd rule), ascending.

    Vectorised over the points, one pass per polygon edge.
    """
    px = np.asarray(xs, dtype=np.float64)
    py = np.asarray(ys, dtype=np.float64)
    if len(px) < 3 or len(atlas) == 0:
        return np.zeros(0, np.int64)
    x = atlas.x.astype(np.float64)
    y = atlas.y.astype(np.float64)
    inside = np.zeros(len(x), bool)
    for xa, ya, xb, yb in zip(px, py, np.roll(px, -1), np.roll(py, -1), strict=True):
        if ya == yb:
            continue  # a horizontal edge crosses no horizontal ray
        crosses = (ya > y) != (yb > y)
        at = xa + (y - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (x < at)
    return np.flatnonzero(inside)


def selected_positions(atlas: Atlas, points: Iterable[dict] = (),
                       boxes: Iterable[dict] = (), lassos: Iterable[dict] = ()) -> np.ndarray:
    """Positions a chart selection picks, ascending and once each.

    ``points``: clicked or selected points, each carrying its position on the map as
    ``customdata`` (an int, or a list whose first element is it). ``boxes`` and
    ``lassos``: ``{"x": [...], "y": [...]}`` in map coordinates (a box by two corners);
    every point inside counts, also points the chart did not draw.
    """
    picked: list[np.ndarray] = []
    n = len(atlas)
    for b in boxes:
        xs, ys = b.get("x") or [], b.get("y") or []
        if len(xs) >= 2 and len(ys) >= 2:
            picked.append(region(atlas, xs[0], xs[1], ys[0], ys[1]))
    for poly in lassos:
        picked.append(lasso(atlas, poly.get("x") or [], poly.get("y") or []))
    clicked = []
    for p in points:
        c = p.get("customdata")
        if isinstance(c, list | tuple):
            c = c[0] if c else None
        if isinstance(c, int | float) and 0 <= int(c) < n:
            clicked.append(int(c))
    picked.append(np.asarray(clicked, np.int64))
    return np.unique(np.concatenate(picked)).astype(np.int64)


# -- a picture of the map --------------------------------------------------------------
def mosaic_cells(atlas: Atlas, cells: int = 24) -> list[tuple[int, int, int]]:
    """For each occupied cell of a ``cells`` x ``cells`` grid over the unit square:
    (column, row from the bottom, position of the point nearest the cell's centre)."""
    if len(atlas) == 0:
        return []
    x = np.clip(atlas.x.astype(np.float64), 0.0, 1.0)
    y = np.clip(atlas.y.astype(np.float64), 0.0, 1.0)
    cx = np.minimum((x * cells).astype(np.int64), cells - 1)
    cy = np.minimum((y * cells).astype(np.int64), cells - 1)
    dist = (x - (cx + 0.5) / cells) ** 2 + (y - (cy + 0.5) / cells) ** 2
    cell = cy * cells + cx
    order = np.lexsort((np.arange(len(x)), dist, cell))  # by cell, nearest first
    first = order[np.unique(cell[order], return_index=True)[1]]
    return [(int(c % cells), int(c // cells), int(p))
            for c, p in zip(cell[first].tolist(), first.tolist(), strict=True)]


def _mosaic_path(store: Store, atlas: Atlas, cells: int, tile: int) -> str:
    key = hashlib.blake2b(json.dumps([atlas.column, atlas.method, atlas.seed,
                                      list(atlas.mapped_kinds), atlas.total,
                                      len(atlas)]).encode(), digest_size=8).hexdigest()
    return os.path.join(atlas_dir(store),
                        f"mosaic-{atlas.column}-{key}.v{atlas.version}.{cells}x{tile}.jpg")


def mosaic(store: Store, atlas: Atlas, cells: int = 24, tile: int = 48,
           on_progress: Progress | None = None) -> bytes:
    """JPEG of the map as pictures: a ``cells`` x ``cells`` grid of ``tile``-pixel
    squares, each occupied cell showing the thumbnail of the point nearest its centre
    (row 0 of the picture is the top of the map, y = 1). Cached in ``DB/atlas/`` beside
    the atlas; items whose file cannot be read leave their cell empty."""
    from PIL import Image


    path = _mosaic_path(store, atlas, cells, tile)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    say = on_progress or (lambda _msg: None)
    picks = mosaic_cells(atlas, cells)
    canvas = Image.new("RGB", (cells * tile, cells * tile), (250, 250, 250))
    for done, (cx, cy, p) in enumerate(picks):
        if done % 50 == 0:
            say(f"thumbnails {done:,} of {len(picks):,}")
        try:
            data = thumbs.thumbnail(store, str(atlas.ids[p]))
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:  # a thumbnail
                im = im.convert("RGB")
                side = min(im.size)  # centre square crop
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize(
                    (tile, tile), Image.BICUBIC)
        except (LoupeError, OSError, ValueError):
            continue
        canvas.paste(im, (cx * tile, (cells - 1 - cy) * tile))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=80)
    data = buf.getvalue()
    try:
        write_atomic(path, data)
    except OSError:
        pass
    return data
