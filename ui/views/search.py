"""The search page: query panel (sidebar), selected hit, results grid."""

from __future__ import annotations

import math
import os
from dataclasses import asdict

import streamlit as st

from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, Modality
from loupe.search import thumbs
from loupe.search.engine import Hit, Moment
from loupe.search.explain.grounding.kosmos2 import DEFAULT_PROMPT
from loupe.ui import core
from loupe.ui.core import AppArgs, Upload
from loupe.ui.resources import friendly, grounding_service, open_index, search_service
from loupe.ui.services import SearchService, jpeg, log_unexpected

PLAY_LIMIT = 300_000_000  # bytes: bigger videos and sounds are loaded on request
GRID_PLAY_LIMIT = 30_000_000  # sounds played straight from the grid
KIND_LABEL = {ItemKind.PHOTO: "Photo", ItemKind.FRAME: "Video", ItemKind.AUDIO: "Sound"}
AROUND_LIMIT = 12  # frames grounded around a moment, at most
STYLE_VOCABS = ("artists", "art-movements")  # shown as style, not offered as tags

ss = st.session_state


# -- query panel -----------------------------------------------------------------------
def _upload(kind: str, uploaded, weight_key: str) -> Upload | None:
    if uploaded is None:
        return None
    w = st.number_input("weight", min_value=-5.0, max_value=5.0, value=1.0, step=0.5,
                        key=weight_key, help="2 counts twice as much; -1 subtracts it")
    return Upload(kind, uploaded.name, uploaded.getvalue(), float(w))


def query_panel(svc: SearchService) -> tuple[tuple, dict]:
    """The sidebar's widgets; returns (signature, query) of what they ask for."""
    sb = st.sidebar
    with sb:
        st.text_input(
            "Search", key="query", placeholder="a foggy forest  ·  dog + 2:beach - people",
            help="Words, with the CLI's arithmetic: `+` and `-` between terms, `2:word` "
                 "for a weight, quotes to keep words together.")
        uploads: list[Upload] = []
        ids: list = []
        with st.expander("Search with a picture or a sound",
                         expanded=bool(ss.get("image_upload") or ss.get("sound_upload")
                                       or ss.get("recording"))):
            img = st.file_uploader("A picture", type=core.IMAGE_UPLOAD_TYPES,
                                   key="image_upload")
            u = _upload(Modality.IMAGE, img, "w_image")
            snd = st.file_uploader("A sound", type=core.SOUND_UPLOAD_TYPES,
                                   key="sound_upload")
            v = _upload(Modality.AUDIO, snd, "w_sound")
            rec = st.audio_input("Or record one", key="recording")
            r = _upload(Modality.AUDIO, rec, "w_recording")
            for up, f in ((u, img), (v, snd), (r, rec)):
                if up is not None:
                    uploads.append(up)
                    ids.append((getattr(f, "file_id", None), up.name, len(up.data), up.weight))
        st.divider()
        kind_label = st.segmented_control(
            "Show", list(core.KINDS), default="All", required=True, key="kind",
            help="Video: moments of videos (sampled frames). Sound: 2-second windows of "
                 "sound files and soundtracks.")
        folders = svc.folders()
        folder = st.selectbox("Folder", [""] + folders, key="folder",
                              format_func=lambda f: "All folders" if not f else core.shown_path(f))
        days = st.date_input("Dates (file modified)", value=(), key="dates",
                             format="YYYY-MM-DD",
                             help="Pick a first and a last day; empty: any date.")
        since, until = core.days_to_range(days)
        every = st.toggle("Show every frame and sound window", key="every_frame",
                          help="Off: a video or sound file is one result with its best "
                               "moments.")
        hide = st.toggle("Hide near-duplicates", key="hide_dups",
                         help="Copies, resized or re-encoded versions and near-identical "
                              "shots of a better hit are left out (cosine ≥ 0.95).")
        tag_names = svc.tag_labels()
        wanted = st.multiselect("Tagged", tag_names, key="tags",
                                placeholder="any tag" if tag_names else "not tagged",
                                disabled=not tag_names,
                                help="Only pictures with all of these zero-shot tags "
                                     "(the index is tagged by `loupe index --tags`).")
        k = st.slider("Results", 4, 100, 20, key="k")
        encoders = svc.store.meta.encoders
        column = None
        if len(encoders) > 1:
            choice = st.selectbox(
                "Model", ["auto"] + list(encoders), key="model",
                format_func=lambda c: "Automatic (the first that understands the query)"
                if c == "auto" else core.model_label(encoders[c]))
            column = None if choice == "auto" else choice
        with st.expander("Display"):
            st.slider("Pictures per row", 3, 8, 5, key="per_row")
    query = {"text": ss.get("query") or "", "uploads": uploads,
             "kind": core.KINDS.get(kind_label or "All"), "folder": folder or None,
             "group": not every, "k": int(k), "column": column, "since": since,
             "until": until, "dedupe": core.DEDUPE if hide else None,
             "tags": tuple(wanted)}
    signature = (query["text"], tuple(ids), query["kind"], query["folder"], query["group"],
                 query["k"], column, since, until, query["dedupe"], query["tags"])
    return signature, query


def _keep(res, version: int, like: str | None, kind: str | None, group: bool) -> None:
    """Keep a search's answer in the session (for the grid, and for tests to read)."""
    ss["results"] = [core.hit_record(h) for h in res.hits]
    ss["results_info"] = {"seconds": res.seconds, "load_seconds": res.load_seconds,
                          "column": res.column, "like": like, "version": version,
                          "kind": kind, "group": group, "hidden": res.hidden}


def run_search(svc: SearchService, query: dict) -> None:
    """Search (when the query asks for something) and keep the answer in the session."""
    ss["results"], ss["results_info"], ss["query_error"] = [], None, None
    files: list = []
    version = svc.version()
    try:
        terms = core.text_terms(query["text"])
        if not terms and not query["uploads"]:
            return
        with core.upload_terms(query["uploads"]) as files, svc.lock:
            res = core.run_query(svc.searcher, terms + files, query["k"], query["kind"],
                                 query["folder"], query["group"], query["column"],
                                 query["since"], query["until"], query["dedupe"],
                                 query["tags"])
    except LoupeError as e:
        msg = str(e)
        for term, up in zip(files, query["uploads"], strict=False):
            msg = msg.replace(term.value, up.name)  # the upload's name, not the temp file
        ss["query_error"] = msg
        return
    except Exception as e:
        log_unexpected("search", e)
        ss["query_error"] = f"Something went wrong: {type(e).__name__}"
        return
    _keep(res, version, None, query["kind"], query["group"])


# -- selection -------------------------------------------------------------------------
def _select(item_id: str) -> None:
    ss["selected"] = item_id
    st.query_params["item"] = item_id


def _unselect() -> None:
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
def _preview(_svc: SearchService, db: str, item_id: str, fingerprint: str | None) -> bytes:
    with _svc.lock:
        picture = thumbs.item_picture(_svc.store, item_id)
    return jpeg(picture)


def _play(kind: str, svc: SearchService, row: dict, key: str) -> None:
    """A player for a stored video or sound, from the item's moment."""
    with svc.lock:
        path = thumbs.item_path(svc.store, row["id"])
    size = os.path.getsize(path)
    start = int(row["timestamp"] or 0)
    if size > PLAY_LIMIT and not ss.get(key):
        st.button(f"Load the {kind} ({core.human_size(size)})", key=f"btn-{key}",
                  on_click=lambda: ss.__setitem__(key, True))
        return
    if kind == "video":
        st.video(path, format=core.media_type(path, "video/mp4"), start_time=start)
    else:
        end = row.get("end")
        st.audio(path, format=core.media_type(path, "audio/wav"), start_time=start,
                 end_time=math.ceil(end) if end else None)


def selected_view(svc: SearchService, args: AppArgs, row: dict) -> None:
    """The selected hit: big picture (with Kosmos-2's boxes once grounded) or player,
    facts, more like this, grounding."""
    item_id, kind = row["id"], row["kind"]
    left, right = st.columns([3, 2], gap="medium")
    with right:  # first: a grounding made here shows on the left in the same run
        facts = [("Folder", core.shown_path(os.path.dirname(row["path"]))),
                 ("Size", core.human_size(row["size"])), ("Date", core.when(row["mtime_ns"])),
                 ("Kind", {ItemKind.PHOTO: "photo", ItemKind.FRAME: "video moment",
                           ItemKind.AUDIO: "sound window"}.get(kind, kind))]
        if row["timestamp"] is not None:
            ts = f"{core.clock(row['timestamp'])} ({row['timestamp']:.2f} s)"
            if row.get("end") is not None:
                ts += f" to {row['end']:.2f} s"
            facts.append(("At", ts))
        if row.get("shot") is not None:
            facts.append(("Shot", str(row["shot"] + 1)))
        if row.get("width") and row.get("height"):
            facts.append(("Pixels", f"{row['width']} × {row['height']}"))
        if row.get("silent"):
            facts.append(("Sound", "silent"))
        st.markdown("\n".join(f"**{k}:** {core.md(v)}  " for k, v in facts))
        st.code(row["path"], language=None, wrap_lines=True)
        more, close = st.columns(2)
        if more.button("More like this", key="more", icon=":material/auto_awesome:",
                       width="stretch"):
            _more_like(item_id)
            _unselect()
            st.rerun()  # the whole page: the grid shows the new results
        if close.button("Close", key="close", icon=":material/close:", width="stretch"):
            _unselect()
            st.rerun()
        if kind in (ItemKind.PHOTO, ItemKind.FRAME):
            grounding_panel(svc, args, row)
            grounding_summary(item_id)
    with left:
        with friendly("showing the item"):
            if kind == ItemKind.AUDIO:
                with svc.lock:
                    st.image(thumbs.thumbnail(svc.store, item_id), width="stretch")
                _play("sound", svc, row, f"play-{item_id}")
            else:
                g = _grounded(item_id)
                if g is not None and ss.get("show_boxes", True):
                    st.image(g["picture"], width="stretch")
                else:
                    st.image(_preview(svc, svc.db, item_id, row["fingerprint"]),
                             width="stretch")
                if g is not None:
                    st.toggle("Show Kosmos-2's boxes", value=True, key="show_boxes")
                if kind == ItemKind.FRAME:
                    _play("video", svc, row, f"play-{item_id}")
    grounding_frames(item_id)
    if kind in (ItemKind.PHOTO, ItemKind.FRAME):
        explain_panel(svc, row)


def open_selected(svc: SearchService, args: AppArgs, row: dict) -> None:
    """The selected hit in a large dialog over the grid (closing it unselects)."""
    name = os.path.basename(row["path"])
    at = f" at {core.clock(row['timestamp'])}" if row["timestamp"] is not None else ""

    @st.dialog(f"{name}{at}", width="large", on_dismiss=_unselect)
    def show() -> None:
        try:
            selected_view(svc, args, row)
        except LoupeError as e:
            st.error(str(e), icon=":material/info:")
        except Exception as e:
            log_unexpected("showing the selected item", e)
            st.error(f"Something went wrong: {type(e).__name__}")

    show()


def _more_like(item_id: str) -> None:
    svc = search_service(ss["_db"])
    q = ss.get("_query") or {}
    ss["query_error"] = None
    version = svc.version()
    try:
        with svc.lock:
            column = (ss.get("results_info") or {}).get("column")
            res = core.more_like(svc.searcher, item_id, q.get("k", 20), q.get("kind"),
                                 q.get("folder"), q.get("group", True), column)
            name = os.path.basename(thumbs.item_row(svc.store, item_id)["path"])
    except LoupeError as e:
        ss["query_error"] = str(e)
        return
    except Exception as e:
        log_unexpected("more like this", e)
        ss["query_error"] = f"Something went wrong: {type(e).__name__}"
        return
    _keep(res, version, name, q.get("kind"), q.get("group", True))


def _back_to_query() -> None:
    ss["signature"] = None  # the query runs again


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
        with friendly("grounding"), st.spinner("Asking Kosmos-2…"):
            res = gs.ground(args.db, [item_id], prompt)
            ss["grounding"] = {"item": item_id, "prompt": prompt, "around": False,
                               "results": [asdict(r) for r in res]}
    if row["kind"] == ItemKind.FRAME:
        span = st.slider("Surrounding frames (± seconds)", 1, 10, 2, key="ground_span")
        if st.button("Ground the surrounding frames", key="ground_around",
                     icon=":material/view_week:"):
            with friendly("grounding frames"), st.spinner("Asking Kosmos-2 about each frame…"):
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
    st.markdown(f"**Grounded by Kosmos-2** {tag}  \n{core.md(r['caption'])}  \n"
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
                st.caption(f"{core.clock(r['timestamp'])}{mark}: {core.md(r['caption'])}")


# -- tags and style --------------------------------------------------------------------
def _shares_chart(tags: list[dict], other: float | None = None, key: str = "") -> None:
    """A horizontal bar chart of labels and their shares (percent), in the given order,
    with the full labels and the percentages written on it."""
    import altair as alt

    labels = [t["label"] for t in tags]
    values = [round(t["share"], 1) for t in tags]
    if other is not None and other >= 0.05:
        labels.append("(all others)")
        values.append(round(other, 1))
    data = {"label": labels, "share": values, "text": [f"{v:.1f}%" for v in values]}
    y = alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=260))
    base = alt.Chart(alt.Data(values=[dict(zip(data, row, strict=True))
                                      for row in zip(*data.values(), strict=True)]))
    bars = base.mark_bar().encode(
        x=alt.X("share:Q", title=None, scale=alt.Scale(domain=[0, 100])), y=y,
        tooltip=["label:N", "text:N"])
    text = base.mark_text(align="left", dx=3).encode(x="share:Q", y=y, text="text:N")
    st.altair_chart((bars + text).properties(height=24 * len(labels) + 40),
                    width="stretch", key=f"chart-{key}")


def _explain(svc: SearchService, item_id: str, vocabulary: str) -> None:
    with svc.lock:
        tags, style = core.explain(svc.searcher, item_id, vocabulary)
    ss["explained"] = {"item": item_id, "vocabulary": vocabulary, "tags": tags.as_dict(),
                     "style": style.as_dict()}


def explain_panel(svc: SearchService, row: dict) -> None:
    """Zero-shot tags and style attribution of the selected picture: bar charts, and
    the nearest reference works as evidence."""
    from loupe.search.explain.labels import BUILTIN

    item_id = row["id"]
    st.divider()
    head, pick, go = st.columns([3, 2, 2], vertical_alignment="bottom")
    head.markdown("**What is it, and whose style?** Zero-shot tags and style "
                  "attribution by the index's model.")
    from loupe.search.explain.tags import tagging_config

    own = (tagging_config(svc.store) or {}).get("vocabulary")
    choices = list(dict.fromkeys([v for v in (own, *BUILTIN) if v]))
    vocabulary = pick.selectbox("Tags from", [c for c in choices if c not in STYLE_VOCABS],
                                key="explain_vocab",
                                format_func=lambda v: os.path.basename(v) + (
                                    " (the index's tags)" if v == own else ""))
    done = ss.get("explained")
    fresh = done is not None and done["item"] == item_id and done["vocabulary"] == vocabulary
    if go.button("Tags and style", key="explain", icon=":material/palette:",
                 width="stretch", disabled=fresh):
        with friendly("tagging"), st.spinner("Comparing with the labels…"):
            _explain(svc, item_id, vocabulary)
            done, fresh = ss["explained"], True
    if not fresh:
        return
    tags, style = done["tags"], done["style"]
    left, right = st.columns(2, gap="medium")
    with left:
        st.markdown(f"**Tags** ({core.md(os.path.basename(tags['vocabulary']))})")
        _shares_chart(tags["tags"], tags["other"], "tags")
        st.markdown("**Movements** (zero-shot)")
        _shares_chart(style["movements"], style["movements_other"], "movements")
    with right:
        st.markdown("**Artists** (zero-shot)")
        _shares_chart(style["artists"], style["artists_other"], "artists")
        st.markdown("**Reference collections**")
        if not style["references"]:
            st.caption("None registered yet: `loupe collection add \"Artist\" FOLDER` "
                       "registers an artist's works, and this shows whose works this "
                       "picture is nearest to, with them as evidence.")
        else:
            _shares_chart(style["references"], None, "references")
            evidence_view(svc, style["evidence"])


def evidence_view(svc: SearchService, evidence: list[dict], per_row: int = 5) -> None:
    """The nearest reference works: thumbnail, collection, similarity, vote share."""
    st.caption(f"Evidence: the {len(evidence)} nearest reference works")
    for start in range(0, len(evidence), per_row):
        cols = st.columns(per_row)
        for col, e in zip(cols, evidence[start:start + per_row], strict=False):
            with col:
                try:
                    with svc.lock:
                        st.image(thumbs.reference_thumbnail(svc.store, e["key"]),
                                 width="stretch")
                except LoupeError as err:
                    st.caption(f":material/broken_image: {core.md(str(err))}")
                st.caption(f"{core.md(e['collection'])} · {e['similarity']:.2f} · "
                           f"{e['weight']:.0f}%", help=core.md(e["path"]))


# -- results ---------------------------------------------------------------------------
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
    what = f"like **{core.md(info['like'])}**" if info.get("like") else "for your query"
    ms = info["seconds"] * 1000
    load = (f" · models and index loaded in {info['load_seconds']:.1f} s"
            if info["load_seconds"] >= 0.5 else "")
    model = ""
    encoders = svc.store.meta.encoders
    if len(encoders) > 1 and info["column"] in encoders:
        model = f" · {core.md(core.model_label(encoders[info['column']]))}"
    noun = _noun(info.get("kind"), info.get("group", True), len(hits))
    hidden = (f" · {info['hidden']} near-duplicates hidden" if info.get("hidden") else "")
    head.markdown(f"{len(hits)} {noun} {what} in {ms:.0f} ms{load}{model}{hidden}")
    if info.get("like"):
        back.button("Back to my search", key="back", on_click=_back_to_query)
    elif info.get("version") != svc.version():
        back.button("Refresh", key="refresh", icon=":material/refresh:",
                    help="The index has changed since this search (new files were indexed)",
                    on_click=_back_to_query)
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


def _noun(kind: str | None, group: bool, n: int) -> str:
    """What the results are: "photos", "videos", "video moments", "sound files"..."""
    word = {None: "result", ItemKind.PHOTO: "photo", ItemKind.FRAME: "video" if group else "video moment",
            ItemKind.AUDIO: "sound file" if group else "sound window"}.get(kind, "result")
    return word if n == 1 else word + "s"


def tile(svc: SearchService, h: Hit, rank: int) -> None:
    """One result: thumbnail, name, score, moments, player for sounds, Select."""
    name = os.path.basename(h.path)
    with st.container(border=True):
        try:
            with svc.lock:
                st.image(thumbs.thumbnail(svc.store, h.id), width="stretch")
        except LoupeError as e:
            st.caption(f":material/broken_image: {core.md(str(e))}")
        except Exception as e:
            log_unexpected(f"thumbnail of {h.id}", e)
            st.caption(":material/broken_image: no picture")
        short = name if len(name) <= 28 else name[:26] + "…"
        st.markdown(f"**{core.md(short)}**", help=core.md(h.path))
        label = KIND_LABEL.get(h.kind, h.kind)
        st.caption(f"{label} · score {h.score:.3f}")
        if h.moments:
            moments = sorted(h.moments, key=lambda m: -m.score)
            cols = st.columns(len(moments), gap="small")
            for c, m in zip(cols, moments, strict=True):
                c.button(core.clock(m.timestamp), key=f"m-{rank}-{m.id}", type="tertiary",
                         help=f"score {m.score:.3f}: show this moment",
                         on_click=_select, args=(m.id,))
        elif h.timestamp is not None:
            st.caption(f"at {core.clock(h.timestamp)}")
        if h.kind == ItemKind.AUDIO:
            try:
                with svc.lock:
                    path = thumbs.item_path(svc.store, h.id)
                if os.path.getsize(path) <= GRID_PLAY_LIMIT:
                    st.audio(path, format=core.media_type(path, "audio/wav"),
                             start_time=int(h.timestamp or 0),
                             end_time=math.ceil(h.end) if h.end else None)
            except (LoupeError, OSError):
                st.caption("sound not available (re-index to update)")
        st.button("Select", key=f"sel-{rank}-{h.id}", on_click=_select, args=(h.id,),
                  width="stretch")


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
        "(or record one) to find what looks or sounds like it.")


# -- page ------------------------------------------------------------------------------
def render(args: AppArgs) -> None:
    ss["_db"] = args.db
    svc = open_index(args.db, title="Loupe")
    if svc is None:
        return
    signature, query = query_panel(svc)
    ss["_query"] = {k: v for k, v in query.items() if k != "uploads"}
    if signature != ss.get("signature"):
        ss["signature"] = signature
        with st.spinner("Searching…"):
            run_search(svc, query)
    row = current_selection(svc)
    results_view(svc)
    if row is not None:
        open_selected(svc, args, row)
