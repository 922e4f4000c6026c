"""Stages 4-5 of indexing: the diff with the store, then decode -> embed -> write ->
refresh (``index_paths``), on this machine or on Ray."""

from loupe.indexer.pipeline.encoders import encoders_for_run
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.run import index_paths
from loupe.indexer.pipeline.watch import (
    BatchSummary,
    RootState,
    Watcher,
    WatchState,
    start_watch,
    watch_roots,
)

__all__ = ["BatchSummary", "IndexOptions", "IndexReport", "RootState", "WatchState",
           "Watcher", "encoders_for_run", "index_paths", "start_watch", "watch_roots"]
