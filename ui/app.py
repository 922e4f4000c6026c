"""Loupe's web UI: search the index by words, pictures and sounds, look at hits, ground
them with Kosmos-2, and see what the index holds.

Started by ``loupe ui`` as ``streamlit run <loupe.ui>/app.py -- --db DIR [--grounding-model M]``
(the installed package's file, found through importlib.resources).
Every action goes through the library the CLI uses (search/, indexer/); files are only
ever reached through loupe.search.thumbs by item id, so the app serves nothing but what the
index holds.
"""

from __future__ import annotations

import os

import streamlit as st

_HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    st.set_page_config(page_title="Loupe", page_icon=":material/center_focus_weak:",
                       layout="wide", initial_sidebar_state="expanded")
    pages = [
        st.Page(os.path.join(_HERE, "page_search.py"), title="Search",
                icon=":material/search:", url_path="search", default=True),
        st.Page(os.path.join(_HERE, "page_atlas.py"), title="Atlas",
                icon=":material/scatter_plot:", url_path="atlas"),
        st.Page(os.path.join(_HERE, "page_index.py"), title="Index",
                icon=":material/photo_library:", url_path="index"),
    ]
    st.navigation(pages, position="top").run()


# Streamlit runs this file as __main__. The indexing job's worker processes (spawn)
# re-import the main module as __mp_main__, and must not run the app.
if __name__ == "__main__":
    main()
