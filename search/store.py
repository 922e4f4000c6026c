"""LanceDB, the store of record: one row per item, skipped files, and the index's meta.

Layout of a Loupe database directory::

    DB/items.lance      one row per item (photo; later video frame, audio window)
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
import pyarrow as pa

from indexer.encoders.base import EncoderSpec
from indexer.errors import LoupeError

FORMAT_VERSION = 1
ITEMS, SKIPPED = "items", "skipped"

# Skip codes; "unsupported" entries are retried once Loupe learns the kind.
CODE_UNSUPPORTED = "unsupported"  # a media kind this version does not index yet
CODE_NOT_MEDIA = "not-media"  # content is not media (not shown as a problem)
CODE_BAD = "bad"  # unreadable, corrupt, truncated, refused...


def item_id(path: str, kind: str = "photo", timestamp: float | None = None) -> str:
    """Stable id of an item: the same file (and moment) always gets the same id."""
    key = f"{kind}\0{path}" if timestamp is None else f"{kind}\0{path}\0{timestamp:.6f}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()


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
        pa.field("kind", pa.string(), nullable=False),  # "photo" (video/audio later)
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("fingerprint", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("timestamp", pa.float64()),  # seconds into a video/audio file; null for photos
        pa.field("indexed_at", pa.float64()),  # unix time
    ]
    for col, dim in vector_columns.items():
        fields.append(pa.field(col, pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


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

    def __init__(self, db_dir: str, create: bool = False):
        self.dir = os.path.abspath(db_dir)
        self.meta_path = os.path.join(self.dir, "meta.json")
        if not os.path.exists(self.meta_path):
            if not create:
                raise LoupeError(
                    f"no Loupe index at {self.dir}: run `loupe index PATH` first "
                    "(or pass --db / set LOUPE_DB)"
                )
            os.makedirs(self.dir, exist_ok=True)
            self._write_meta({"format": FORMAT_VERSION, "encoders": {}, "created": time.time()})
        self.meta = self._read_meta()
        if self.meta.get("format") != FORMAT_VERSION:
            raise LoupeError(
                f"{self.dir} has index format {self.meta.get('format')}, this Loupe reads "
                f"format {FORMAT_VERSION}"
            )
        self.db = lancedb.connect(self.dir)
        self._items = None
        self._skipped = None

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
        """{vector column: spec} of the encoders whose vectors this index holds."""
        return {c: EncoderSpec.from_dict(d) for c, d in self.meta.get("encoders", {}).items()}

    def register_encoder(self, spec: EncoderSpec) -> str:
        """Record ``spec`` as this index's encoder; refuse a different one. Returns its column."""
        known = self.encoders
        if spec.column in known:
            why = known[spec.column].mismatch(spec)
            if why is None:
                return spec.column
            raise LoupeError(f"this index's vectors were made by another encoder: {why}")
        if known:
            have = "; ".join(s.describe() for s in known.values())
            raise LoupeError(
                f"this index was built with {have}; it cannot mix in {spec.describe()}. "
                "Index with the same --model/--pretrained, or use another --db"
            )
        self.meta.setdefault("encoders", {})[spec.column] = spec.to_dict()
        self._write_meta(self.meta)
        return spec.column

    def encoder_for_query(self, spec: EncoderSpec | None = None) -> tuple[str, EncoderSpec]:
        """The (column, spec) for a query; refuses a ``spec`` the index was not built with."""
        known = self.encoders
        if not known:
            raise LoupeError(f"the index at {self.dir} has no vectors yet: run `loupe index`")
        if spec is None:
            col = next(iter(known))
            return col, known[col]
        if spec.column in known and known[spec.column].mismatch(spec) is None:
            return spec.column, known[spec.column]
        col, have = next(iter(known.items()))
        why = have.mismatch(spec) or "different encoder"
        raise LoupeError(
            f"refusing the query: the index was built with {have.describe()} and the query "
            f"encoder is {spec.describe()} ({why})"
        )

    # -- tables ----------------------------------------------------------------------
    def _table_names(self) -> set[str]:
        return set(self.db.list_tables().tables)

    def items(self, create: bool = True):
        """The items table (created with the registered vector columns if missing)."""
        if self._items is None:
            if ITEMS in self._table_names():
                self._items = self.db.open_table(ITEMS)
            elif create:
                cols = {c: s.dim for c, s in self.encoders.items()}
                self._items = self.db.create_table(ITEMS, schema=items_schema(cols))
            else:
                return None
        return self._items

    def skipped(self, create: bool = True):
        """The skipped-files table."""
        if self._skipped is None:
            if SKIPPED in self._table_names():
                self._skipped = self.db.open_table(SKIPPED)
            elif create:
                self._skipped = self.db.create_table(SKIPPED, schema=SKIPPED_SCHEMA)
            else:
                return None
        return self._skipped

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
        names = ["path", "size", "mtime_ns", "kind", extra]
        a = self._scan(table, names)
        cols = [a[n].to_pylist() for n in names]
        return {p: FileState(s, m, kind=k, **{extra: x})
                for p, s, m, k, x in zip(*cols, strict=True)}

    def item_states(self) -> dict[str, FileState]:
        """{path: state} of the files that have rows (photos)."""
        return self._states(self.items(create=False), "fingerprint")

    def skipped_states(self) -> dict[str, FileState]:
        """{path: state} of the files that were skipped, with their code."""
        return self._states(self.skipped(create=False), "code")

    def rows_by_fingerprint(self, fingerprints: Iterable[str], column: str,
                            version: int | None = None) -> dict[str, dict]:
        """{fingerprint: a row with that content} (with its vector), for vector reuse.

        ``version``: look in the items table as it was at that version (falls back to
        the latest when that version has been cleaned up).
        """
        fps = sorted(set(fingerprints))
        t = self.items(create=False)
        out: dict[str, dict] = {}
        if t is None or not fps:
            return out
        pinned = False
        if version is not None:
            try:
                t.checkout(version)
                pinned = True
            except Exception:  # that version was cleaned up: the latest rows will do
                t.checkout_latest()
        try:
            for chunk in _chunks(fps, 500):
                where = "fingerprint IN (" + ",".join(sql_str(f) for f in chunk) + ")"
                a = self._scan(t, ["fingerprint", "width", "height", column], where)
                for row in a.to_pylist():
                    if row[column] is not None:
                        out.setdefault(row["fingerprint"], row)
        finally:
            if pinned:
                t.checkout_latest()
        return out

    def get_items(self, ids: Sequence[str], columns: list[str] | None = None) -> dict[str, dict]:
        """{id: row} for the given ids (vector columns left out unless asked for)."""
        t = self.items(create=False)
        if t is None or not ids:
            return {}
        cols = columns or ["id", "path", "kind", "size", "mtime_ns", "fingerprint",
                           "width", "height", "timestamp", "indexed_at"]
        out = {}
        for chunk in _chunks(list(ids), 500):
            where = "id IN (" + ",".join(sql_str(i) for i in chunk) + ")"
            for row in self._scan(t, cols, where).to_pylist():
                out[row["id"]] = row
        return out

    def read_vectors(self, column: str) -> tuple[int, pa.Table]:
        """(version, table of id/path/kind/timestamp/vector) from one consistent snapshot."""
        t = self.items(create=False)
        if t is None:
            return 0, pa.table({"id": pa.array([], pa.string())})
        t.checkout_latest()
        version = t.version
        t.checkout(version)  # pin: writers may commit while we read
        try:
            a = self._scan(t, ["id", "path", "kind", "timestamp", column])
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

    def skipped_rows(self) -> list[dict]:
        """All skipped-file records."""
        t = self.skipped(create=False)
        if t is None:
            return []
        cols = ["path", "size", "mtime_ns", "kind", "code", "reason", "at"]
        return self._scan(t, cols).to_pylist()

    # -- writes (each call is one atomic commit per table) ---------------------------
    def upsert_items(self, rows: list[dict]) -> None:
        """Insert or replace rows by id, in one commit."""
        if not rows:
            return
        t = self.items()
        data = pa.Table.from_pylist(rows, schema=t.schema)
        t.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def upsert_skipped(self, rows: list[dict]) -> None:
        """Insert or replace skipped-file records by path, in one commit."""
        if not rows:
            return
        t = self.skipped()
        data = pa.Table.from_pylist(rows, schema=SKIPPED_SCHEMA)
        t.merge_insert("path").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def delete_paths(self, paths: Iterable[str], items: bool = True, skipped: bool = True) -> None:
        """Remove every row and skip record of these files."""
        paths = sorted(set(paths))
        for chunk in _chunks(paths, 500):
            where = "path IN (" + ",".join(sql_str(p) for p in chunk) + ")"
            if items and self.items(create=False) is not None:
                self.items().delete(where)
            if skipped and self.skipped(create=False) is not None:
                self.skipped().delete(where)

    def optimize(self) -> None:
        """Compact small fragments and drop versions older than an hour."""
        for t in (self.items(create=False), self.skipped(create=False)):
            if t is not None:
                t.optimize(cleanup_older_than=timedelta(hours=1))
