"""What an index holds: counts, encoders, freshness, skipped files (CLI and UI share it)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.encoders import licence
from loupe.indexer.kinds import MediaKind, SkipCode
from loupe.search.ann import saved_info
from loupe.search.explain.attribution import collections
from loupe.search.explain.tags import tagged_count, tagging_config
from loupe.search.store import Store, count_by, read_columns, sql_str
from loupe.search.text.table import ocr_config, read_count

PARTIAL = "problem IS NOT NULL AND problem != ''"
_NOT_PROBLEMS = f"({sql_str(SkipCode.NOT_MEDIA)}, {sql_str(SkipCode.UNSUPPORTED)})"
# The lists of files the status names: (table, filter, columns), each sorted by path.
STATUS_LISTS = {
    "skipped": ("skipped", f"code IS NULL OR code NOT IN {_NOT_PROBLEMS}", ["path", "reason"]),
    "partial": ("files", PARTIAL, ["path", "problem"]),
    "unsupported": ("skipped", f"code = {sql_str(SkipCode.UNSUPPORTED)}",
                    ["path", "kind", "reason"]),
}


def index_status(store: Store, lists: bool = True) -> dict:
    """A JSON-ready summary of the index at ``store``.

    Counts come from LanceDB's row counts, not from reading rows. ``lists``: with the
    skipped, partial and unsupported files themselves (each sorted by path, as
    :func:`status_rows`); without, only their numbers (``skipped_count``,
    ``partial_count``, ``unsupported_count``, always there).
    """
    version = store.version()
    encoders = []
    for column, spec in store.meta.encoders.items():
        info = saved_info(store, column)
        encoders.append({
            "column": column,
            **spec.to_dict(),
            "modalities": sorted(spec.modalities),
            "weights_license": licence(spec),
            "faiss": None if info is None else {
                "type": info.kind, "vectors": info.count, "built_from_version": info.version,
                "fresh": info.version == version, "nprobe": info.nprobe,
                "recall_at_10": info.recall, "dead_slots": info.dead, "why": info.reason,
                "rerank": info.rerank,
            },
        })
    skipped, files_t = store.skipped(create=False), store.files(create=False)
    not_media = unsupported = problems = 0
    if skipped is not None:
        not_media = skipped.count_rows(f"code = {sql_str(SkipCode.NOT_MEDIA)}")
        unsupported = skipped.count_rows(f"code = {sql_str(SkipCode.UNSUPPORTED)}")
        problems = skipped.count_rows() - not_media - unsupported
    files = {} if files_t is None else count_by(files_t, "media", list(MediaKind))
    counts = store.counts()
    out = {
        "db": store.dir,
        "tables": store.tables_uri,
        "store_version": version,
        "items": sum(counts.values()),
        "counts": counts,
        "files": files,
        "partial_count": 0 if files_t is None else files_t.count_rows(PARTIAL),
        "encoders": encoders,
        "last_run": store.meta.get("last_run"),
        "skipped_count": problems,
        "unsupported_count": unsupported,
        "not_media": not_media,
        "captures": store.capture_counts(),  # items with a capture time, with GPS
        "tagging": _tagging(store),
        "ocr": _ocr(store),
        "collections": collections(store),
    }
    if lists:
        for name in STATUS_LISTS:
            out[name] = status_rows(store, name).to_pylist()
    return out


def status_rows(store: Store, which: str) -> pa.Table:
    """The files of one of the status's lists (``STATUS_LISTS``: "skipped" unreadable
    files, "partial" files indexed in part, "unsupported" files this index's models
    cannot embed), sorted by path; only their shown columns are read."""
    table, where, columns = STATUS_LISTS[which]
    t = store.table(table, None, create=False)
    if t is None:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return read_columns(t, columns, where).sort_by("path")


def indexed_folders(store: Store) -> list[str]:
    """Every folder holding indexed files, and the folders above them up to the common
    part of all of them, sorted; only the files' path column is read."""
    t = store.files(create=False)
    if t is None:
        return []
    paths = read_columns(t, ["path"])["path"]
    if os.sep == "/" and not os.altsep:  # the dirnames in Arrow, then only unique ones
        parts = pc.split_pattern(paths, "/", max_splits=1, reverse=True)
        heads = pc.if_else(pc.equal(pc.list_value_length(parts), 2),
                           pc.list_element(parts, 0), pa.scalar(None, pa.string()))
        # "/a/b" + "/" -> "/a/b"; "" (a file at the root) + "/" -> "/"; "/a/" -> "/a"
        dirs = {"" if h is None else os.path.dirname(h + "/")
                for h in pc.unique(heads).to_pylist()}
    else:
        dirs = {os.path.dirname(p) for p in paths.to_pylist()}
    return folder_tree(dirs)


def folder_tree(dirs: set[str]) -> list[str]:
    """``dirs`` and the folders above them down to their common part, sorted."""
    dirs.discard("")
    if not dirs:
        return []
    try:
        top = os.path.commonpath(list(dirs))
    except ValueError:  # mixed drives
        top = ""
    out: set[str] = set()
    for d in dirs:
        while d and d not in out:
            out.add(d)
            if d == top or os.path.dirname(d) == d:
                break
            d = os.path.dirname(d)
    return sorted(out)


def _ocr(store: Store) -> dict | None:
    """Text read in pictures: the settings, pictures read, lines stored."""
    cfg = ocr_config(store)
    if not cfg:
        return None
    pictures, lines = read_count(store)
    return {**cfg, "pictures_read": pictures, "lines": lines}


def _tagging(store: Store) -> dict | None:
    """Index-time tags: the settings, and how many items have tags."""
    cfg = tagging_config(store)
    if not cfg:
        return None
    return {**cfg, "tagged_items": tagged_count(store)}
