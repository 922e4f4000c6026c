"""Loupe's search side: the store of record (LanceDB), the FAISS indexes, queries and the
searcher, the explain features (``loupe.search.explain``) and the CLI
(``loupe.search.cli``). The public names below are loaded on first use.
"""

from loupe.indexer.lazy import exports

_EXPORTS = {
    "Store": "loupe.search.store",
    "IndexMeta": "loupe.search.store",
    "FileState": "loupe.search.store",
    "default_db_dir": "loupe.search.dirs",
    "item_id": "loupe.search.store",
    "Searcher": "loupe.search.engine",
    "Hit": "loupe.search.engine",
    "Moment": "loupe.search.engine",
    "SearchResult": "loupe.search.engine",
    "EmbeddedQuery": "loupe.search.engine",
    "Term": "loupe.search.query_parse",  # (no numpy: `loupe search` parses before it
    "QueryLimits": "loupe.search.query_parse",  # knows whether a server answers)
    "parse_query": "loupe.search.query_parse",
    "query_vector": "loupe.search.query",
    "modalities": "loupe.search.query_parse",
    "IndexInfo": "loupe.search.ann",
    "CaptureFilter": "loupe.search.ann",
    "day_range": "loupe.search.ann",
    "wall_seconds": "loupe.search.ann",
    "VectorIndex": "loupe.search.ann",
    "build_index": "loupe.search.ann",
    "load_index": "loupe.search.ann",
    "index_status": "loupe.search.status",
    "indexed_folders": "loupe.search.status",
    "status_rows": "loupe.search.status",
    "thumbs": "loupe.search.thumbs",
    "client": "loupe.search.client",
    "open_item": "loupe.search.served",
    "ItemFile": "loupe.search.served",
    "FileChanged": "loupe.search.served",
    "FileGone": "loupe.search.served",
    "ServerInfo": "loupe.search.server_file",
    "announced": "loupe.search.server_file",
    "read_server": "loupe.search.server_file",
    "SERVER_FILE": "loupe.search.server_file",
    "merge_hits": "loupe.search.shards",
    "parse_shard": "loupe.search.shards",
    "shard_of": "loupe.search.shards",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
