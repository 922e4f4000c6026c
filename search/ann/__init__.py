"""Indexes over a vector column, derived from the store (rebuildable at any time): FAISS in
memory, or LanceDB's own index in the items table (search/ann/lance_index.py)."""

from loupe.search.ann.capture_filter import CaptureFilter, day_range, wall_seconds
from loupe.search.ann.catalog import CATALOG_CAPTURE, RowCatalog
from loupe.search.ann.index import IndexInfo, VectorIndex
from loupe.search.ann.lance_index import LanceVectorIndex
from loupe.search.ann.persist import build_index, load_index, saved_info
from loupe.search.ann.plan import IndexPlan, plan_index
from loupe.search.ann.refresh import refresh

__all__ = ["CATALOG_CAPTURE", "CaptureFilter", "IndexInfo", "IndexPlan", "LanceVectorIndex",
           "RowCatalog", "VectorIndex", "build_index", "day_range", "load_index", "plan_index",
           "refresh", "saved_info", "wall_seconds"]
