"""Loupe's web UI: search the index by words, pictures and sounds, look at hits, ground
them with Kosmos-2, and see what the index holds.

Served by server.py (``loupe ui`` runs ``streamlit run <loupe.ui>/server.py -- --db DIR``),
behind its gate; started directly (``streamlit run ui/app.py``) the page only says how to
start it, since nothing would then keep other sites and other users out.
Every action goes through the library the CLI uses (search/, indexer/); files are only
ever reached through loupe.search.thumbs by item id, so the app serves nothing but what the
index holds.
"""

from __future__ import annotations

import os
import sys

import streamlit as st

from loupe.ui.core import parse_args
from loupe.ui.launch import GATED_ENV

_HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    st.set_page_config(page_title="Loupe", page_icon=":material/center_focus_weak:",
                       layout="wide", initial_sidebar_state="expanded")
    if os.environ.get(GATED_ENV) != "1":
        st.error("Start Loupe's UI with `loupe ui --db DIR` (or `streamlit run` on its "
                 "server.py): served this way, nothing keeps other sites or other users "
                 "of this machine out.", icon=":material/lock:")
        st.stop()
    if parse_args(sys.argv[1:]).auth == "oidc":
        _signed_in_or_stop()
    pages = [
        st.Page(os.path.join(_HERE, "page_search.py"), title="Search",
                icon=":material/search:", url_path="search", default=True),
        st.Page(os.path.join(_HERE, "page_atlas.py"), title="Atlas",
                icon=":material/scatter_plot:", url_path="atlas"),
        st.Page(os.path.join(_HERE, "page_index.py"), title="Index",
                icon=":material/photo_library:", url_path="index"),
    ]
    st.navigation(pages, position="top").run()


def _signed_in_or_stop() -> None:
    """With --auth oidc: nothing but the sign-in until the identity provider says who
    this is (Streamlit's st.login); then a sign-out in the sidebar."""
    if not st.user.is_logged_in:
        st.title("Loupe")
        st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'you'}")
        st.button("Sign out", on_click=st.logout, type="tertiary")


# Streamlit runs this file as __main__. The indexing job's worker processes (spawn)
# re-import the main module as __mp_main__, and must not run the app.
if __name__ == "__main__":
    main()
