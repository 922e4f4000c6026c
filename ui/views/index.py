"""The index page: what the index holds (index_status), "index a folder", and what
watch mode is doing (ui/views/watch.py)."""

from __future__ import annotations

import os
import time

import streamlit as st

from loupe.indexer import ItemKind, LoupeError
from loupe.search.store import Store
from loupe.ui import format as fmt
from loupe.ui.core import AppArgs
from loupe.ui.resources import friendly, heavy_work, index_job, search_service
from loupe.ui.services import IndexJob, log_unexpected
from loupe.ui.summaries import PAGE_ROWS, IndexSummaries
from loupe.ui.views.watch import watch_section

ss = st.session_state
DUP_GROUPS = 20  # duplicate groups shown
DUP_PER_GROUP = 6  # members shown per group


def render(args: AppArgs) -> None:
    st.title("Index")
    status = summaries = None
    with friendly("reading the index status"):
        # Shared by the sessions, computed again when a table or the meta (the last run)
        # has changed: counts only; the file lists below are shown a page at a time.
        summaries = search_service(args.db).summaries
        status = summaries.status()
    if status is None or summaries is None:
        return
    st.caption(f"`{status['db']}` · store version {status['store_version']}")
    counts, files = status["counts"], status["files"]
    c = st.columns(4)
    c[0].metric("Photos", f"{counts.get(ItemKind.PHOTO, 0):,}")
    c[1].metric("Video moments", f"{counts.get('frame', 0):,}",
                help=f"from {files.get('video', 0):,} videos")
    c[2].metric("Sound windows", f"{counts.get('audio', 0):,}",
                help=f"from {files.get('audio', 0):,} sound files")
    c[3].metric("Skipped files", f"{status['skipped_count']:,}")

    indexing(args, status)
    watch_section(args)

    st.subheader("Models")
    if not status["encoders"]:
        st.info("No model yet: run `loupe index FOLDER` once; it chooses the model "
                "(and downloads its weights).", icon=":material/model_training:")
    rows = []
    for e in status["encoders"]:
        f = e["faiss"]
        rows.append({
            "model": f"{e['backend']} {e['model']}",
            "weights": e["weights"],
            "embeds": ", ".join(e["modalities"]),
            "dim": e["dim"],
            "weights licence": e.get("weights_license") or "see the model card",
            "search index": "missing (built on the next search)" if f is None else (
                f"{f['vectors']:,} vectors, " + ("fresh" if f["fresh"] else
                                                  "stale (rebuilt on the next search)")),
        })
        if e.get("weights_license") and "NC" in e["weights_license"]:
            st.warning(f"{e['model']}: {e['weights_license']}", icon=":material/gavel:")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")

    lr = status.get("last_run")
    if lr:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(lr["finished"]))
        st.caption(f"Last run {when}: {lr.get('embedded', 0):,} embedded, "
                   f"{lr.get('reused', 0):,} reused, {lr.get('removed', 0):,} removed, "
                   f"{lr.get('skipped', 0):,} skipped.")

    explain_status(status)
    duplicates_section(args)

    st.subheader(f"Skipped files ({status['skipped_count']:,})")
    if status["skipped_count"]:
        file_list(summaries, "skipped")
    else:
        st.caption("None: every media file could be read.")
    if status["partial_count"]:
        st.subheader(f"Indexed in part ({status['partial_count']:,})")
        file_list(summaries, "partial")
    if status["unsupported_count"]:
        with st.expander(f"Not indexed by this index's models "
                         f"({status['unsupported_count']:,})"):
            st.caption("Sound files need an audio model (`loupe index DIR --model "
                       "imagebind_huge --add`).")
            file_list(summaries, "unsupported")
    if status["not_media"]:
        st.caption(f"{status['not_media']:,} files that are not media were ignored.")


def file_list(summaries: IndexSummaries, which: str) -> None:
    """One of the status's file lists, a page of PAGE_ROWS at a time (a page number when
    there are more), and all of it as CSV (made only when the download is clicked)."""
    key = f"{which}_page"
    total = summaries.count(which)
    pages = max(1, -(-total // PAGE_ROWS))
    if ss.get(key, 1) > pages:  # the list is shorter since (a re-index)
        ss[key] = pages
    page = 1
    if pages > 1:
        left, right = st.columns([1, 3], vertical_alignment="bottom")
        page = int(left.number_input(f"Page (of {pages:,})", 1, pages, key=key))
        right.caption(f"Files {(page - 1) * PAGE_ROWS + 1:,}–{min(total, page * PAGE_ROWS):,}"
                      f" of {total:,}, by path")
    rows, _ = summaries.page(which, page - 1)
    st.dataframe([{"file" if k == "path" else k: fmt.shown_path(v) if k == "path" else v
                   for k, v in r.items()} for r in rows], hide_index=True, width="stretch")
    st.download_button(f"All {total:,} as CSV", lambda: summaries.csv(which),
                       file_name=f"loupe-{which}.csv", mime="text/csv", key=f"{which}_csv",
                       on_click="ignore", icon=":material/download:")


def explain_status(status: dict) -> None:
    """Index-time tags and reference collections (style attribution)."""
    t = status.get("tagging")
    cols = status.get("collections") or {}
    st.subheader("Tags and reference collections")
    if t:
        st.caption(f"{t['tagged_items']:,} pictures tagged from "
                   f"`{os.path.basename(t['vocabulary'])}` (their top {t['top']} labels with "
                   f"at least {t['min_share']:g}%); filter by tag on the Search page.")
    else:
        st.caption("Not tagged: `loupe index FOLDER --tags` tags every photo and frame "
                   "(then the Search page filters by tag).")
    if cols:
        st.dataframe([{"collection": name, "works": n} for name, n in cols.items()],
                     hide_index=True, width="content")
    else:
        st.caption("No reference collections: `loupe collection add \"Artist\" FOLDER` "
                   "registers works for style attribution.")


def duplicates_section(args: AppArgs) -> None:
    """Identical files and near duplicates (as `loupe duplicates`)."""
    from loupe.search import thumbs
    from loupe.search.explain import find_duplicates

    st.subheader("Duplicates")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    threshold = left.slider("Near-duplicate similarity (cosine)", 0.80, 0.999, 0.95,
                            step=0.005, key="dup_threshold",
                            help="Higher: only closer copies count.")
    if right.button("Find duplicates", key="find_dups", icon=":material/content_copy:",
                    width="stretch"):
        with (friendly("finding duplicates"), heavy_work().slot("finding duplicates"),
              st.spinner("Comparing every photo…")):
            store = Store(args.db)
            report = find_duplicates(store, threshold=float(threshold))
            ss["duplicates"] = report.as_dict()
    report = ss.get("duplicates")
    if not report:
        return
    st.caption(f"{report['compared']:,} photos compared at cosine ≥ {report['threshold']:g}: "
               f"{len(report['exact'])} sets of identical files, {len(report['near'])} groups "
               "of near duplicates (= marks identical files).")
    store = Store(args.db)
    for g in report["near"][:DUP_GROUPS]:
        exact = {m for ids in g["exact"] for m in ids}
        items = g["items"][:DUP_PER_GROUP]
        cols = st.columns(DUP_PER_GROUP)
        for col, m in zip(cols, items, strict=False):
            with col:
                try:
                    st.image(thumbs.thumbnail(store, m["id"]), width="stretch")
                except Exception as e:  # one unreadable file must not hide the group
                    log_unexpected(f"thumbnail of {m['id']}", e)
                mark = "= " if m["id"] in exact else ""
                st.caption(f"{mark}{m['similarity']:.3f} · "
                           f"{fmt.shown_path(os.path.basename(m['path']))}",
                           help=fmt.shown_path(m["path"]))
        if len(g["items"]) > DUP_PER_GROUP:
            st.caption(f"… and {len(g['items']) - DUP_PER_GROUP} more in this group")
    if len(report["near"]) > DUP_GROUPS:
        st.caption(f"The first {DUP_GROUPS} of {len(report['near'])} groups are shown; "
                   "`loupe duplicates --json` lists them all.")


def _start(job: IndexJob, db: str) -> None:
    ss["index_error"] = None
    try:
        job.start(db, ss.get("index_folder") or "")
    except LoupeError as e:
        ss["index_error"] = str(e)
    except Exception as e:
        log_unexpected("starting an indexing run", e)
        ss["index_error"] = f"Something went wrong: {type(e).__name__}"


def indexing(args: AppArgs, status: dict) -> None:
    st.subheader("Index a folder")
    job = index_job()
    if not args.allow_indexing:
        st.info("Indexing from the web page is off: this UI is served beyond this machine "
                "(`loupe ui --host ...`). Run `loupe index FOLDER` on the machine, or start "
                "the UI with --allow-indexing.", icon=":material/lock:")
        return
    if not status["encoders"]:
        st.info("Run `loupe index FOLDER` first: the first run chooses the model. Then "
                "folders can be added from here.", icon=":material/info:")
        return
    state = job.state()
    with st.form("index_form", border=False):
        st.text_input("Folder on this machine", key="index_folder",
                      placeholder="/home/me/Pictures/2024",
                      help="New and changed files are embedded with this index's models; "
                           "files gone from the folder leave the index.")
        st.form_submit_button("Index", key="index_go", icon=":material/library_add:",
                              disabled=state.running, on_click=_start, args=(job, args.db))
    if ss.get("index_error"):
        st.error(ss["index_error"], icon=":material/info:")
    progress(job)


def _progress_body(job: IndexJob) -> None:
    s = job.state()
    if s.running:
        frac = s.done / s.total if s.total else 0.0
        where = fmt.shown_path(s.folder or "")
        if not s.total:
            text = f"Looking at {where}…"
        elif s.done < s.total:
            text = f"Indexing {where}: {s.done:,} of {s.total:,} files"
        else:
            text = f"Indexed {s.total:,} files of {where}; writing the search index…"
        st.progress(min(1.0, frac), text=text)
        st.caption("Searching works meanwhile; new pictures appear as they are committed.")
        ss["_job_seen_running"] = True
        return
    if ss.get("_job_seen_running"):
        ss["_job_seen_running"] = False
        st.rerun()  # the whole page: counts have changed
    if s.error:
        st.error(s.error, icon=":material/info:")
    elif s.report:
        r = s.report
        st.success(f"Indexed {fmt.shown_path(s.folder or '')} in {r['seconds']:.1f} s: "
                   f"{r['photos']:,} photos, {r['videos']:,} videos, {r['audio_files']:,} "
                   f"sound files; {r['unchanged']:,} unchanged, {r['skipped']:,} skipped, "
                   f"{r['removed']:,} removed.", icon=":material/check_circle:")


def progress(job: IndexJob) -> None:
    """The run's progress, refreshed every second while it runs (a fragment)."""
    running = job.state().running
    with friendly("showing progress"):
        st.fragment(_progress_body, run_every=1.0 if running else None)(job)
