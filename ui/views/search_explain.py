"""Zero-shot tags and style attribution of the selected picture, as bar charts, with the
nearest reference works as evidence."""

from __future__ import annotations

import os

import streamlit as st

from loupe.indexer import LoupeError
from loupe.search import thumbs
from loupe.search.explain import BUILTIN, tagging_config
from loupe.ui import core
from loupe.ui import format as fmt
from loupe.ui.resources import friendly, heavy_work
from loupe.ui.services import SearchService

STYLE_VOCABS = ("artists", "art-movements")  # shown as style, not offered as tags

ss = st.session_state


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
    with heavy_work().slot("tagging"), svc.lock:
        tags, style = core.describe(svc.searcher, item_id, vocabulary)
    ss["explained"] = {"item": item_id, "vocabulary": vocabulary, "tags": tags.as_dict(),
                     "style": style.as_dict()}


def explain_panel(svc: SearchService, row: dict) -> None:
    """Zero-shot tags and style attribution of the selected picture: bar charts, and
    the nearest reference works as evidence."""
    item_id = row["id"]
    st.divider()
    head, pick, go = st.columns([3, 2, 2], vertical_alignment="bottom")
    head.markdown("**What is it, and whose style?** Zero-shot tags and style "
                  "attribution by the index's model.")
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
        st.markdown(f"**Tags** ({fmt.md(os.path.basename(tags['vocabulary']))})")
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
                    st.caption(f":material/broken_image: {fmt.md(str(err))}")
                st.caption(f"{fmt.md(e['collection'])} · {e['similarity']:.2f} · "
                           f"{e['weight']:.0f}%", help=fmt.md(e["path"]))
