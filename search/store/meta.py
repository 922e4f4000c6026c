"""``meta.json``: an index's format, the encoders whose vectors it holds, which of their
columns may still lack vectors, where its tables live, the roots it was built from, and
what its last run did.

Written atomically (a temp file renamed over the old one), so a reader always sees a
whole file, the old or the new.

An index whose tables live elsewhere (``--tables-uri``, object storage) also keeps a copy
of its meta in them (:class:`SharedMeta`, the ``index_meta`` table, written after the
file each time): a search replica (``loupe serve --db DIR --tables-uri URI``) has a
folder of its own, whose ``meta.json`` says only ``replica`` and the URI, and reads the
rest from the tables, again whenever the indexer has written it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable

from loupe.indexer.encoders.spec import EncoderSpec
from loupe.indexer.errors import IndexFault, LoupeError
from loupe.search.store.schema import FORMAT_VERSION

META_NAME = "meta.json"
SHARED_META = "index_meta"  # the table holding the shared copy (one row: the JSON)


class SharedMeta:
    """The copy of an index's meta kept in its tables: one row, replaced by each write
    (one LanceDB commit), read again only when its table has a new version."""

    def __init__(self, db):
        self.db = db
        self._table = None
        self._seen: tuple[int, dict] | None = None

    def _open(self):
        if self._table is None and SHARED_META in set(self.db.list_tables().tables):
            self._table = self.db.open_table(SHARED_META)
        return self._table

    def read(self) -> dict | None:
        """The meta as the indexer last wrote it, None when the tables hold none."""
        t = self._open()
        if t is None:
            return None
        t.checkout_latest()
        if self._seen is None or self._seen[0] != t.version:
            version = t.version
            rows = t.to_arrow().to_pylist()
            self._seen = version, (json.loads(rows[0]["meta"]) if rows else {})
        return json.loads(json.dumps(self._seen[1]))

    def changed(self) -> bool:
        """Whether the copy was written since it was last read."""
        t = self._open()
        if t is None:
            return False
        t.checkout_latest()
        return self._seen is None or self._seen[0] != t.version

    def write(self, data: dict) -> None:
        """Replace the copy with ``data`` (one commit)."""
        import pyarrow as pa

        rows = pa.table({"meta": [json.dumps(data, sort_keys=True)],
                         "written": [time.time()]})
        t = self._open()
        if t is None:
            self._table = self.db.create_table(SHARED_META, data=rows, exist_ok=True)
        else:
            t.add(rows, mode="overwrite")


class IndexMeta:
    """Typed access to one index folder's ``meta.json`` (read once, written whole)."""

    def __init__(self, db_dir: str, shared: SharedMeta | None = None):
        """``shared``: the copy in the index's tables (written beside the file; a replica's
        folder reads it instead of the file)."""
        self.path = os.path.join(db_dir, META_NAME)
        self.shared = shared
        self._data = self._read()
        self._encoders: dict[str, EncoderSpec] | None = None

    @staticmethod
    def exists(db_dir: str) -> bool:
        """Whether ``db_dir`` holds an index (its meta.json)."""
        return os.path.exists(os.path.join(db_dir, META_NAME))

    @classmethod
    def create(cls, db_dir: str, tables_uri: str | None = None) -> IndexMeta:
        """Write the meta of a new, empty index in ``db_dir`` (made if missing)."""
        os.makedirs(db_dir, exist_ok=True)
        data = {"format": FORMAT_VERSION, "encoders": {}, "encoder_order": [],
                "incomplete_columns": [], "created": time.time()}
        if tables_uri:
            data["tables_uri"] = tables_uri
        _write(os.path.join(db_dir, META_NAME), data)
        return cls(db_dir)

    @classmethod
    def create_replica(cls, db_dir: str, tables_uri: str,
                       shard: tuple[int, int] | None = None) -> None:
        """Make ``db_dir`` (made if missing) a replica's folder of the index whose tables,
        and shared meta, are at ``tables_uri``; ``shard`` (I, N): it serves shard I of N
        only (loupe.search.shards)."""
        os.makedirs(db_dir, exist_ok=True)
        _write(os.path.join(db_dir, META_NAME), {"format": FORMAT_VERSION, "replica": True,
                                                 "tables_uri": tables_uri,
                                                 "shard": list(shard) if shard else None,
                                                 "created": time.time()})

    @property
    def shard(self) -> tuple[int, int] | None:
        """(I, N) when this replica serves shard I of N of the index, else None."""
        got = self._data.get("shard")
        return (int(got[0]), int(got[1])) if got else None

    @property
    def replica(self) -> bool:
        """Whether this folder is a search replica's: its meta is the one in the tables,
        and it never writes the index."""
        return bool(self._data.get("replica"))

    def reload(self) -> None:
        """Read the file again (another process may have written it); a replica, the
        copy in the tables."""
        self._data = self._read()
        self._encoders = None

    def refresh(self) -> bool:
        """A replica: read the tables' copy again if the indexer wrote it since. Returns
        True when it changed (a folder's own meta: :meth:`reload` reads it)."""
        if not self.replica or self.shared is None or not self.shared.changed():
            return False
        self.reload()
        return True

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise LoupeError(f"cannot read {self.path}: {e}") from e
        if data.get("replica") and self.shared is not None:
            shared = self.shared.read()
            if shared is None:
                raise LoupeError(f"the tables at {data.get('tables_uri')} hold no index meta: "
                                 "run `loupe index` once on the indexer's folder")
            data = {**shared, "replica": True, "tables_uri": data.get("tables_uri"),
                    "shard": data.get("shard")}
        return data

    def _save(self) -> None:
        if self.replica:
            raise LoupeError(f"{os.path.dirname(self.path)} is a search replica of the index "
                             f"at {self.tables_uri}: it does not write the index (run the "
                             "writing command on the indexer's folder)")
        self._encoders = None
        _write(self.path, self._data)
        if self.shared is not None:
            self.shared.write(self._data)

    def get(self, key: str, default=None):
        """A top-level field as stored (``last_run``, ``tagging``...)."""
        return self._data.get(key, default)

    def update(self, **fields) -> None:
        """Set top-level fields (atomically)."""
        self._data.update(fields)
        self._save()

    def as_dict(self) -> dict:
        """A copy of everything stored."""
        return json.loads(json.dumps(self._data))

    @property
    def format(self) -> int | None:
        """The index format (``FORMAT_VERSION`` once opened)."""
        return self._data.get("format")

    @property
    def tables_uri(self) -> str | None:
        """Where the tables live when not in the index folder (object storage)."""
        return self._data.get("tables_uri")

    @property
    def last_run(self) -> dict | None:
        """What the last indexing run did (its report, roots and end time)."""
        return self._data.get("last_run")

    @property
    def roots(self) -> list[str] | None:
        """The real paths of every root an indexing run was given, all runs together
        (None: an index made before they were kept, see :attr:`roots_since`)."""
        roots = self._data.get("roots")
        return None if roots is None else list(roots)

    @property
    def roots_since(self) -> float | None:
        """When :attr:`roots` began to be kept: files recorded before then may lie under
        roots of earlier runs that were never written down."""
        return self._data.get("roots_since")

    def add_roots(self, roots: Iterable[str], since: float) -> None:
        """Keep ``roots`` (as real paths) with the others; ``since``: the time stamp of
        the run that brings them (its rows' ``indexed_at``), kept as :attr:`roots_since`
        when they are the first roots this index keeps. A path inside a kept root adds
        nothing (watch mode indexes changed files one by one)."""
        kept = self.roots or []
        inside = [r.rstrip(os.sep) + os.sep for r in kept]
        joined = set(kept) | {r for r in (os.path.realpath(p) for p in roots)
                              if not any(r.startswith(k) for k in inside)}
        if self.roots != sorted(joined):
            self.update(roots=sorted(joined),
                        roots_since=self._data.get("roots_since", since))

    @property
    def encoders(self) -> dict[str, EncoderSpec]:
        """{vector column: spec} of the encoders whose vectors this index holds, in the
        order they were added (the first is the default for queries)."""
        if self._encoders is None:
            specs = self._data.get("encoders", {})
            order = [c for c in self._data.get("encoder_order", []) if c in specs]
            order += sorted(c for c in specs if c not in order)
            self._encoders = {c: EncoderSpec.from_dict(specs[c]) for c in order}
        return dict(self._encoders)

    def add_encoder(self, spec: EncoderSpec, incomplete: bool) -> None:
        """Record ``spec``'s column (``incomplete``: rows already there lack its vectors)."""
        if incomplete:
            self._data["incomplete_columns"] = self.incomplete_columns + [spec.column]
        self._data.setdefault("encoders", {})[spec.column] = spec.to_dict()
        self._data.setdefault("encoder_order", []).append(spec.column)
        self._save()

    @property
    def incomplete_columns(self) -> list[str]:
        """Vector columns that may lack vectors of rows indexed before their model joined
        (an index that does not say: all of them)."""
        return list(self._data.get("incomplete_columns", self.encoders))

    def mark_complete(self, column: str) -> None:
        """Record that every row that should have ``column``'s vector has it."""
        self._data["incomplete_columns"] = [c for c in self.incomplete_columns if c != column]
        self._save()

    def migrated_to(self, version: int) -> None:
        """Record an upgrade of the index to format ``version``."""
        self._data["format"] = version
        self._data.setdefault("encoder_order", list(self._data.get("encoders", {})))
        self._save()

    def query_column(self, spec: EncoderSpec | None = None,
                     modalities: Iterable[str] = ()) -> tuple[str, EncoderSpec]:
        """The (column, spec) to answer a query with.

        ``spec``: the encoder the caller asked for (refused if the index lacks it).
        Otherwise the first of the index's encoders that embeds every one of
        ``modalities`` (Modality values).
        """
        known = self.encoders
        if not known:
            raise LoupeError(f"the index at {os.path.dirname(self.path)} has no vectors yet: "
                             "run `loupe index`")
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


def _write(path: str, data: dict) -> None:
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".meta-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old or the new file
    except OSError as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        raise IndexFault.of(path, e) from e
