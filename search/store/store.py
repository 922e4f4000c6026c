"""LanceDB, the store of record: one row per item, skipped files, and the index's meta.

Layout of a Loupe database directory::

    DB/items.lance      one row per item: photo, video frame, audio window
    DB/files.lance      one row per indexed file, written once all its items are
                        committed (a file without one is re-done by the next run)
    DB/skipped.lance    files that were looked at and not indexed, with the reason
    DB/meta.json        format version and the encoder(s) that built the vectors
    DB/faiss/           FAISS indexes derived from items (rebuildable at any time)

Every write is one LanceDB commit (atomic): a killed run leaves the last committed
version, and rows are keyed by a stable id so a re-run never duplicates them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import lancedb
import numpy as np
import pyarrow as pa

from loupe.indexer.encoders.spec import EncoderSpec
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, MediaKind

FORMAT_VERSION = 2
ITEMS, FILES, SKIPPED, GROUNDINGS = "items", "files", "skipped", "groundings"
TAGS, REFERENCES = "tags", "references"

# Item kinds.

# Skip codes; "unsupported" entries are retried once Loupe learns the kind.


def item_id(path: str, kind: str = ItemKind.PHOTO, timestamp: float | None = None) -> str:
    """Stable id of an item: the same file (and moment) always gets the same id."""
    key = f"{kind}\0{path}" if timestamp is None else f"{kind}\0{path}\0{timestamp:.6f}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()


# Items from which ids get a scalar index (below it a scan of the ids is quick enough).
ID_INDEX_MIN_ROWS = 100_000


def sql_str(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    return "'" + value.replace("'", "''") + "'"


def default_db_dir() -> str:
    """$LOUPE_DB, else the per-user data directory."""
    env = os.environ.get("LOUPE_DB")
    if env:
        return env
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("loupe", appauthor=False), "db")


def items_schema(vector_columns: dict[str, int]) -> pa.Schema:
    """Schema of the items table for the given {vector column: dim}."""
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "photo", "frame" or "audio"
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("timestamp", pa.float64()),  # seconds into a video/audio file; null for photos
        pa.field("indexed_at", pa.float64()),  # unix time
    ] + ITEM_EXTRA_FIELDS
    for col, dim in vector_columns.items():
        fields.append(pa.field(col, pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


# Columns added in format 2 (a format-1 index gets them, null, when first opened).
ITEM_EXTRA_FIELDS = [
    pa.field("end", pa.float64()),  # audio windows: end of the real audio (s)
    pa.field("shot", pa.int32()),  # video frames: shot number, 0-based
    pa.field("silent", pa.bool_()),  # audio windows: below the silence threshold
]
ITEM_META_COLUMNS = ["id", "path", "kind", "size", "mtime_ns", "fingerprint", "width",
                     "height", "timestamp", "indexed_at"] + [f.name for f in ITEM_EXTRA_FIELDS]

FILES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("media", pa.string()),  # "image", "video" or "audio"
        pa.field("rows", pa.int64()),  # items written for it
        pa.field("duration", pa.float64()),  # seconds, for video/audio
        pa.field("problem", pa.string()),  # indexed, but not all of it (a damaged tail...)
        pa.field("indexed_at", pa.float64()),
        pa.field("sound", pa.bool_()),  # its sound was looked at (an audio model was on)
    ]
)

# Cached Kosmos-2 answers: one row per (content, prompt, model, generation settings).
GROUNDINGS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # hash of everything below but result
        pa.field("content", pa.string()),  # fingerprint of the file [@ video timestamp]
        pa.field("prompt", pa.string()),
        pa.field("model", pa.string()),  # model id @ weights id
        pa.field("result", pa.string()),  # the Grounding as JSON
        pa.field("created", pa.float64()),
    ]
)

# Zero-shot tags of photos and frames (search/tags.py): an item's top labels.
TAGS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the item
        pa.field("key", pa.string()),  # model column : vocabulary hash : top : min share
        pa.field("labels", pa.list_(pa.string())),
        pa.field("shares", pa.list_(pa.float32())),  # percent, same order as labels
        pa.field("tagged_at", pa.float64()),
    ]
)

# Reference works for style attribution (search/attribution.py): one row per work and
# model column.
REFERENCES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # hash of collection, path, column
        pa.field("collection", pa.string()),  # the artist or style it stands for
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("column", pa.string()),
        pa.field("vector", pa.list_(pa.float32())),
        pa.field("added_at", pa.float64()),
    ]
)

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("kind", pa.string()),  # what the content looked like, if anything
        pa.field("code", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("at", pa.float64()),
    ]
)


@dataclass(frozen=True)
class FileState:
    """What the store knows about one file."""

    size: int
    mtime_ns: int
    fingerprint: str | None = None
    code: str | None = None  # for skipped files
    kind: str | None = None


def _chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class Store:
    """A Loupe database directory (see module docstring)."""

    def __init__(self, db_dir: str, create: bool = False, tables_uri: str | None = None):
        """Open (``create``: or make) the index at ``db_dir``. ``tables_uri``: where a new
        index keeps its LanceDB tables (the store of record), e.g. ``s3://bucket/loupe``;
        by default the folder itself. The folder always holds the small local state:
        ``meta.json``, the FAISS files, caches."""
        self.dir = os.path.abspath(db_dir)
        self.meta_path = os.path.join(self.dir, "meta.json")
        if not os.path.exists(self.meta_path):
            if not create:
                raise LoupeError(
                    f"no Loupe index at {self.dir}: run `loupe index PATH` first "
                    "(or pass --db / set LOUPE_DB)"
                )
            os.makedirs(self.dir, exist_ok=True)
            meta = {"format": FORMAT_VERSION, "encoders": {}, "encoder_order": [],
                    "incomplete_columns": [], "created": time.time()}
            if tables_uri:
                meta["tables_uri"] = tables_uri
            self._write_meta(meta)
        self.meta = self._read_meta()
        recorded = self.meta.get("tables_uri")
        if tables_uri and tables_uri != recorded:
            raise LoupeError(f"the index at {self.dir} keeps its tables at "
                             f"{recorded or self.dir}, not {tables_uri}")
        self.tables_uri = recorded or self.dir
        # Every read sees the latest commit, also another process's (a UI open while
        # `loupe index` or `loupe ground` writes); pinned reads use checkout(version).
        # Object stores take their credentials from the environment (AWS_*, GOOGLE_*,
        # AZURE_*), as LanceDB does.
        self.db = lancedb.connect(self.tables_uri, read_consistency_interval=timedelta(0))
        self._items = None
        self._files = None
        self._skipped = None
        self._groundings = None
        self._tags = None
        self._references = None
        if self.meta.get("format") == 1:
            self._migrate_from_1()
        if self.meta.get("format") != FORMAT_VERSION:
            raise LoupeError(
                f"{self.dir} has index format {self.meta.get('format')}, this Loupe reads "
                f"format {FORMAT_VERSION}"
            )

    def _migrate_from_1(self) -> None:
        """Format 1 (photos only) -> 2: new item columns, and the files table."""
        t = self.items(create=False)
        if t is not None:
            have = set(t.schema.names)
            new = [f for f in ITEM_EXTRA_FIELDS if f.name not in have]
            if new:
                t.add_columns(new)
            if FILES not in self._table_names():
                a = self._scan(t, ["path", "size", "mtime_ns", "fingerprint", "indexed_at"])
                rows = [dict(r, media=MediaKind.IMAGE, rows=1, duration=None, problem=None, sound=False)
                        for r in a.to_pylist()]
                self.db.create_table(FILES, data=pa.Table.from_pylist(rows, FILES_SCHEMA))
        self.meta["format"] = FORMAT_VERSION
        self.meta.setdefault("encoder_order", list(self.meta.get("encoders", {})))
        self._write_meta(self.meta)

    # -- meta ------------------------------------------------------------------------
    def _read_meta(self) -> dict:
        try:
            with open(self.meta_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise LoupeError(f"cannot read {self.meta_path}: {e}") from e

    def _write_meta(self, meta: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".meta-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)  # atomic: readers see the old or the new file

    def update_meta(self, **fields) -> None:
        """Set top-level meta fields (atomically)."""
        self.meta.update(fields)
        self._write_meta(self.meta)

    @property
    def encoders(self) -> dict[str, EncoderSpec]:
        """{vector column: spec} of the encoders whose vectors this index holds, in the
        order they were added (the first is the default for queries)."""
        specs = self.meta.get("encoders", {})
        order = [c for c in self.meta.get("encoder_order", []) if c in specs]
        order += sorted(c for c in specs if c not in order)
        return {c: EncoderSpec.from_dict(specs[c]) for c in order}

    def register_encoder(self, spec: EncoderSpec) -> str:
        """Add ``spec``'s vector column to this index (once). Returns the column.

        An index holds one column per model; a spec whose column exists but whose
        preprocessing or dimension differs is refused.
        """
        known = self.encoders
        if spec.column in known:
            why = known[spec.column].mismatch(spec)
            if why is None:
                return spec.column
            raise LoupeError(f"this index's vectors were made by another encoder: {why}")
        t = self.items(create=False)
        if t is not None and spec.column not in t.schema.names:
            t.add_columns([pa.field(spec.column, pa.list_(pa.float32(), spec.dim))])
            if t.count_rows():  # rows without this model's vectors: backfilled by runs
                self.meta["incomplete_columns"] = self.incomplete_columns + [spec.column]
        self.meta.setdefault("encoders", {})[spec.column] = spec.to_dict()
        self.meta.setdefault("encoder_order", []).append(spec.column)
        self._write_meta(self.meta)
        return spec.column

    @property
    def incomplete_columns(self) -> list[str]:
        """Vector columns that may lack vectors of rows indexed before their model joined
        (an index that does not say: all of them)."""
        return list(self.meta.get("incomplete_columns", self.encoders))

    def mark_complete(self, column: str) -> None:
        """Record that every row that should have ``column``'s vector has it."""
        self.meta["incomplete_columns"] = [c for c in self.incomplete_columns if c != column]
        self._write_meta(self.meta)

    def encoder_for_query(self, spec: EncoderSpec | None = None,
                          modalities: Iterable[str] = ()) -> tuple[str, EncoderSpec]:
        """The (column, spec) to answer a query with.

        ``spec``: the encoder the caller asked for (refused if the index lacks it).
        Otherwise the first of the index's encoders that embeds every one of
        ``modalities`` ("text", "image", "audio").
        """
        known = self.encoders
        if not known:
            raise LoupeError(f"the index at {self.dir} has no vectors yet: run `loupe index`")
        need = set(modalities)
        if spec is not None:
            if spec.column in known and known[spec.column].mismatch(spec) is None:
                col = spec.column
            else:
                col, have = next(iter(known.items()))
                why = have.mismatch(spec) or "different encoder"
                names = "; ".join(s.describe() for s in known.values())
                raise LoupeError(
                    f"refusing the query: the index holds vectors of {names}, and the query "
                    f"encoder is {spec.describe()} ({why})"
                )
        else:
            able = [c for c, s in known.items() if need <= s.modalities]
            if not able:
                names = "; ".join(s.describe() for s in known.values())
                raise LoupeError(
                    f"no model of this index embeds {' and '.join(sorted(need))} ({names}): "
                    "index with an audio model too, e.g. `loupe index DIR --model "
                    "imagebind_huge`"
                )
            col = able[0]
        missing = need - known[col].modalities
        if missing:
            raise LoupeError(f"{known[col].describe()} cannot embed {', '.join(sorted(missing))}")
        return col, known[col]

    # -- tables ----------------------------------------------------------------------
    def _table_names(self) -> set[str]:
        return set(self.db.list_tables().tables)

    def _table(self, attr: str, name: str, schema, create: bool):
        """Open table ``name`` (kept in ``attr``), creating it with ``schema()`` if asked."""
        table = getattr(self, attr)
        if table is None:
            half_made = False
            if name in self._table_names():
                try:
                    table = self.db.open_table(name)
                except ValueError:  # a run killed while creating it: a folder, no version
                    half_made = True
            if table is None:
                if not create:
                    return None
                table = self.db.create_table(name, schema=schema(),
                                             mode="overwrite" if half_made else "create")
            setattr(self, attr, table)
        return table

    def items(self, create: bool = True):
        """The items table (created with the registered vector columns if missing)."""
        return self._table("_items", ITEMS, lambda: items_schema(
            {c: s.dim for c, s in self.encoders.items()}), create)

    def files(self, create: bool = True):
        """The indexed-files table."""
        return self._table("_files", FILES, lambda: FILES_SCHEMA, create)

    def skipped(self, create: bool = True):
        """The skipped-files table."""
        return self._table("_skipped", SKIPPED, lambda: SKIPPED_SCHEMA, create)

    def groundings(self, create: bool = True):
        """The grounding cache table."""
        return self._table("_groundings", GROUNDINGS, lambda: GROUNDINGS_SCHEMA, create)

    def tags(self, create: bool = True):
        """The zero-shot tags table."""
        return self._table("_tags", TAGS, lambda: TAGS_SCHEMA, create)

    def references(self, create: bool = True):
        """The reference works of style attribution."""
        return self._table("_references", REFERENCES, lambda: REFERENCES_SCHEMA, create)

    def version(self) -> int:
        """Current version of the items table (0 when there is none)."""
        t = self.items(create=False)
        if t is None:
            return 0
        t.checkout_latest()
        return t.version

    @staticmethod
    def _scan(table, columns: list[str], where: str | None = None) -> pa.Table:
        q = table.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(None).to_arrow()

    # -- reads -----------------------------------------------------------------------
    def _states(self, table, extra: str) -> dict[str, FileState]:
        """{path: state} from ``table``, with ``extra`` ("fingerprint" or "code") filled."""
        if table is None:
            return {}
        kind = "media" if extra == "fingerprint" else "kind"
        names = ["path", "size", "mtime_ns", kind, extra]
        a = self._scan(table, names)
        cols = [a[n].to_pylist() for n in names]
        return {p: FileState(s, m, kind=k, **{extra: x})
                for p, s, m, k, x in zip(*cols, strict=True)}

    def item_states(self) -> dict[str, FileState]:
        """{path: state} of the files whose items are all written (kind = media kind)."""
        return self._states(self.files(create=False), "fingerprint")

    def photo_states(self, exclude: Iterable[str] = ()) -> dict[str, FileState]:
        """{path: state} of photo rows whose file has no record: ``exclude`` gives the
        image files that have one. A photo's one row is the whole file, so it stands for
        the file even without its record (a run killed between the two commits)."""
        t = self.items(create=False)
        if t is None:
            return {}
        skip = set(exclude)
        if t.count_rows(f"kind = {sql_str(ItemKind.PHOTO)}") == len(skip):
            return {}  # every photo row has its file record (the usual case): no scan
        names = ["path", "size", "mtime_ns", "fingerprint"]
        a = self._scan(t, names, f"kind = {sql_str(ItemKind.PHOTO)}")
        cols = [a[n].to_pylist() for n in names]
        return {p: FileState(s, m, fp, kind=MediaKind.IMAGE) for p, s, m, fp in zip(*cols, strict=True)
                if p not in skip}

    def skipped_states(self) -> dict[str, FileState]:
        """{path: state} of the files that were skipped, with their code."""
        return self._states(self.skipped(create=False), "code")

    def paths_missing(self, column: str, kinds: Iterable[str]) -> set[str]:
        """Paths with rows of ``kinds`` that have no vector in ``column`` (a model added
        to the index after they were indexed)."""
        t = self.items(create=False)
        kinds = sorted(set(kinds))
        if t is None or not kinds:
            return set()
        where = (f"{column} IS NULL AND kind IN (" + ",".join(sql_str(k) for k in kinds) + ")")
        return set(self._scan(t, ["path"], where)["path"].to_pylist())

    def rows_by_fingerprint(self, fingerprints: Iterable[str], columns: Sequence[str],
                            version: int | None = None,
                            paths: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """{fingerprint: the rows of one file with that content}, vectors included, for
        reuse by a moved or copied file.

        ``version``: look in the items table as it was at that version (falls back to
        the latest when that version has been cleaned up). ``paths``: only these files
        may serve as the source (the ones known to be complete).
        """
        fps = sorted(set(fingerprints))
        t = self.items(create=False)
        out: dict[str, list[dict]] = {}
        if t is None or not fps:
            return out
        allowed = set(paths) if paths is not None else None
        pinned = False
        if version is not None:
            try:
                t.checkout(version)
                pinned = True
            except Exception:  # that version was cleaned up: the latest rows will do
                t.checkout_latest()
        try:
            cols = ITEM_META_COLUMNS + [c for c in columns if c not in ITEM_META_COLUMNS]
            cols = [c for c in cols if c in t.schema.names]
            source: dict[str, str] = {}
            for chunk in _chunks(fps, 500):
                where = "fingerprint IN (" + ",".join(sql_str(f) for f in chunk) + ")"
                for row in self._scan(t, cols, where).to_pylist():
                    if allowed is not None and row["path"] not in allowed:
                        continue
                    fp = row["fingerprint"]
                    if source.setdefault(fp, row["path"]) == row["path"]:
                        out.setdefault(fp, []).append(row)
        finally:
            if pinned:
                t.checkout_latest()
        return out

    def get_items(self, ids: Sequence[str], columns: list[str] | None = None) -> dict[str, dict]:
        """{id: row} for the given ids (vector columns left out unless asked for)."""
        t = self.items(create=False)
        if t is None or not ids:
            return {}
        cols = columns or ITEM_META_COLUMNS
        out = {}
        for chunk in _chunks(list(ids), 500):
            where = "id IN (" + ",".join(sql_str(i) for i in chunk) + ")"
            for row in self._scan(t, cols, where).to_pylist():
                out[row["id"]] = row
        return out

    def vectors_of(self, ids: Sequence[str], column: str) -> np.ndarray:
        """The ``column`` vectors of ``ids``, in that order, as an (n, d) float32 array;
        rows of ids the store no longer has (deleted since the caller looked) are NaN."""
        got = self.get_items(list(dict.fromkeys(ids)), ["id", column])
        dim = self.encoders[column].dim
        out = np.full((len(ids), dim), np.nan, np.float32)
        for row, i in enumerate(ids):
            vec = got.get(i, {}).get(column)
            if vec is not None:
                out[row] = vec
        return out

    def read_vectors(self, column: str) -> tuple[int, pa.Table]:
        """(version, table of id/path/kind/timestamp/end/vector) of the rows that have a
        vector in ``column``, from one consistent snapshot."""
        t = self.items(create=False)
        if t is None:
            return 0, pa.table({"id": pa.array([], pa.string())})
        t.checkout_latest()
        version = t.version
        t.checkout(version)  # pin: writers may commit while we read
        try:
            a = self._scan(t, ["id", "path", "kind", "timestamp", "end", "mtime_ns",
                               "indexed_at", column], f"{column} IS NOT NULL")
        finally:
            t.checkout_latest()
        return version, a

    def read_ids(self, column: str) -> tuple[int, pa.Table]:
        """(version, table of id / indexed_at) of the rows with a vector in ``column``,
        from one consistent snapshot: what an index needs to catch up with the store."""
        t = self.items(create=False)
        if t is None:
            return 0, pa.table({"id": pa.array([], pa.string()),
                                "indexed_at": pa.array([], pa.float64())})
        t.checkout_latest()
        version = t.version
        t.checkout(version)
        try:
            a = self._scan(t, ["id", "indexed_at"], f"{column} IS NOT NULL")
        finally:
            t.checkout_latest()
        return version, a

    def counts(self) -> dict[str, int]:
        """{kind: number of rows}."""
        t = self.items(create=False)
        if t is None:
            return {}
        kinds = self._scan(t, ["kind"])["kind"].to_pylist()
        out: dict[str, int] = {}
        for k in kinds:
            out[k] = out.get(k, 0) + 1
        return out

    def file_rows(self, where: str | None = None) -> list[dict]:
        """Records of indexed files (optionally filtered)."""
        t = self.files(create=False)
        if t is None:
            return []
        return self._scan(t, FILES_SCHEMA.names, where).to_pylist()

    def skipped_rows(self) -> list[dict]:
        """All skipped-file records."""
        t = self.skipped(create=False)
        if t is None:
            return []
        cols = ["path", "size", "mtime_ns", "kind", "code", "reason", "at"]
        return self._scan(t, cols).to_pylist()

    def cached_groundings(self, keys: Sequence[str]) -> dict[str, str]:
        """{key: result JSON} of the cached groundings among ``keys``."""
        t = self.groundings(create=False)
        out: dict[str, str] = {}
        if t is None or not keys:
            return out
        for chunk in _chunks(sorted(set(keys)), 500):
            where = "key IN (" + ",".join(sql_str(k) for k in chunk) + ")"
            for row in self._scan(t, ["key", "result"], where).to_pylist():
                out[row["key"]] = row["result"]
        return out

    def tag_keys(self) -> dict[str, str]:
        """{item id: key of the settings its tags were computed with}."""
        t = self.tags(create=False)
        if t is None:
            return {}
        a = self._scan(t, ["id", "key"])
        return dict(zip(a["id"].to_pylist(), a["key"].to_pylist(), strict=True))

    def tag_rows(self, where: str | None = None) -> pa.Table:
        """Stored tags (id, labels, shares), optionally filtered."""
        t = self.tags(create=False)
        if t is None:
            return TAGS_SCHEMA.empty_table().select(["id", "labels", "shares"])
        return self._scan(t, ["id", "labels", "shares"], where)

    def reference_rows(self, where: str | None = None,
                       columns: list[str] | None = None) -> pa.Table:
        """Reference works (optionally filtered), all columns unless ``columns``."""
        t = self.references(create=False)
        names = columns or REFERENCES_SCHEMA.names
        if t is None:
            return REFERENCES_SCHEMA.empty_table().select(names)
        return self._scan(t, names, where)

    # -- writes (each call is one atomic commit per table) ---------------------------
    @staticmethod
    def _upsert(table, key: str, rows: list[dict], schema: pa.Schema) -> None:
        """Insert or replace ``rows`` by ``key`` in one commit."""
        data = pa.Table.from_pylist(rows, schema=schema)
        table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(
            data)

    def cache_groundings(self, rows: list[dict]) -> None:
        """Insert or replace grounding cache rows by key, in one commit."""
        if rows:
            self._upsert(self.groundings(), "key", rows, GROUNDINGS_SCHEMA)

    def upsert_items(self, rows: list[dict]) -> None:
        """Insert or replace rows by id (one commit per set of vector columns present).

        A row without some vector column leaves that column as it is on an existing
        row (a model added later fills only its own column).
        """
        if not rows:
            return
        t = self.items()
        groups: dict[tuple[str, ...], list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(sorted(r)), []).append(r)
        for keys, group in groups.items():
            schema = pa.schema([t.schema.field(k) for k in t.schema.names if k in keys])
            self._upsert(t, "id", group, schema)

    def upsert_tags(self, rows: list[dict]) -> None:
        """Insert or replace items' tags by id, in one commit."""
        if rows:
            self._upsert(self.tags(), "id", rows, TAGS_SCHEMA)

    def delete_tags(self, ids: Iterable[str]) -> None:
        """Drop the tags of these items."""
        t = self.tags(create=False)
        for chunk in _chunks(sorted(set(ids)), 500):
            if t is not None:
                t.delete("id IN (" + ",".join(sql_str(i) for i in chunk) + ")")

    def delete_tags_table(self) -> None:
        """Drop every stored tag (tagging turned off)."""
        if TAGS in self._table_names():
            self.db.drop_table(TAGS)
        self._tags = None

    def upsert_references(self, rows: list[dict]) -> None:
        """Insert or replace reference works by key, in one commit."""
        if rows:
            self._upsert(self.references(), "key", rows, REFERENCES_SCHEMA)

    def delete_references(self, where: str) -> None:
        """Drop the reference works matching ``where``."""
        t = self.references(create=False)
        if t is not None:
            t.delete(where)

    def upsert_files(self, rows: list[dict]) -> None:
        """Insert or replace indexed-file records by path, in one commit."""
        if rows:
            self._upsert(self.files(), "path", rows, FILES_SCHEMA)

    def upsert_skipped(self, rows: list[dict]) -> None:
        """Insert or replace skipped-file records by path, in one commit."""
        if rows:
            self._upsert(self.skipped(), "path", rows, SKIPPED_SCHEMA)

    def delete_older_rows(self, paths: Iterable[str], before: float) -> None:
        """Delete rows of ``paths`` written before ``before`` (items a re-indexed file no
        longer has: a shorter video, other frame times)."""
        for chunk in _chunks(sorted(set(paths)), 500):
            where = ("path IN (" + ",".join(sql_str(p) for p in chunk) + ")"
                     f" AND indexed_at < {before!r}")
            if self.items(create=False) is not None:
                self.items().delete(where)

    def delete_paths(self, paths: Iterable[str], items: bool = True, skipped: bool = True) -> None:
        """Remove every row and skip record of these files (``items``: rows and the
        indexed-file record)."""
        paths = sorted(set(paths))
        for chunk in _chunks(paths, 500):
            where = "path IN (" + ",".join(sql_str(p) for p in chunk) + ")"
            if items:
                for t in (self.items(create=False), self.files(create=False)):
                    if t is not None:
                        t.delete(where)
            if skipped and self.skipped(create=False) is not None:
                self.skipped().delete(where)

    def optimize(self) -> None:
        """Compact small fragments, bring scalar indexes up to date (new rows), drop
        versions older than an hour, and index item ids once the table is large."""
        for t in (self.items(create=False), self.files(create=False),
                  self.skipped(create=False), self.groundings(create=False),
                  self.tags(create=False), self.references(create=False)):
            if t is not None:
                t.optimize(cleanup_older_than=timedelta(hours=1))
        self.index_ids()

    def index_ids(self, min_rows: int = ID_INDEX_MIN_ROWS) -> bool:
        """Build a BTREE index on the items' ``id`` once they number ``min_rows`` or more.

        Reads by id (``get_items``: an index refresh reading its new rows, a PQ index
        whose vector files are missing) otherwise scan the whole id column each time.
        :meth:`optimize` adds later rows to it. Returns True when it was built now.
        """
        t = self.items(create=False)
        if t is None or any(i.columns == ["id"] for i in t.list_indices()):
            return False
        if t.count_rows() < min_rows:
            return False
        from lancedb.index import BTree

        t.create_index("id", config=BTree())  # the first argument names the column here
        return True
