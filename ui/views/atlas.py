"""The Atlas page: a 2-D map of the whole index (loupe.search.explain.atlas), the current
search's hits
on it, and what a box, a lasso or a click picks.

The map is a WebGL scatter (plotly ``Scattergl``) fed NumPy arrays: one trace per kind
and one for the hits, no per-point Python work here. Hover labels cannot hold pictures
(plotly draws them as text), so "Show pictures" lays a mosaic of thumbnails under the
points instead (loupe.search.explain.atlas.mosaic: one thumbnail per grid cell, the item nearest the
cell's centre).
"""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from loupe.indexer import ItemKind
from loupe.search import thumbs
from loupe.search.explain import Atlas, atlas_positions, load_atlas, mosaic, selected_positions
from loupe.search.store import Store
from loupe.ui import format as fmt
from loupe.ui.core import AppArgs
from loupe.ui.resources import friendly, heavy_work, open_index
from loupe.ui.services import SearchService, log_unexpected

ss = st.session_state

KIND_STYLE = {  # kind: (legend name, colour)
    ItemKind.PHOTO: ("Photos", "#4C78A8"),
    ItemKind.FRAME: ("Video moments", "#F58518"),
    ItemKind.AUDIO: ("Sound windows", "#54A24B"),
}
HIT_COLOUR = "#E45756"
KIND_CHOICES = {"Photos": ItemKind.PHOTO, "Video moments": ItemKind.FRAME, "Sounds": ItemKind.AUDIO}
METHOD_CHOICES = {"Automatic": "auto", "UMAP": "umap", "PCA": "pca"}
GRID_LIMIT = 30  # selected items shown as thumbnails, at most
PER_ROW = 6
MAP_HEIGHT = 720


@st.cache_resource(show_spinner=False, max_entries=6)
def _atlas(db: str, version: int, column: str, method: str, kinds: tuple[str, ...]) -> Atlas:
    """The atlas for one store version (``version`` is part of the key: a new version is
    a new entry). Its own Store: a first computation (UMAP: a minute or more on a big
    index) must not hold the search service's lock. Concurrent sessions asking for the
    same key wait for the one computation (st.cache_resource locks per key)."""
    return load_atlas(Store(db), column=column, method=method, kinds=kinds)


@st.cache_resource(show_spinner=False, max_entries=4)
def _mosaic(db: str, _atlas_obj: Atlas, key: tuple) -> str:
    """The mosaic as a data: URI (for the chart's background image)."""
    data = mosaic(Store(db), _atlas_obj)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def hit_ids() -> list[str]:
    """Item ids of the Search page's latest results (hits and their moments)."""
    ids: list[str] = []
    for h in ss.get("results") or []:
        ids.append(h["id"])
        ids.extend(m["id"] for m in h.get("moments") or [])
    return ids


def figure(atlas: Atlas, hits: np.ndarray, background: str | None = None) -> go.Figure:
    """The map: one WebGL trace per kind, the hits on top; each point's customdata is its
    position in the atlas (what a selection hands back)."""
    fig = go.Figure()
    faint = background is not None  # points over pictures: smaller, see-through
    positions = np.arange(len(atlas), dtype=np.int32)
    for kind, (name, colour) in KIND_STYLE.items():
        m = atlas.kinds == kind
        if not m.any():
            continue
        fig.add_trace(go.Scattergl(
            x=atlas.x[m], y=atlas.y[m], mode="markers", name=f"{name} ({int(m.sum()):,})",
            customdata=positions[m], hovertext=atlas.labels[m],
            hovertemplate="%{hovertext}<extra></extra>",
            marker={"size": 3 if faint else 5, "color": colour,
                    "opacity": 0.5 if faint else 0.75}))
    if len(hits):
        fig.add_trace(go.Scattergl(
            x=atlas.x[hits], y=atlas.y[hits], mode="markers",
            name=f"Search hits ({len(hits):,})", customdata=hits.astype(np.int32),
            hovertext=atlas.labels[hits], hovertemplate="★ %{hovertext}<extra></extra>",
            marker={"size": 11, "color": HIT_COLOUR, "symbol": "star",
                    "line": {"width": 1, "color": "white"}}))
    axis = {"visible": False, "range": [-0.02, 1.02], "constrain": "domain"}
    fig.update_layout(
        height=MAP_HEIGHT, margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode="select",
        xaxis=axis, yaxis={**axis, "scaleanchor": "x", "scaleratio": 1},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        # zoom and legend clicks survive reruns of the same map
        uirevision=f"{atlas.column}:{atlas.version}:{atlas.method}",
        hoverlabel={"namelength": -1})
    if background is not None:
        fig.add_layout_image(source=background, xref="x", yref="y", x=0, y=1, sizex=1,
                             sizey=1, xanchor="left", yanchor="top", sizing="stretch",
                             layer="below", opacity=0.95)
    return fig


def controls(svc: SearchService) -> tuple[str, str, tuple[str, ...], bool]:
    """The sidebar: model, kinds, method, pictures. Returns (column, method, kinds,
    pictures)."""
    encoders = svc.store.meta.encoders
    with st.sidebar:
        column = next(iter(encoders))
        if len(encoders) > 1:
            column = st.selectbox("Model", list(encoders), key="atlas_model",
                                  format_func=lambda c: fmt.model_label(encoders[c]))
        picked = st.pills("Show", list(KIND_CHOICES), selection_mode="multi",
                          default=["Photos", "Video moments"], key="atlas_kinds",
                          help="Sound windows are left out by default: they sit apart "
                               "from the pictures and can outnumber them.")
        label = st.selectbox("Layout", list(METHOD_CHOICES), key="atlas_method",
                             help="UMAP keeps neighbours together (a minute or more on a "
                                  "big index, once per index version); PCA is instant. "
                                  "Automatic: UMAP from 100 items on.")
        pictures = st.toggle("Show pictures on the map", key="atlas_pictures",
                             help="A mosaic of thumbnails under the points (the first "
                                  "time makes up to 576 thumbnails).")
    kinds = tuple(sorted(KIND_CHOICES[p] for p in (picked or [])))
    return column, METHOD_CHOICES[label or "Automatic"], kinds, bool(pictures)


def item_link(item_id: str, label: str) -> None:
    """A link that opens the item on the Search page (?item=ID opens it there)."""
    st.page_link("page_search.py", label=label, icon=":material/open_in_new:",
                 query_params={"item": item_id})


def picked_view(svc: SearchService, atlas: Atlas, picked: np.ndarray) -> None:
    """What the box, lasso or click picked: one item large, many as a grid."""
    if len(picked) == 0:
        st.caption("Drag a box or a lasso over the map (or click a point) to see the "
                   "pictures there.")
        return
    ss["atlas_picked"] = [str(i) for i in atlas.ids[picked[:GRID_LIMIT]]]
    if len(picked) == 1:
        p = int(picked[0])
        left, right = st.columns([2, 3])
        with left, friendly("showing the item"):
            with svc.lock:
                st.image(thumbs.thumbnail(svc.store, str(atlas.ids[p])), width="stretch")
        with right:
            st.markdown(f"**{fmt.md(atlas.labels[p])}**")
            st.code(fmt.shown_path(str(atlas.paths[p])), language=None, wrap_lines=True)
            item_link(str(atlas.ids[p]), "Open in Search")
        return
    shown = picked[:GRID_LIMIT]
    more = f" (the first {len(shown)} shown)" if len(picked) > len(shown) else ""
    st.markdown(f"**{len(picked):,} items picked**{more}")
    for start in range(0, len(shown), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, p in zip(cols, shown[start:start + PER_ROW], strict=False):
            with col, st.container(border=True):
                item_id = str(atlas.ids[p])
                try:
                    with svc.lock:
                        st.image(thumbs.thumbnail(svc.store, item_id), width="stretch")
                except Exception as e:  # one unreadable file must not hide the others
                    log_unexpected(f"thumbnail of {item_id}", e)
                    st.caption(":material/broken_image: no picture")
                name = str(atlas.labels[p])
                st.caption(fmt.md(name if len(name) <= 30 else name[:28] + "…"))
                item_link(item_id, "Open")


def _summary(atlas: Atlas, hits: np.ndarray) -> str:
    n = len(atlas)
    how = "UMAP" if atlas.method == "umap" else "PCA"
    when = ("from the cache" if atlas.cached else f"computed in {atlas.seconds:.1f} s")
    text = f"{n:,} items · {how} · store version {atlas.version} · {when}"
    if atlas.sampled:
        text += f" · a random sample of {atlas.total:,}"
    query = ss.get("_query")
    q = query.text if query is not None else None
    if len(hits):
        text += f" · ★ {len(hits):,} hits of your search" + (f" “{fmt.md(q)}”" if q else "")
    return text


def render(args: AppArgs) -> None:
    """The page."""
    st.title("Atlas")
    svc = open_index(args.db)
    if svc is None:
        return
    column, method, kinds, pictures = controls(svc)
    if not kinds:
        st.info("Pick at least one kind of item to map.", icon=":material/filter_alt:")
        return
    atlas = None
    with friendly("drawing the map"):
        version = svc.version()
        with st.spinner("Drawing the map of the index (the first time for each index "
                        "version: a minute or more for a big index)…"):
            with heavy_work().slot("drawing the map"):
                atlas = _atlas(svc.db, version, column, method, kinds)
    if atlas is None:
        return
    if len(atlas) == 0:
        ss["atlas_info"] = {"points": 0}
        st.info("Nothing to map: the index has no items of these kinds yet (run `loupe "
                "index FOLDER`, or use the Index page).", icon=":material/scatter_plot:")
        return
    hits = atlas_positions(atlas, hit_ids())
    background = None
    if pictures:
        with friendly("making the pictures"), st.spinner("Making the mosaic of thumbnails…"):
            key = (atlas.column, atlas.version, atlas.method, atlas.mapped_kinds)
            with heavy_work().slot("making the pictures"):
                background = _mosaic(svc.db, atlas, key)
    ss["atlas_info"] = {"points": len(atlas), "method": atlas.method, "version": atlas.version,
                        "sampled": atlas.sampled, "total": atlas.total, "hits": len(hits),
                        "column": atlas.column, "pictures": background is not None}
    st.caption(_summary(atlas, hits))
    event = st.plotly_chart(
        figure(atlas, hits, background), key="atlas_map", on_select="rerun",
        selection_mode=("points", "box", "lasso"), width="stretch",
        config={"scrollZoom": True, "displaylogo": False})
    sel = (event or {}).get("selection") or {}
    picked = selected_positions(atlas, sel.get("points") or [],
                                          sel.get("box") or [], sel.get("lasso") or [])
    picked_view(svc, atlas, picked)

