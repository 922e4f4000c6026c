"""FAISS indexes over a vector column, derived from the store (rebuildable at any time)."""

from loupe.search.ann.index import (
    IndexInfo,
    VectorIndex,
    build_index,
    load_index,
    refresh,
    saved_info,
)
from loupe.search.ann.plan import IndexPlan, plan_index

__all__ = ["IndexInfo", "IndexPlan", "VectorIndex", "build_index", "load_index", "plan_index",
           "refresh", "saved_info"]
