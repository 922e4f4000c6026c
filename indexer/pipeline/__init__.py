"""Stages 4-5 of indexing: the diff with the store, then decode -> embed -> write ->
refresh (``index_paths``), on this machine or on Ray."""

from loupe.indexer.pipeline.encoders import encoders_for_run
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.run import index_paths

__all__ = ["IndexOptions", "IndexReport", "encoders_for_run", "index_paths"]
