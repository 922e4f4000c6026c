"""The index page: what the index holds (index_status) and "index a folder"."""

from __future__ import annotations

import os
import time

import streamlit as st

from loupe.indexer import ItemKind, LoupeError
from loupe.search import index_status
from loupe.search.store import Store
from loupe.ui import format as fmt
from loupe.ui.core import AppArgs
from loupe.ui.resources import friendly, index_job
from loupe.ui.services import IndexJob, log_unexpected

ss = st.session_state
DUP_GROUPS = 20  # duplicate groups shown
DUP_PER_GROUP = 6  # members shown per group


def render(args: AppArgs) -> None:
    st.title("Index")
    status = None
    with friendly("reading the index status"):
        status = index_status(Store(args.db))  # a fresh Store: meta (last run) up to date
    if status is None:
        return
    ss["index_status"] = status
    st.caption(f"`{status['db']}` · store version {status['store_version']}")
    counts, files = status["counts"], status["files"]
    c = st.columns(4)
    c[0].metric("Photos", f"{counts.get(ItemKind.PHOTO, 0):,}")
    c[1].metric("Video moments", f"{counts.get('frame', 0):,}",
                help=f"from {files.get('video', 0):,} videos")
    c[2].metric("Sound windows", f"{counts.get('audio', 0):,}",
                help=f"from {files.get('audio', 0):,} sound files")
    c[3].metric("Skipped files", f"{len(status['skipped']):,}")

    indexing(args, status)

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

    st.subheader(f"Skipped files ({len(status['skipped'])})")
    if status["skipped"]:
        st.dataframe([{"file": fmt.shown_path(s["path"]), "reason": s["reason"]}
                      for s in status["skipped"]], hide_index=True, width="stretch")
    else:
        st.caption("None: every media file could be read.")
    if status["partial"]:
        st.subheader(f"Indexed in part ({len(status['partial'])})")
        st.dataframe([{"file": fmt.shown_path(p["path"]), "problem": p["problem"]}
                      for p in status["partial"]], hide_index=True, width="stretch")
    if status["unsupported"]:
        with st.expander(f"Not indexed by this index's models ({len(status['unsupported'])})"):
            st.caption("Sound files need an audio model (`loupe index DIR --model "
                       "imagebind_huge --add`).")
            st.dataframe([{"file": fmt.shown_path(u["path"]), "kind": u["kind"],
                           "reason": u["reason"]} for u in status["unsupported"]],
                         hide_index=True, width="stretch")
    if status["not_media"]:
        st.caption(f"{status['not_media']:,} files that are not media were ignored.")


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
        with friendly("finding duplicates"), st.spinner("Comparing every photo…"):
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
