"""What an index holds: counts, encoders, freshness, skipped files (CLI and UI share it)."""

from __future__ import annotations

from loupe.indexer.encoders import licence
from loupe.indexer.kinds import SkipCode
from loupe.search.ann import saved_info
from loupe.search.explain.attribution import collections
from loupe.search.explain.tags import tag_rows, tagging_config
from loupe.search.store import Store


def index_status(store: Store) -> dict:
    """A JSON-ready summary of the index at ``store``."""
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
    skipped = store.skipped_rows()
    problems = [s for s in skipped if s["code"] not in (SkipCode.NOT_MEDIA, SkipCode.UNSUPPORTED)]
    unsupported = [s for s in skipped if s["code"] == SkipCode.UNSUPPORTED]
    counts = store.counts()
    files: dict[str, int] = {}
    partial = []
    for f in store.file_rows():
        files[f["media"]] = files.get(f["media"], 0) + 1
        if f["problem"]:
            partial.append({"path": f["path"], "problem": f["problem"]})
    return {
        "db": store.dir,
        "tables": store.tables_uri,
        "store_version": version,
        "items": sum(counts.values()),
        "counts": counts,
        "files": files,
        "partial": sorted(partial, key=lambda s: s["path"]),
        "encoders": encoders,
        "last_run": store.meta.get("last_run"),
        "skipped": sorted(({"path": s["path"], "reason": s["reason"]} for s in problems),
                          key=lambda s: s["path"]),
        "unsupported": sorted(({"path": s["path"], "kind": s["kind"], "reason": s["reason"]}
                               for s in unsupported), key=lambda s: s["path"]),
        "not_media": sum(1 for s in skipped if s["code"] == SkipCode.NOT_MEDIA),
        "tagging": _tagging(store),
        "collections": collections(store),
    }


def _tagging(store: Store) -> dict | None:
    """Index-time tags: the settings, and how many items have tags."""
    cfg = tagging_config(store)
    if not cfg:
        return None
    return {**cfg, "tagged_items": tag_rows(store).num_rows}
