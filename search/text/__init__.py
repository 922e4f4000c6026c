"""Text shown in pictures, as an index: the store-of-record table of what was read
(:mod:`.table`), how text is compared (:mod:`.normalise`), the full-text index derived
from the table (:mod:`.index`, SQLite FTS5), and ``ocr:`` query terms (:mod:`.search`).
Loaded on first use."""

from loupe.indexer.lazy import exports

_EXPORTS = {
    "DEFAULT_MIN_SCORE": "loupe.search.text.table",
    "ocr_config": "loupe.search.text.table",
    "read_count": "loupe.search.text.table",
    "require_ocr": "loupe.search.text.table",
    "set_ocr": "loupe.search.text.table",
    "texts_of": "loupe.search.text.table",
    "TextIndex": "loupe.search.text.index",
    "TextMatch": "loupe.search.text.index",
    "TextFilter": "loupe.search.text.search",
    "text_filter": "loupe.search.text.search",
    "normalise": "loupe.search.text.normalise",
    "squash": "loupe.search.text.normalise",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
