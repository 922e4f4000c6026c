"""The search page's query: the sidebar's widgets, the query they make, running it."""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import streamlit as st

from loupe.indexer import LoupeError, Modality
from loupe.search import CaptureFilter, QueryLimits, SearchResult, thumbs
from loupe.ui import core
from loupe.ui import format as fmt
from loupe.ui.core import Upload
from loupe.ui.resources import search_service
from loupe.ui.services import SearchService, log_unexpected

ss = st.session_state


@dataclass(frozen=True)
class SearchQuery:
    """What the sidebar asks for. Equal queries are the same search (the page runs a
    search only when the query changes): uploads compare by their file ids and
    weights, not by their bytes."""

    text: str = ""
    kind: str | None = None
    folder: str | None = None
    group: bool = True
    k: int = 20
    column: str | None = None
    since: float | None = None
    until: float | None = None
    dedupe: float | None = None
    tags: tuple[str, ...] = ()
    taken: tuple = ()  # first and last day taken, on the camera's clock (dates)
    or_modified: bool = False
    near: str = ""  # a town or "LAT,LON"
    within_km: float = 25.0
    camera: str = ""
    lens: str = ""
    sort: str = "relevance"
    upload_ids: tuple = ()  # (file id, name, size, weight) of each upload
    uploads: tuple[Upload, ...] = field(default=(), compare=False, hash=False)


def _upload(kind: str, uploaded, weight_key: str) -> Upload | None:
    if uploaded is None:
        return None
    w = st.number_input("weight", min_value=-5.0, max_value=5.0, value=1.0, step=0.5,
                        key=weight_key, help="2 counts twice as much; -1 subtracts it")
    return Upload(kind, uploaded.name, uploaded.getvalue(), float(w))


def query_panel(svc: SearchService, limits: QueryLimits | None = None) -> SearchQuery:
    """The sidebar's widgets (the query box and the uploads bounded by ``limits``);
    returns the query they ask for."""
    limits = limits or QueryLimits()
    sb = st.sidebar
    with sb:
        st.text_input(
            "Search", key="query", placeholder="a foggy forest  ·  dog + 2:beach - people",
            max_chars=limits.text_chars,
            help="Words, with the CLI's arithmetic: `+` and `-` between terms, `2:word` "
                 "for a weight, quotes to keep words together. `ocr:\"hotel lisboa\"` "
                 "keeps only pictures showing that text (an index read with "
                 "`loupe index --ocr`), ranked by the other terms.")
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
            st.caption(f"Only the first {limits.sound_seconds:g} s of a sound are used; "
                       f"pictures up to {limits.pixels / 1e6:g} megapixels.")
            for up, f in ((u, img), (v, snd), (r, rec)):
                if up is not None:
                    uploads.append(up)
                    ids.append((getattr(f, "file_id", None), up.name, len(up.data), up.weight))
        st.divider()
        kind_label = st.segmented_control(
            "Show", list(fmt.KIND_FILTERS), default="All", required=True, key="kind",
            help="Video: moments of videos (sampled frames). Sound: 2-second windows of "
                 "sound files and soundtracks.")
        folder = folder_filter(svc.folders())
        days = st.date_input("Dates (file modified)", value=(), key="dates",
                             format="YYYY-MM-DD",
                             help="Pick a first and a last day; empty: any date.")
        since, until = core.days_to_range(days)
        with st.expander("When, where, with what",
                         expanded=any(ss.get(k) for k in ("taken", "near", "camera", "lens"))):
            taken = st.date_input("Taken (the camera's date)", value=(), key="taken",
                                  format="YYYY-MM-DD",
                                  help="A first and a last day, on the camera's own clock.")
            or_modified = st.toggle("Or modified, when the camera said nothing",
                                    key="or_modified")
            near = st.text_input("Near", key="near", placeholder="Lisbon  ·  38.72,-9.14",
                                 help="A town (offline; any case, no accents needed), or "
                                      "a latitude,longitude.")
            within = st.number_input("Within (km)", min_value=0.1, max_value=20_000.0,
                                     value=25.0, step=5.0, key="within")
            camera = st.text_input("Camera", key="camera", placeholder="canon  ·  iphone 12")
            lens = st.text_input("Lens", key="lens", placeholder="50mm")
        sort = st.selectbox("Order", list(fmt.SORTS), key="sort",
                            help="By date taken: the hits scoring at least 80% of the best "
                                 "one, newest or oldest first; pictures without a date "
                                 "last.")
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
                if c == "auto" else fmt.model_label(encoders[c]))
            column = None if choice == "auto" else choice
        with st.expander("Display"):
            st.slider("Pictures per row", 3, 8, 5, key="per_row")
    return SearchQuery(
        text=ss.get("query") or "", kind=fmt.KIND_FILTERS.get(kind_label or "All"),
        folder=folder or None, group=not every, k=int(k), column=column, since=since,
        until=until, dedupe=core.DEDUPE if hide else None, tags=tuple(wanted),
        taken=tuple(taken or ()), or_modified=bool(or_modified), near=(near or "").strip(),
        within_km=float(within), camera=(camera or "").strip(), lens=(lens or "").strip(),
        sort=fmt.SORTS.get(sort or "", "relevance"),
        upload_ids=tuple(ids), uploads=tuple(uploads))


def capture_filter(query: SearchQuery) -> CaptureFilter | None:
    """The query's filters on what the camera knew (None: none); LoupeError on a town
    or a point it cannot read."""
    if not (query.taken or query.near or query.camera or query.lens):
        return None
    first = query.taken[0] if query.taken else None
    last = query.taken[-1] if query.taken else None
    try:
        return CaptureFilter.of(first, last, query.or_modified, query.near or None,
                                query.within_km, query.camera, query.lens)
    except ValueError as e:
        raise LoupeError(str(e)) from e


def folder_filter(folders: list[str]) -> str:
    """The folder filter: a "folder contains" box over every folder, and a list of the
    first matches to pick from (the picked one stays while other words are typed)."""
    st.text_input("Folder contains", key="folder_q", placeholder="part of a folder's path",
                  help="Words in the folder's path (any case); then pick it below.")
    text = ss.get("folder_q") or ""
    shown, total = core.match_folders(folders, text)
    more = total - len(shown)
    picked = ss.get("folder")
    i = bisect.bisect_left(folders, picked) if picked else 0
    if picked and picked not in shown and i < len(folders) and folders[i] == picked:
        shown = [picked, *shown]  # still a folder of the index
    folder = st.selectbox("Folder", ["", *shown], key="folder",
                          format_func=lambda f: "All folders" if not f else fmt.shown_path(f))
    if more:
        st.caption(f"and {more:,} more: type more of the name")
    elif text.strip() and not total:
        st.caption("No folder of the index has that in its path.")
    return folder or ""


def _keep(res, version: int, like: str | None, kind: str | None, group: bool) -> None:
    """Keep a search's answer in the session (for the grid, and for tests to read)."""
    ss["results"] = [core.hit_record(h) for h in res.hits]
    ss["results_info"] = {"seconds": res.seconds, "load_seconds": res.load_seconds,
                          "column": res.column, "like": like, "version": version,
                          "kind": kind, "group": group, "hidden": res.hidden}


def _answer(what: str, ask: Callable[[list], SearchResult],
            uploads: Sequence[Upload] = ()) -> SearchResult | None:
    """``ask(files)``'s answer, or None with the error kept for the page as one polite
    line (``files``: the temp files of ``uploads``, whose names the error then uses)."""
    ss["query_error"] = None
    files: list = []
    try:
        return ask(files)
    except LoupeError as e:
        msg = str(e)
        for term, up in zip(files, uploads, strict=False):
            msg = msg.replace(term.value, up.name)  # the upload's name, not the temp file
        ss["query_error"] = msg
    except Exception as e:
        log_unexpected(what, e)
        ss["query_error"] = f"Something went wrong: {type(e).__name__}"
    return None


def run_search(svc: SearchService, query: SearchQuery,
               limits: QueryLimits | None = None) -> None:
    """Search (when the query asks for something, within ``limits``) and keep the answer
    in the session. Uploads are decoded and embedded outside the search lock."""
    ss["results"], ss["results_info"] = [], None
    version = svc.version()

    def ask(files: list) -> SearchResult | None:
        terms = core.text_terms(query.text, limits)
        if not terms and not query.uploads:
            return None
        with core.upload_terms(query.uploads) as made:
            files.extend(made)
            return svc.query(terms + made, query.k, query.kind, query.folder, query.group,
                             query.column, query.since, query.until, query.dedupe,
                             query.tags, limits, capture_filter(query), query.sort)

    res = _answer("search", ask, query.uploads)
    if res is not None:
        _keep(res, version, None, query.kind, query.group)


def more_like(item_id: str) -> None:
    """Search for what looks like a stored item, with the current query's filters."""
    svc = search_service(ss["_db"])
    q: SearchQuery = ss.get("_query") or SearchQuery()
    version = svc.version()
    name: list[str] = []

    def ask(_files: list) -> SearchResult:
        with svc.lock:
            column = (ss.get("results_info") or {}).get("column")
            res = svc.searcher.more_like(item_id, q.k, q.kind, q.folder, q.group, column)
            name.append(os.path.basename(thumbs.item_row(svc.store, item_id)["path"]))
        return res

    res = _answer("more like this", ask)
    if res is not None:
        _keep(res, version, name[0], q.kind, q.group)


def back_to_query() -> None:
    """Run the sidebar's query again (leaving "more like this" results)."""
    ss["signature"] = None
