"""LanceDB table helpers shared by the store and the feature tables: filters, scans,
upserts, and opening a table that a killed run left half made."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa

# Values per ``IN (...)`` filter: long lists are cut into filters of this many.
IN_CHUNK = 500


def sql_str(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    return "'" + value.replace("'", "''") + "'"


def where_in(column: str, values: Iterable[str], chunk: int = IN_CHUNK) -> Iterator[str]:
    """``column IN (...)`` filters covering ``values`` (sorted, without repeats), at most
    ``chunk`` values each; nothing for no values."""
    values = sorted(set(values))
    for i in range(0, len(values), chunk):
        yield f"{column} IN (" + ",".join(sql_str(v) for v in values[i : i + chunk]) + ")"


def scan(table, columns: Sequence[str], where: str | None = None) -> pa.Table:
    """``columns`` of every row of ``table`` (matching ``where``) as one Arrow table."""
    q = table.search().select(list(columns))
    if where:
        q = q.where(where)
    return q.limit(None).to_arrow()


def read_columns(table, columns: Sequence[str], where: str | None = None) -> pa.Table:
    """As :func:`scan`, through the table's Lance dataset when pylance is installed (for
    a few columns of many rows several times quicker than a LanceDB query), else
    through the query. The dataset is the version the table handle has checked out."""
    try:
        ds = table.to_lance()
    except (ImportError, AttributeError, NotImplementedError):  # no pylance, remote table
        return scan(table, columns, where)
    return ds.to_table(columns=list(columns), filter=where)


def count_by(table, column: str, values: Iterable[str]) -> dict[str | None, int]:
    """{value: rows} of ``column`` (values without rows left out): a ``count_rows`` per
    expected value; the column is read only when other values (or nulls) are there."""
    out = {str(v): table.count_rows(f"{column} = {sql_str(v)}") for v in values}
    out = {v: n for v, n in out.items() if n}
    if sum(out.values()) == table.count_rows():
        return out
    import pyarrow.compute as pc

    counted = pc.value_counts(read_columns(table, [column])[column]).to_pylist()
    return {r["values"]: r["counts"] for r in counted}


def upsert(table, key: str, rows: list[dict], schema: pa.Schema) -> None:
    """Insert or replace ``rows`` by ``key`` in one commit (of rows with the same key,
    the last one is kept: LanceDB would insert each of them)."""
    rows = list({r[key]: r for r in rows}.values())
    data = pa.Table.from_pylist(rows, schema=schema)
    table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(data)


def open_table(db, name: str, schema, create: bool):
    """Table ``name`` of ``db``, created with ``schema()`` when missing and ``create``;
    None when missing and not ``create``. A table whose creation was killed (a folder
    without a version) reads as missing and is made anew."""
    half_made = False
    if name in set(db.list_tables().tables):
        try:
            return db.open_table(name)
        except ValueError:
            half_made = True
    if not create:
        return None
    return db.create_table(name, schema=schema(), mode="overwrite" if half_made else "create")
