"""``loupe status``: what the index holds, and what was skipped."""

from __future__ import annotations

import argparse
import json
import time

from loupe.search.cli.common import EXIT_OK, add_db, open_store, shown

NAME = "status"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe status`` to the subparsers."""
    p = sub.add_parser(NAME, help="what the index holds, and what was skipped")
    add_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")


def _faiss_line(f: dict | None) -> str:
    """One model's FAISS index: its kind, recall, and whether it is fresh."""
    if f is None:
        return "missing"
    if not f.get("nprobe"):
        how = "exact, "
    else:
        how = f"recall@10 {f['recall_at_10']:.3f} at nprobe {f['nprobe']}, "
        if f.get("rerank"):
            how += f"top {f['rerank']} re-scored with whole vectors, "
    fresh = "fresh" if f["fresh"] else (f"stale (built from version {f['built_from_version']}; "
                                        "brought up to date on the next search)")
    return f"{f['type']} with {f['vectors']} vectors, {how}{fresh}"


def run(args: argparse.Namespace) -> int:
    """Print the index's status (or JSON)."""
    from loupe.search import index_status

    st = index_status(open_store(args))
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"index: {st['db']} (store version {st['store_version']})")
    if st.get("tables") and st["tables"] != st["db"]:
        print(f"tables: {st['tables']}")
    files = ", ".join(f"{n} {k}" for k, n in sorted(st["files"].items())) or "none"
    print(f"files: {files}")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st["counts"].items())) or "empty"
    print(f"items: {st['items']} ({counts})")
    for e in st["encoders"]:
        print(f"model: {e['backend']} {e['model']} ({e['weights']}), dim {e['dim']}, embeds "
              f"{', '.join(e['modalities'])}; index: {_faiss_line(e['faiss'])}")
        if e.get("weights_license"):
            print(f"  weights licence: {e['weights_license']}")
    cap = st.get("captures") or {}
    if cap.get("taken") or cap.get("placed"):
        print(f"what the camera knew: {cap['taken']:,} items with a capture time, "
              f"{cap['placed']:,} with a GPS position")
    if st["last_run"]:
        lr = st["last_run"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lr["finished"]))
        print(f"last run: {when}, {lr['embedded']} embedded, {lr['reused']} reused, "
              f"{lr['removed']} removed, {lr['skipped']} skipped")
    if st["tagging"]:
        t = st["tagging"]
        print(f"tags: {t['tagged_items']} items tagged from {t['vocabulary']} (top {t['top']}, "
              f"at least {t['min_share']:g}%)")
    if st.get("ocr"):
        o = st["ocr"]
        print(f"text read: {o['pictures_read']} pictures, {o['lines']} lines (searched from "
              f"confidence {o['min_score']:g}; ocr:\"words\" queries)")
    if st["collections"]:
        print("reference collections: " + ", ".join(
            f"{name} ({n})" for name, n in st["collections"].items()))
    if st["unsupported"]:
        print(f"not indexed by this index's models: {len(st['unsupported'])} files "
              "(sound files need an audio model)")
    if st["partial"]:
        print(f"indexed in part: {len(st['partial'])} files")
        for s in st["partial"]:
            print(f"  {shown(s['path'])}: {s['problem']}")
    if st["not_media"]:
        print(f"ignored (not media): {st['not_media']} files")
    print(f"skipped: {len(st['skipped'])} files")
    for s in st["skipped"]:
        print(f"  {shown(s['path'])}: {s['reason']}")
    return EXIT_OK
