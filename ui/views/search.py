"""The search page: query panel (sidebar), results grid, selected hit (a dialog)."""

from __future__ import annotations

import dataclasses

import streamlit as st

from loupe.ui.core import AppArgs
from loupe.ui.resources import open_index
from loupe.ui.views.search_panel import query_panel, run_search
from loupe.ui.views.search_results import results_view
from loupe.ui.views.search_selected import current_selection, open_selected

ss = st.session_state


def render(args: AppArgs) -> None:
    ss["_db"] = args.db
    svc = open_index(args.db, title="Loupe")
    if svc is None:
        return
    query = query_panel(svc, args.query_limits)
    ss["_query"] = dataclasses.replace(query, uploads=())  # for "more like this"
    if query != ss.get("signature"):
        ss["signature"] = query
        with st.spinner("Searching…"):
            run_search(svc, query, args.query_limits)
    row = current_selection(svc)
    results_view(svc)
    if row is not None:
        open_selected(svc, args, row)
