"""The store of record (LanceDB): items, files and skipped tables, and the index meta."""

from loupe.search.store.meta import IndexMeta
from loupe.search.store.schema import (
    CAPTURE_FIELDS,
    CAPTURE_NAMES,
    FORMAT_VERSION,
    ITEM_META_COLUMNS,
    items_schema,
)
from loupe.search.store.store import (
    ID_INDEX_MIN_ROWS,
    FileState,
    Store,
    default_db_dir,
    item_id,
)
from loupe.search.store.tables import count_by, read_columns, scan, sql_str, upsert, where_in

__all__ = [
    "CAPTURE_FIELDS",
    "CAPTURE_NAMES",
    "FORMAT_VERSION",
    "ID_INDEX_MIN_ROWS",
    "ITEM_META_COLUMNS",
    "FileState",
    "IndexMeta",
    "Store",
    "count_by",
    "default_db_dir",
    "item_id",
    "items_schema",
    "read_columns",
    "scan",
    "sql_str",
    "upsert",
    "where_in",
]
