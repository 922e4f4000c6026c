"""The selected hit: its picture or player, its facts, more like this, and Kosmos-2
grounding of it (or of the frames around a video moment)."""

from __future__ import annotations

import io
import math
import os
from dataclasses import asdict

import streamlit as st
from PIL import Image

from loupe.indexer import ItemKind, LoupeError
from loupe.search import FileChanged, open_item, thumbs
from loupe.search.explain import DEFAULT_PROMPT
from loupe.ui import core, routes
from loupe.ui import format as fmt
from loupe.ui.core import AppArgs
from loupe.ui.resources import friendly, grounding_service, heavy_work
from loupe.ui.services import SearchService, jpeg, log_unexpected
from loupe.ui.views.search_explain import explain_panel
from loupe.ui.views.search_panel import more_like

AROUND_LIMIT = 12  # frames grounded around a moment, at most

ss = st.session_state


def select(item_id: str) -> None:
    ss["selected"] = item_id
    st.query_params["item"] = item_id


def unselect() -> None:
    ss["selected"] = None
    st.query_params.pop("item", None)


def current_selection(svc: SearchService) -> dict | None:
    """The selected item's row, from the session or the URL (?item=ID); anything that is
    not an item of this index is refused politely (nothing is opened)."""
    item_id = st.query_params.get("item") or None
    ss["selected"] = item_id  # the URL decides (shared links, the browser's back button)
    if not item_id:
        return None
    try:
        with svc.lock:
            row = core.check_item(svc.store, item_id)
    except LoupeError as e:
        st.error(str(e), icon=":material/link_off:")
        ss["selected"] = None
        st.query_params.pop("item", None)
        return None
    return row


@st.cache_data(max_entries=48, show_spinner=False)
def _preview(_svc: SearchService, db: str, item_id: str, fingerprint: str | None,
             lines: list[dict] | None = None) -> bytes:
    """The picture to show, with the boxes of ``lines`` (text an ocr: term matched)."""
    with _svc.lock:
        picture = thumbs.item_picture(_svc.store, item_id)
    if lines:
        picture = core.draw_text_boxes(picture, lines)
    return jpeg(picture)


def _text_on(picture: bytes, lines: list[dict], row: dict) -> bytes:
    """A shown picture (Kosmos-2's, its size maybe not the item's) with the boxes of
    ``lines`` too."""
    if not lines or not row.get("width") or not row.get("height"):
        return picture
    im = Image.open(io.BytesIO(picture))
    return jpeg(core.draw_text_boxes(im, lines, (row["width"], row["height"])))


def _play(kind: str, svc: SearchService, row: dict) -> None:
    """A player for a stored video or sound, from the item's moment: the browser streams
    the file from Loupe's file route, which serves it only while it is the file that was
    indexed (checked here too, to say so instead of showing a player that cannot play)."""
    try:
        with svc.lock, open_item(svc.store, row["id"]) as f:
            media = f.media_type
    except FileChanged as e:
        st.warning(str(e), icon=":material/sync_problem:")
        return
    url = routes.file_url(row["id"], st.context.url)
    start = int(row["timestamp"] or 0)
    if kind == "video":
        st.video(url, format=media, start_time=start)
    else:
        end = row.get("end")
        st.audio(url, format=media, start_time=start, end_time=math.ceil(end) if end else None)


def selected_view(svc: SearchService, args: AppArgs, row: dict) -> None:
    """The selected hit: big picture (with Kosmos-2's boxes once grounded) or player,
    facts, more like this, grounding."""
    item_id, kind = row["id"], row["kind"]
    lines = core.matched_lines(ss.get("results") or [], item_id)  # found by its text
    left, right = st.columns([3, 2], gap="medium")
    with right:  # first: a grounding made here shows on the left in the same run
        facts = [("Folder", fmt.shown_path(os.path.dirname(row["path"]))),
                 ("Size", fmt.human_size(row["size"])), ("Modified", fmt.when(row["mtime_ns"])),
                 ("Kind", fmt.ITEM_NOUN.get(kind, kind))]
        if row["timestamp"] is not None:
            ts = f"{fmt.clock(row['timestamp'])} ({row['timestamp']:.2f} s)"
            if row.get("end") is not None:
                ts += f" to {row['end']:.2f} s"
            facts.append(("At", ts))
        if row.get("shot") is not None:
            facts.append(("Shot", str(row["shot"] + 1)))
        if row.get("width") and row.get("height"):
            facts.append(("Pixels", f"{row['width']} × {row['height']}"))
        if row.get("silent"):
            facts.append(("Sound", "silent"))
        facts += fmt.capture_facts(row)
        st.markdown("\n".join(f"**{k}:** {fmt.md(v)}  " for k, v in facts))
        st.code(row["path"], language=None, wrap_lines=True)
        more, close = st.columns(2)
        if more.button("More like this", key="more", icon=":material/auto_awesome:",
                       width="stretch"):
            more_like(item_id)
            unselect()
            st.rerun()  # the whole page: the grid shows the new results
        if close.button("Close", key="close", icon=":material/close:", width="stretch"):
            unselect()
            st.rerun()
        if kind in (ItemKind.PHOTO, ItemKind.FRAME):
            text_read_panel(svc, item_id, lines)
            grounding_panel(svc, args, row)
            grounding_summary(item_id)
    with left:
        with friendly("showing the item"):
            if kind == ItemKind.AUDIO:
                with svc.lock:
                    st.image(thumbs.thumbnail(svc.store, item_id), width="stretch")
                _play("sound", svc, row)
            else:
                g = _grounded(item_id)
                shown = lines if ss.get("show_text_boxes", True) else []
                if g is not None and ss.get("show_boxes", True):
                    st.image(_text_on(g["picture"], shown, row), width="stretch")
                else:
                    st.image(_preview(svc, svc.db, item_id, row["fingerprint"], shown),
                             width="stretch")
                if g is not None:
                    st.toggle("Show Kosmos-2's boxes", value=True, key="show_boxes")
                if lines:
                    st.toggle("Show where the text is", value=True, key="show_text_boxes")
                if kind == ItemKind.FRAME:
                    _play("video", svc, row)
    grounding_frames(item_id)
    if kind in (ItemKind.PHOTO, ItemKind.FRAME):
        explain_panel(svc, row)


def open_selected(svc: SearchService, args: AppArgs, row: dict) -> None:
    """The selected hit in a large dialog over the grid (closing it unselects)."""
    name = os.path.basename(row["path"])
    at = f" at {fmt.clock(row['timestamp'])}" if row["timestamp"] is not None else ""

    @st.dialog(f"{name}{at}", width="large", on_dismiss=unselect)
    def show() -> None:
        try:
            selected_view(svc, args, row)
        except LoupeError as e:
            st.error(str(e), icon=":material/info:")
        except Exception as e:
            log_unexpected("showing the selected item", e)
            st.error(f"Something went wrong: {type(e).__name__}")

    show()


# -- text read in it ---------------------------------------------------------------------
def text_read_panel(svc: SearchService, item_id: str, matched: list[dict]) -> None:
    """Every line of text read in the picture, with the reader's confidence (the lines
    the query's ocr: term matched in bold); nothing when the index does not read text."""
    if not svc.reads_text():
        return
    read = core.shown_texts(svc.texts_read(item_id))
    found = {ln["text"] for ln in matched}
    if not read:
        st.markdown("**Text read in it:** none")
        return
    rows = [(f"**{fmt.md(t)}**" if t in found else fmt.md(t)) + f" · {score:.0%}"
            for t, score in read]
    st.markdown("**Text read in it** (confidence)\n\n" + "\n".join(f"- {r}" for r in rows))


# -- grounding -------------------------------------------------------------------------
def grounding_panel(svc: SearchService, args: AppArgs, row: dict) -> None:
    item_id = row["id"]
    st.markdown("**What is in it?** Kosmos-2 answers with boxes: a caption by default, "
                "or ask it, e.g. *Find the white fish*.")
    prompt = st.text_input("Prompt", value=DEFAULT_PROMPT, key="ground_prompt")
    gs = grounding_service(args.grounding_model)
    done = ss.get("grounding")
    if done is None or done.get("item") != item_id:
        with friendly("looking up a cached answer"):
            hit = gs.cached(args.db, item_id, prompt)
            if hit is not None:
                ss["grounding"] = {"item": item_id, "prompt": prompt, "around": False,
                                   "results": [asdict(hit)]}
    if st.button("Ground", key="ground", icon=":material/center_focus_strong:", type="primary"):
        with friendly("grounding"), heavy_work().slot("grounding"), st.spinner("Asking Kosmos-2…"):
            res = gs.ground(args.db, [item_id], prompt)
            ss["grounding"] = {"item": item_id, "prompt": prompt, "around": False,
                               "results": [asdict(r) for r in res]}
    if row["kind"] == ItemKind.FRAME:
        span = st.slider("Surrounding frames (± seconds)", 1, 10, 2, key="ground_span")
        if st.button("Ground the surrounding frames", key="ground_around",
                     icon=":material/view_week:"):
            with (friendly("grounding frames"), heavy_work().slot("grounding"),
                  st.spinner("Asking Kosmos-2 about each frame…")):
                with svc.lock:
                    frames = core.neighbour_frames(svc.searcher, item_id, float(span),
                                                   limit=AROUND_LIMIT)
                res = gs.ground(args.db, [f for f, _ in frames], prompt, side=800)
                ss["grounding"] = {"item": item_id, "prompt": prompt, "around": True,
                                   "results": [asdict(r) for r in res]}


def _grounded(item_id: str) -> dict | None:
    """This item's own grounding (not its surrounding frames'), if one was made."""
    done = ss.get("grounding")
    if not done or done.get("item") != item_id or done["around"] or not done["results"]:
        return None
    return done["results"][0]


def grounding_summary(item_id: str) -> None:
    """Kosmos-2's answer about the selected picture (its boxes are on the picture)."""
    r = _grounded(item_id)
    if r is None:
        return
    tag = ":green-badge[cached]" if r["cached"] else ":blue-badge[new answer]"
    phrases = ", ".join(f"`{p}`" for p in r["phrases"]) or "no boxes"
    st.markdown(f"**Grounded by Kosmos-2** {tag}  \n{fmt.md(r['caption'])}  \n"
                f"Phrases: {phrases}")


def grounding_frames(item_id: str) -> None:
    """The surrounding frames, grounded, in time order."""
    done = ss.get("grounding")
    if not done or done.get("item") != item_id or not done["around"]:
        return
    results = done["results"]
    n_cached = sum(r["cached"] for r in results)
    st.markdown(f"**Grounded {len(results)} frames** by Kosmos-2"
                + (f" ({n_cached} cached)" if n_cached else ""))
    per_row = 4
    for i in range(0, len(results), per_row):
        cols = st.columns(per_row)
        for col, r in zip(cols, results[i:i + per_row], strict=False):
            with col:
                st.image(r["picture"], width="stretch")
                mark = " · cached" if r["cached"] else ""
                st.caption(f"{fmt.clock(r['timestamp'])}{mark}: {fmt.md(r['caption'])}")
