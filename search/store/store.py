"""LanceDB, the store of record: one row per item, skipped files, and the index's meta.

Layout of a Loupe database directory::

    DB/items.lance      one row per item: photo, video frame, audio window
    DB/files.lance      one row per indexed file, written once all its items are
                        committed (a file without one is re-done by the next run)
    DB/skipped.lance    files that were looked at and not indexed, with the reason
    DB/meta.json        format version and the encoder(s) that built the vectors
    DB/faiss/           FAISS indexes derived from items (rebuildable at any time)
    index_meta.lance    only with --tables-uri, in the tables: a copy of meta.json, for
                        search replicas (search/store/meta.py)

Every write is one LanceDB commit (atomic): a killed run leaves the last committed
version, and rows are keyed by a stable id so a re-run never duplicates them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa

from loupe.indexer.encoders.spec import EncoderSpec
from loupe.indexer.errors import LoupeError
from loupe.indexer.kinds import ItemKind, MediaKind
from loupe.search.dirs import default_db_dir as default_db_dir  # re-exported: light home
from loupe.search.shards import shard_of
from loupe.search.store import remote
from loupe.search.store.lock import writer_lock
from loupe.search.store.meta import IndexMeta, SharedMeta
from loupe.search.store.schema import (
    CAPTURE_FIELDS,
    CAPTURE_NAMES,
    CORE_TABLES,
    FILES,
    FILES_SCHEMA,
    FORMAT_VERSION,
    ITEM_EXTRA_FIELDS,
    ITEM_META_COLUMNS,
    ITEMS,
    SKIPPED,
    SKIPPED_SCHEMA,
    items_schema,
)
from loupe.search.store.tables import (
    count_by,
    open_table,
    read_columns,
    scan,
    sql_str,
    upsert,
    where_in,
)


def _update_by_path(table, data: pa.Table) -> int:
    """Set ``data``'s columns (``path`` and some others) on every row of ``table`` with
    that path, in one commit; rows of other paths, and other columns, stay. Returns the
    rows updated."""
    try:
        ds = table.to_lance()
    except (ImportError, AttributeError, NotImplementedError):  # no pylance, remote table
        ds = None
    if ds is not None:
        # Lance's column patch: new data files for these columns only, beside the old.
        out = (ds.merge_insert("path").when_matched_update_all()
               .write_mode("rewrite_columns").execute(data))
        table.checkout_latest()
        return int(out["num_updated_rows"])
    out = table.merge_insert("path").when_matched_update_all().execute(data)
    return int(out.num_updated_rows)


def _shard_name(shard: tuple[int, int] | None) -> str:
    return "the whole index" if shard is None else f"shard {shard[0]}/{shard[1]}"


def item_id(path: str, kind: str = ItemKind.PHOTO, timestamp: float | None = None) -> str:
    """Stable id of an item: the same file (and moment) always gets the same id."""
    key = f"{kind}\0{path}" if timestamp is None else f"{kind}\0{path}\0{timestamp:.6f}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()


# Items from which ids get a scalar index (below it a scan of the ids is quick enough).
ID_INDEX_MIN_ROWS = 100_000


@dataclass(frozen=True)
class FileState:
    """What the store knows about one file."""

    size: int
    mtime_ns: int
    fingerprint: str | None = None
    code: str | None = None  # for skipped files
    kind: str | None = None


class Store:
    """A Loupe database directory (see module docstring): the core tables, and the
    feature tables (tags, references, groundings) opened for their features by name."""

    def __init__(self, db_dir: str, create: bool = False, tables_uri: str | None = None,
                 shard: tuple[int, int] | None = None):
        """Open (``create``: or make) the index at ``db_dir``. ``tables_uri``: where a new
        index keeps its LanceDB tables (the store of record), e.g. ``s3://bucket/loupe``;
        by default the folder itself. The folder always holds the small local state:
        ``meta.json``, the FAISS files, caches.

        An empty (or missing) ``db_dir`` with the ``tables_uri`` of an existing index, and
        not ``create``: ``db_dir`` becomes a search replica's folder of that index (its
        meta read from the tables, its FAISS files and caches its own; it never writes
        the index). Object storage's refusals (a wrong key) are one-line LoupeErrors.
        ``shard`` (I, N), for a new replica's folder: it serves only the files of shard I
        of N (:func:`loupe.search.shards.shard_of`); an existing folder keeps its own.
        """
        self.dir = os.path.abspath(db_dir)
        if not IndexMeta.exists(self.dir):
            if tables_uri and not create:
                if SharedMeta(remote.connect(tables_uri)).read() is None:
                    raise LoupeError(f"no Loupe index at {tables_uri} (its tables hold no "
                                     "index meta): index into it first, `loupe index DIR "
                                     "--db DIR --tables-uri URI`")
                IndexMeta.create_replica(self.dir, tables_uri, shard)
            elif not create:
                raise LoupeError(
                    f"no Loupe index at {self.dir}: run `loupe index PATH` first "
                    "(or pass --db / set LOUPE_DB)"
                )
            else:
                if tables_uri and remote.list_tables(remote.connect(tables_uri), tables_uri):
                    # Another index folder writes there: its writer lock would not cover us.
                    raise LoupeError(f"the tables at {tables_uri} already belong to an "
                                     "index; open that index's folder, give a new "
                                     "--tables-uri, or serve it as a replica (`loupe serve "
                                     "--db NEW_DIR --tables-uri URI`)")
                IndexMeta.create(self.dir, tables_uri)
        recorded = IndexMeta(self.dir).tables_uri
        if tables_uri and tables_uri != recorded:
            raise LoupeError(f"the index at {self.dir} keeps its tables at "
                             f"{recorded or self.dir}, not {tables_uri}")
        self.tables_uri = recorded or self.dir
        # Every read sees the latest commit, also another process's (a UI open while
        # `loupe index` or `loupe ground` writes); pinned reads use checkout(version).
        # Object stores take their credentials from the environment (AWS_*, GOOGLE_*,
        # AZURE_*), as LanceDB does (search/store/remote.py).
        self.db = remote.connect(self.tables_uri, read_consistency_interval=timedelta(0))
        # Tables elsewhere keep a copy of the meta (a replica reads its meta from there).
        self.meta = IndexMeta(self.dir, SharedMeta(self.db) if recorded else None)
        if shard is not None and self.meta.shard != tuple(shard):
            raise LoupeError(f"{self.dir} is not a replica of shard {shard[0]}/{shard[1]} "
                             f"(it serves {_shard_name(self.meta.shard)}): give each shard "
                             "a folder of its own")
        self._tables: dict[str, object] = {}
        self._rev, self._rev_stamp = 0, None  # capture_rev(), cached by meta.json's stat
        if self.meta.format == 1:
            self._migrate_from_1()
        if self.meta.format != FORMAT_VERSION:
            raise LoupeError(
                f"{self.dir} has index format {self.meta.format}, this Loupe reads "
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
            if FILES not in self.table_names():
                a = scan(t, ["path", "size", "mtime_ns", "fingerprint", "indexed_at"])
                rows = [dict(r, media=MediaKind.IMAGE, rows=1, duration=None, problem=None,
                             sound=False) for r in a.to_pylist()]
                self.db.create_table(FILES, data=pa.Table.from_pylist(rows, FILES_SCHEMA))
        self.meta.migrated_to(FORMAT_VERSION)

    @contextmanager
    def writing(self, command: str, wait: bool = True) -> Iterator[None]:
        """Hold this index's writer lock (see ``search/store/lock.py``) while the block
        runs, with ``meta.json`` read again once it is held (another writer may have
        changed it since this store was opened)."""
        if self.meta.replica:
            raise LoupeError(f"{self.dir} is a search replica of the index at "
                             f"{self.tables_uri}: `loupe {command}` writes the index, run it "
                             "on the indexer's folder")
        with writer_lock(self.dir, command, wait):
            self.meta.reload()
            yield

    def register_encoder(self, spec: EncoderSpec) -> str:
        """Add ``spec``'s vector column to this index (once). Returns the column.

        An index holds one column per model; a spec whose column exists but whose
        preprocessing or dimension differs is refused.
        """
        known = self.meta.encoders
        t = self.items(create=False)
        if spec.column in known:
            why = known[spec.column].mismatch(spec)
            if why is not None:
                raise LoupeError(f"this index's vectors were made by another encoder: {why}")
        else:
            # Recorded first, as incomplete whenever rows exist: a run killed between
            # the two steps leaves a column that the next run backfills, never one taken
            # as complete (a column in the table but not in meta is such a leftover).
            self.meta.add_encoder(spec, incomplete=t is not None and bool(t.count_rows()))
        if t is not None and spec.column not in t.schema.names:
            t.add_columns([pa.field(spec.column, pa.list_(pa.float32(), spec.dim))])
        return spec.column

    def add_capture_columns(self) -> bool:
        """Give an items table made before captures were read their columns (null for
        its rows: a metadata-only commit); a writer's step, under the writer lock (a
        reader never writes: it takes the missing columns as null). Returns True when
        columns were added."""
        t = self.items(create=False)
        if t is None:
            return False
        missing = [f for f in CAPTURE_FIELDS if f.name not in t.schema.names]
        if missing:
            t.add_columns(missing)
        return bool(missing)

    # -- tables ----------------------------------------------------------------------
    def table_names(self) -> set[str]:
        """The tables that exist."""
        return remote.list_tables(self.db, self.tables_uri)

    def table(self, name: str, schema, create: bool = True):
        """Table ``name`` (core or a feature's), made with ``schema()`` when missing and
        ``create``; None when missing and not ``create``. Kept open once opened."""
        table = self._tables.get(name)
        if table is None:
            table = open_table(self.db, name, schema, create)
            if table is not None:
                self._tables[name] = table
        return table

    def drop_table(self, name: str) -> None:
        """Delete table ``name`` and its rows, if it exists (a feature turned off)."""
        if name in self.table_names():
            self.db.drop_table(name)
        self._tables.pop(name, None)

    def items(self, create: bool = True):
        """The items table (created with the registered vector columns if missing)."""
        return self.table(ITEMS, lambda: items_schema(
            {c: s.dim for c, s in self.meta.encoders.items()}), create)

    def files(self, create: bool = True):
        """The indexed-files table."""
        return self.table(FILES, lambda: FILES_SCHEMA, create)

    def skipped(self, create: bool = True):
        """The skipped-files table."""
        return self.table(SKIPPED, lambda: SKIPPED_SCHEMA, create)

    def version(self) -> int:
        """Current version of the items table (0 when there is none)."""
        t = self.items(create=False)
        if t is None:
            return 0
        t.checkout_latest()
        return t.version

    # -- reads -----------------------------------------------------------------------
    def _states(self, table, extra: str) -> dict[str, FileState]:
        """{path: state} from ``table``, with ``extra`` ("fingerprint" or "code") filled."""
        if table is None:
            return {}
        kind = "media" if extra == "fingerprint" else "kind"
        names = ["path", "size", "mtime_ns", kind, extra]
        a = scan(table, names)
        cols = [a[n].to_pylist() for n in names]
        return {p: FileState(s, m, kind=k, **{extra: x})
                for p, s, m, k, x in zip(*cols, strict=True)}

    def item_states(self) -> dict[str, FileState]:
        """{path: state} of the files whose items are all written (kind = media kind)."""
        return self._states(self.files(create=False), "fingerprint")

    def uncaptured_files(self) -> set[str]:
        """Paths of the indexed files whose capture was never read (recorded before
        Loupe read captures: their ``captured`` is null or missing)."""
        t = self.files(create=False)
        if t is None:
            return set()
        where = "captured IS NULL OR NOT captured" if "captured" in t.schema.names else None
        return set(read_columns(t, ["path"], where)["path"].to_pylist())

    def photo_states(self, exclude: Iterable[str] = ()) -> dict[str, FileState]:
        """{path: state} of photo rows whose file has no record: ``exclude`` gives the
        image files that have one. A photo's one row is the whole file, so it stands for
        the file even without its record (a run killed between the two commits)."""
        t = self.items(create=False)
        if t is None:
            return {}
        skip = set(exclude)
        photos = f"kind = {sql_str(ItemKind.PHOTO)}"
        if t.count_rows(photos) == len(skip):
            return {}  # every photo row has its file record (the usual case): no scan
        names = ["path", "size", "mtime_ns", "fingerprint"]
        a = scan(t, names, photos)
        cols = [a[n].to_pylist() for n in names]
        return {p: FileState(s, m, fp, kind=MediaKind.IMAGE)
                for p, s, m, fp in zip(*cols, strict=True) if p not in skip}

    def holds_paths_under(self, folder: str) -> bool:
        """Whether any indexed or skipped file lies under ``folder`` (or is it)."""
        prefix = folder.rstrip(os.sep) + os.sep
        for t in (self.files(create=False), self.skipped(create=False)):
            if t is not None and t.count_rows(
                    f"path = {sql_str(folder)} OR starts_with(path, {sql_str(prefix)})"):
                return True
        return False

    def skipped_states(self) -> dict[str, FileState]:
        """{path: state} of the files that were skipped, with their code."""
        return self._states(self.skipped(create=False), "code")

    def paths_missing(self, column: str, kinds: Iterable[str]) -> set[str]:
        """Paths with rows of ``kinds`` that have no vector in ``column`` (a model added
        to the index after they were indexed)."""
        t = self.items(create=False)
        of_kinds = next(where_in("kind", kinds), None)
        if t is None or of_kinds is None:
            return set()
        return set(scan(t, ["path"], f"{column} IS NULL AND {of_kinds}")["path"].to_pylist())

    def rows_by_fingerprint(self, fingerprints: Iterable[str], columns: Sequence[str],
                            version: int | None = None,
                            paths: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """{fingerprint: the rows of one file with that content}, vectors included, for
        reuse by a moved or copied file.

        ``version``: look in the items table as it was at that version (falls back to
        the latest when that version has been cleaned up). ``paths``: only these files
        may serve as the source (the ones known to be complete).
        """
        t = self.items(create=False)
        out: dict[str, list[dict]] = {}
        fingerprints = set(fingerprints)
        if t is None or not fingerprints:
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
            for where in where_in("fingerprint", fingerprints):
                for row in scan(t, cols, where).to_pylist():
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
        have = [c for c in cols if c in t.schema.names]  # an older table: null for the rest
        out = {}
        for where in where_in("id", ids):
            for row in scan(t, have, where).to_pylist():
                out[row["id"]] = {c: row.get(c) for c in cols}
        return out

    def vectors_of(self, ids: Sequence[str], column: str) -> np.ndarray:
        """The ``column`` vectors of ``ids``, in that order, as an (n, d) float32 array;
        rows of ids the store no longer has (deleted since the caller looked) are NaN."""
        got = self.get_items(list(dict.fromkeys(ids)), ["id", column])
        dim = self.meta.encoders[column].dim
        out = np.full((len(ids), dim), np.nan, np.float32)
        for row, i in enumerate(ids):
            vec = got.get(i, {}).get(column)
            if vec is not None:
                out[row] = vec
        return out

    def _pinned_scan(self, column: str, names: list[str]) -> tuple[int, pa.Table]:
        """(version, ``names`` of the rows with a vector in ``column``) from one snapshot
        (of ``names``, those the table has)."""
        t = self.items(create=False)
        t.checkout_latest()
        version = t.version
        t.checkout(version)  # pin: writers may commit while we read
        shard = self.meta.shard
        try:
            have = [n for n in names if n in t.schema.names]
            if shard is not None and "path" not in have:
                have.append("path")
            rows = scan(t, have, f"{column} IS NOT NULL")
        finally:
            t.checkout_latest()
        if shard is not None:  # this replica's part: the files of its shard
            mine = [shard_of(p, shard[1]) == shard[0] for p in rows["path"].to_pylist()]
            rows = rows.filter(pa.array(mine, pa.bool_()))
            if "path" not in names:
                rows = rows.drop_columns(["path"])
        return version, rows

    def read_vectors(self, column: str) -> tuple[int, pa.Table]:
        """(version, table of id/path/kind/timestamp/end/mtime/capture/vector) of the rows
        that have a vector in ``column``, from one consistent snapshot (the capture
        columns only when the table has them)."""
        if self.items(create=False) is None:
            return 0, pa.table({"id": pa.array([], pa.string())})
        return self._pinned_scan(column, ["id", "path", "kind", "timestamp", "end",
                                          "mtime_ns", "indexed_at", *CAPTURE_NAMES, column])

    def read_ids(self, column: str) -> tuple[int, pa.Table]:
        """(version, table of id / indexed_at) of the rows with a vector in ``column``,
        from one consistent snapshot: what an index needs to catch up with the store."""
        if self.items(create=False) is None:
            return 0, pa.table({"id": pa.array([], pa.string()),
                                "indexed_at": pa.array([], pa.float64())})
        return self._pinned_scan(column, ["id", "indexed_at"])

    def counts(self) -> dict[str, int]:
        """{kind: number of rows} (counted by LanceDB: no rows are read)."""
        t = self.items(create=False)
        if t is None:
            return {}
        return count_by(t, "kind", list(ItemKind))

    def versions(self) -> dict[str, int]:
        """{table: latest version} of every table there is, core and features: it
        changes whenever anything is written."""
        out: dict[str, int] = {}
        for name in sorted(self.table_names()):
            t = self.table(name, None, create=False)
            if t is not None:
                t.checkout_latest()
                out[name] = t.version
        return out

    def item_rows(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """``columns`` of the items (optionally filtered) as one Arrow table."""
        t = self.items(create=False)
        if t is None:
            return pa.table({c: pa.array([]) for c in columns})
        return scan(t, columns, where)

    def file_rows(self, where: str | None = None) -> list[dict]:
        """Records of indexed files (optionally filtered)."""
        t = self.files(create=False)
        if t is None:
            return []
        have = set(t.schema.names)  # an older table may lack the newer columns: null
        rows = scan(t, [n for n in FILES_SCHEMA.names if n in have], where).to_pylist()
        return [{n: r.get(n) for n in FILES_SCHEMA.names} for r in rows]

    def skipped_rows(self) -> list[dict]:
        """All skipped-file records."""
        t = self.skipped(create=False)
        if t is None:
            return []
        return scan(t, SKIPPED_SCHEMA.names).to_pylist()

    # -- writes (each call is one atomic commit per table) ---------------------------
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
            upsert(t, "id", group, schema)

    def upsert_files(self, rows: list[dict]) -> None:
        """Insert or replace indexed-file records by path, in one commit (after the
        columns an older files table lacks are added, null for its rows)."""
        if rows:
            t = self.files()
            missing = [f for f in FILES_SCHEMA if f.name not in t.schema.names]
            if missing:
                t.add_columns(missing)
            upsert(t, "path", rows, FILES_SCHEMA)

    def write_captures(self, rows: list[dict]) -> int:
        """Write the capture columns (:data:`CAPTURE_NAMES`, keyed by ``path``: one row a
        file) into every item row of those files, then mark the files captured: one
        commit on each table, items first (a run killed between reads them again).
        Vectors and every other column stay as they are. Returns the item rows updated.

        Through the Lance dataset when pylance is there: the new values go into new
        column files beside the fragments' own (100k items: about 0.1 s, the vectors
        never read or written); else a LanceDB merge_insert, which rewrites the rows."""
        rows = list({r["path"]: r for r in rows}.values())
        t, files = self.items(create=False), self.files(create=False)
        if not rows or t is None:
            return 0
        self.add_capture_columns()
        schema = pa.schema([pa.field("path", pa.string(), nullable=False), *CAPTURE_FIELDS])
        data = pa.Table.from_pylist(rows, schema=schema)  # other keys left out
        updated = _update_by_path(t, data)
        # Rows changed in place (their indexed_at kept, so FAISS keeps their vectors):
        # counted, so that saved indexes read their catalogs' capture columns again.
        self.meta.update(capture_rev=self.capture_rev() + 1)
        if files is not None:
            if "captured" not in files.schema.names:
                files.add_columns([FILES_SCHEMA.field("captured")])
            done = pa.table({"path": data["path"],
                             "captured": pa.array([True] * len(rows), pa.bool_())})
            _update_by_path(files, done)
        return updated

    def capture_rev(self) -> int:
        """How many times captures were written into existing rows (``meta.json``, read
        afresh: another process may have written it); a saved index built at an older
        count reads its catalog's capture columns again (search/ann/persist.py)."""
        if self.meta.replica:  # the indexer's meta, from the tables: read when written
            self.meta.refresh()
            return int(self.meta.get("capture_rev", 0) or 0)
        try:  # read again only when the file changed (a search asks every time)
            st = os.stat(self.meta.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._rev_stamp != stamp:
                self._rev = int(IndexMeta(self.dir).get("capture_rev", 0))
                self._rev_stamp = stamp
            return self._rev
        except (OSError, LoupeError, TypeError, ValueError):
            return 0

    def capture_counts(self) -> dict[str, int]:
        """{"taken": items with a capture time, "placed": items with GPS} (row counts:
        nothing is read; 0 for an index without the columns)."""
        t = self.items(create=False)
        if t is None or "lat" not in t.schema.names:
            return {"taken": 0, "placed": 0}
        return {"taken": t.count_rows("taken_at IS NOT NULL OR taken_local IS NOT NULL"),
                "placed": t.count_rows("lat IS NOT NULL")}

    def upsert_skipped(self, rows: list[dict]) -> None:
        """Insert or replace skipped-file records by path, in one commit."""
        if rows:
            upsert(self.skipped(), "path", rows, SKIPPED_SCHEMA)

    def delete_older_rows(self, paths: Iterable[str], run: float) -> None:
        """Delete the rows of ``paths`` that the run stamped ``run`` (its ``indexed_at``)
        did not write: items a re-indexed file no longer has (a shorter video, other
        frame times). Found by run, not by clock."""
        for where in where_in("path", paths):
            if self.items(create=False) is not None:
                self.items().delete(f"{where} AND indexed_at != {run!r}")

    def delete_paths(self, paths: Iterable[str], items: bool = True, skipped: bool = True) -> None:
        """Remove every row and skip record of these files (``items``: rows and the
        indexed-file record)."""
        for where in where_in("path", paths):
            if items:
                for t in (self.items(create=False), self.files(create=False)):
                    if t is not None:
                        t.delete(where)
            if skipped and self.skipped(create=False) is not None:
                self.skipped().delete(where)

    def optimize(self) -> None:
        """Compact small fragments, bring scalar indexes up to date (new rows), drop
        versions older than an hour (in every table there is: core and features), and
        index item ids once the table is large."""
        names = sorted(self.table_names(), key=lambda n: (n not in CORE_TABLES, n))
        for name in names:
            t = self.table(name, None, create=False)
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
