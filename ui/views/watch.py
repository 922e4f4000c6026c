"""The Index page's "Watching" section: what watch mode (``loupe ui --watch``) is doing,
refreshed every few seconds while it watches."""

from __future__ import annotations

import streamlit as st

from loupe.ui import format as fmt
from loupe.ui import watching
from loupe.ui.core import AppArgs
from loupe.ui.resources import friendly

REFRESH_S = 2.0


def watch_section(args: AppArgs) -> None:
    """Watched folders, how, what waits, the last batch and the last error."""
    if not args.watch:
        return
    st.subheader("Watching")
    w = watching.ensure_watching(args)  # started by the server; here if it was not
    if w is None:
        st.error(f"Watch mode could not start: {watching.start_error(args.db)}",
                 icon=":material/visibility_off:")
        return
    with friendly("showing watch mode"):
        st.fragment(_body, run_every=REFRESH_S)(args.db)


def _body(db: str) -> None:
    w = watching.watcher(db)
    if w is None:
        return
    words = watching.describe(w.state())
    for line in words["roots"]:
        st.caption(fmt.shown_path(line))
    st.markdown(words["activity"])
    if words["pending"]:
        with st.expander("Waiting to settle"):
            st.dataframe([{"file": fmt.shown_path(p)} for p in words["pending"]],
                         hide_index=True, width="stretch")
    if words["last"]:
        st.caption(words["last"])
    if words["error"]:
        st.error(words["error"], icon=":material/error:")
