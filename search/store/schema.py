"""The layouts of the store's core tables (the strings and types on disk)."""

from __future__ import annotations

import pyarrow as pa

from loupe.indexer.media.capture import CAPTURE_COLUMNS

FORMAT_VERSION = 2
ITEMS, FILES, SKIPPED = "items", "files", "skipped"
CORE_TABLES = (ITEMS, FILES, SKIPPED)


def items_schema(vector_columns: dict[str, int]) -> pa.Schema:
    """Schema of the items table for the given {vector column: dim}."""
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # an ItemKind: photo, frame, audio
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("timestamp", pa.float64()),  # seconds into a video/audio file; null for photos
        pa.field("indexed_at", pa.float64()),  # unix time
    ] + ITEM_EXTRA_FIELDS + CAPTURE_FIELDS
    for col, dim in vector_columns.items():
        fields.append(pa.field(col, pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


# Columns added in format 2 (a format-1 index gets them, null, when first opened).
ITEM_EXTRA_FIELDS = [
    pa.field("end", pa.float64()),  # audio windows: end of the real audio (s)
    pa.field("shot", pa.int32()),  # video frames: shot number, 0-based
    pa.field("silent", pa.bool_()),  # audio windows: below the silence threshold
]
# What the camera knew (loupe.indexer.media.capture: when, where, with what), per item
# (a video's frames and sound windows all carry their file's), all nullable. Additive
# within format 2: an index made before has none of them until its next indexing run
# adds them and reads them (metadata only, see Store.write_captures); readers take a
# missing column as null.
CAPTURE_FIELDS = [pa.field(name, typ) for name, typ in CAPTURE_COLUMNS]
CAPTURE_NAMES = [f.name for f in CAPTURE_FIELDS]
ITEM_META_COLUMNS = ["id", "path", "kind", "size", "mtime_ns", "fingerprint", "width",
                     "height", "timestamp", "indexed_at"] + [
                         f.name for f in ITEM_EXTRA_FIELDS] + CAPTURE_NAMES

FILES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("media", pa.string()),  # a MediaKind: image, video, audio
        pa.field("rows", pa.int64()),  # items written for it
        pa.field("duration", pa.float64()),  # seconds, for video/audio
        pa.field("problem", pa.string()),  # indexed, but not all of it (a damaged tail...)
        pa.field("indexed_at", pa.float64()),
        pa.field("sound", pa.bool_()),  # its sound was looked at (an audio model was on)
        # How a camera raw was decoded ("raw preview 1616x1080", "raw half-size demosaic");
        # null otherwise. Added to an older files table by its first write since.
        pa.field("decoded_from", pa.string()),
        # Its capture (CAPTURE_FIELDS) was read into its rows; null: indexed before Loupe
        # read captures, so the next run reads it (metadata only, no re-embedding).
        pa.field("captured", pa.bool_()),
    ]
)

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("kind", pa.string()),  # what the content looked like, if anything
        pa.field("code", pa.string()),  # a SkipCode
        pa.field("reason", pa.string()),
        pa.field("at", pa.float64()),
    ]
)
