"""The search page's results: the grid of hits (or a welcome when nothing was asked)."""

from __future__ import annotations

import io
import math
import os

import streamlit as st
from PIL import Image

from loupe.indexer import ItemKind, LoupeError
from loupe.search import Hit, Moment, open_item, thumbs
from loupe.ui import core, routes
from loupe.ui import format as fmt
from loupe.ui.services import SearchService, jpeg, log_unexpected
from loupe.ui.views.search_panel import back_to_query
from loupe.ui.views.search_selected import select

ss = st.session_state


def _hit(d: dict) -> Hit:
    moments = [Moment(**m) for m in d.get("moments") or []]
    return Hit(**{**d, "moments": moments})


def results_view(svc: SearchService) -> None:
    info = ss.get("results_info")
    if ss.get("query_error"):
        st.error(ss["query_error"], icon=":material/info:")
    if info is None:
        if not ss.get("query_error"):
            welcome(svc)
        return
    hits = [_hit(d) for d in ss.get("results") or []]
    head, back = st.columns([5, 1], vertical_alignment="center")
    what = f"like **{fmt.md(info['like'])}**" if info.get("like") else "for your query"
    ms = info["seconds"] * 1000
    load = (f" · models and index loaded in {info['load_seconds']:.1f} s"
            if info["load_seconds"] >= 0.5 else "")
    model = ""
    encoders = svc.store.meta.encoders
    if len(encoders) > 1 and info["column"] in encoders:
        model = f" · {fmt.md(fmt.model_label(encoders[info['column']]))}"
    noun = fmt.results_noun(info.get("kind"), info.get("group", True), len(hits))
    hidden = (f" · {info['hidden']} near-duplicates hidden" if info.get("hidden") else "")
    head.markdown(f"{len(hits)} {noun} {what} in {ms:.0f} ms{load}{model}{hidden}")
    if info.get("like"):
        back.button("Back to my search", key="back", on_click=back_to_query)
    elif info.get("version") != svc.version():
        back.button("Refresh", key="refresh", icon=":material/refresh:",
                    help="The index has changed since this search (new files were indexed)",
                    on_click=back_to_query)
    if not hits:
        st.info("Nothing found. Try other words, another folder, or everything instead of "
                "one kind.", icon=":material/search_off:")
        return
    per_row = int(ss.get("per_row") or 5)
    for start in range(0, len(hits), per_row):
        cols = st.columns(per_row)
        for j, (col, h) in enumerate(zip(cols, hits[start:start + per_row], strict=False)):
            with col:
                tile(svc, h, start + j)


def tile(svc: SearchService, h: Hit, rank: int) -> None:
    """One result: thumbnail, name, score, moments, player for sounds, Select."""
    name = os.path.basename(h.path)
    with st.container(border=True):
        lines = core.matched_lines([{"text": h.text}], h.id)
        try:
            with svc.lock:
                picture = thumbs.thumbnail(svc.store, h.id)
                if lines:
                    picture = _with_text_boxes(svc, h.id, picture, lines)
            st.image(picture, width="stretch")
        except LoupeError as e:
            st.caption(f":material/broken_image: {fmt.md(str(e))}")
        except Exception as e:
            log_unexpected(f"thumbnail of {h.id}", e)
            st.caption(":material/broken_image: no picture")
        short = name if len(name) <= 28 else name[:26] + "…"
        st.markdown(f"**{fmt.md(short)}**", help=fmt.md(h.path))
        label = fmt.KIND_LABEL.get(h.kind, h.kind)
        if h.text_score is not None and h.text_score == h.score:  # ranked by its text alone
            st.caption(f"{label} · text match {h.text_score:.0%}")
        else:
            st.caption(f"{label} · score {h.score:.3f}")
        if h.text:  # found by the text it shows: which
            read = list(dict.fromkeys(ln["text"] for ln in h.text))
            more = f" and {len(read) - 2} more" if len(read) > 2 else ""
            st.caption(":material/text_fields: reads "
                       + ", ".join(f"“{fmt.md(t)}”" for t in read[:2]) + more)
        if h.moments:
            moments = sorted(h.moments, key=lambda m: -m.score)
            cols = st.columns(len(moments), gap="small")
            for c, m in zip(cols, moments, strict=True):
                c.button(fmt.clock(m.timestamp), key=f"m-{rank}-{m.id}", type="tertiary",
                         help=f"score {m.score:.3f}: show this moment",
                         on_click=select, args=(m.id,))
        elif h.timestamp is not None:
            st.caption(f"at {fmt.clock(h.timestamp)}")
        if h.kind == ItemKind.AUDIO:  # streamed from the file route, from the window's start
            try:
                with svc.lock, open_item(svc.store, h.id) as f:
                    media = f.media_type
                st.audio(routes.file_url(h.id, st.context.url), format=media,
                         start_time=int(h.timestamp or 0),
                         end_time=math.ceil(h.end) if h.end else None)
            except LoupeError as e:
                st.caption(f":material/sync_problem: {fmt.md(str(e))}")
        st.button("Select", key=f"sel-{rank}-{h.id}", on_click=select, args=(h.id,),
                  width="stretch")


def _with_text_boxes(svc: SearchService, item_id: str, thumbnail: bytes,
                     lines: list[dict]) -> bytes:
    """The thumbnail with the matched lines' boxes (in the picture's pixels) on it."""
    row = thumbs.item_row(svc.store, item_id)
    if not row.get("width") or not row.get("height"):
        return thumbnail
    im = Image.open(io.BytesIO(thumbnail))
    return jpeg(core.draw_text_boxes(im, lines, (row["width"], row["height"])))


def welcome(svc: SearchService) -> None:
    counts = svc.counts()
    if not counts:
        st.info("This index is empty: run `loupe index FOLDER` (or use the Index page) and "
                "come back.", icon=":material/photo_library:")
        return
    parts = []
    for kind, word in ((ItemKind.PHOTO, "photos"), (ItemKind.FRAME, "video moments"),
                       (ItemKind.AUDIO, "sound windows")):
        if counts.get(kind):
            parts.append(f"{counts[kind]:,} {word}")
    st.markdown("#### Search " + ", ".join(parts))
    st.markdown(
        "Type what you are looking for in the sidebar: *a foggy forest*, *red car at "
        "night*. Mix terms: `dog + 2:beach - people`. Or drop in a picture or a sound "
        "(or record one) to find what looks or sounds like it."
        + (" Find the text shown in pictures: `ocr:\"hotel lisboa\"`, or "
           "`a night street + ocr:bar`." if svc.reads_text() else ""))
