"""Words in pictures (``ocr:`` search): the text index at scale, OCR quality on pictures
with known text, title cards in a video, and OCR speed.

1. ``index``: ``--lines`` (1M) synthetic OCR lines (shop-sign-like: 1-5 words drawn from
   a Zipf-distributed English vocabulary, ~5 lines a picture, some words glued together
   as OCR reads them) loaded into Loupe's ``TextIndex`` (SQLite FTS5, trigram) through
   its store of record (the ``texts`` table), and the same lines into LanceDB's own
   full-text index (its word tokenizer with positions, and its ngram tokenizer). Prints
   build time, size on disk per line, and query latency p50/p99 for exact words (common
   and rare, short and long), phrases, misspelled words (one or two letters changed) and
   words glued inside another, with how many queries found the picture they came from.
2. ``quality``: words rendered in real fonts onto the corpus's photos at 3 sizes, 3 angles
   (0, 10, 25 degrees) and 3 contrasts, photos without text, and the corpus's real text
   image (page.png), indexed by the library (``index_paths``, a tiny random CLIP model,
   OCR on) and searched with ``ocr:`` terms: recall@10 and precision, exact vs fuzzy,
   and misspelled queries.
3. ``video``: an mp4 of photo shots with title cards held 3-5 s between them: is each
   title found at its time, and how many OCR reads the sharing of frames saved.
4. ``speed``: pictures/s of the OCR pass on this machine, and what the text gate (the
   detector finding nothing) saves on an archive where 90% of the pictures show no text.

Run::

    source .venv/bin/activate
    python bench/bench_ocr.py                           # everything, 1M lines
    python bench/bench_ocr.py --part index --lines 100000
    python bench/bench_ocr.py --part quality video speed --json-out /tmp/ocr-numbers

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time

from _common import (
    DEFAULT_WORK,
    cpu_busy_s,
    load_note,
    machine_info,
    summary_ms,
    tiny_model_dir,
    write_json,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import _ocr_data as data  # noqa: E402

PARTS = ("index", "quality", "video", "speed")


def dir_size(path: str) -> int:
    """Bytes of the files under ``path`` (or of the file)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def table(rows: list[list], head: list[str]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fmt_ms(s: dict) -> str:
    return f"{s['p50']:.2f} / {s['p99']:.2f}"


# == 1. the text index at scale =========================================================
def _synthetic_box(rng: random.Random, line: int) -> list[float]:
    x, y = rng.uniform(0, 800), 40.0 * line + rng.uniform(0, 20)
    w, h = rng.uniform(60, 600), rng.uniform(14, 40)
    return [round(v, 1) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]


def load_core(readings: data.Readings, db: str, extra: list[list[str]]) -> dict:
    """The readings into a fresh index's ``texts`` table, then ``TextIndex.rebuild``."""
    from loupe.indexer.ocr.reader import OCR_MODEL
    from loupe.search.store import Store
    from loupe.search.text.index import TextIndex
    from loupe.search.text.table import set_ocr, upsert_texts

    shutil.rmtree(db, ignore_errors=True)
    store = Store(db, create=True)
    set_ocr(store, True)
    rng = random.Random(1)
    pics = readings.lines + extra
    t0 = time.perf_counter()
    batch: list[dict] = []
    for i, lines in enumerate(pics):
        rid = f"{i:024x}"
        batch.append({"id": rid, "path": f"/archive/{i // 1000:04d}/pic{i:07d}.jpg",
                      "timestamp": None, "fingerprint": f"fp{i}", "model": OCR_MODEL,
                      "read_from": rid, "problem": None, "read_at": 0.0,
                      "lines": [{"text": t, "score": round(rng.uniform(0.6, 1.0), 3),
                                 "box": _synthetic_box(rng, j)} for j, t in enumerate(lines)]})
        if len(batch) >= 50_000:
            upsert_texts(store, batch)
            batch = []
    upsert_texts(store, batch)
    write_s = time.perf_counter() - t0
    index = TextIndex(store)
    t0 = time.perf_counter()
    index.rebuild()
    build_s = time.perf_counter() - t0
    return {"store": store, "index": index, "write_s": write_s, "build_s": build_s,
            "index_bytes": dir_size(index.path),
            "table_bytes": dir_size(os.path.join(store.tables_uri, "texts.lance"))}


def load_lance(readings: data.Readings, folder: str, extra: list[list[str]],
               tokenizer: str) -> dict:
    """One row per picture (its lines joined by newlines) into a LanceDB table, and its
    native full-text index (``tokenizer``: "simple" = words, with positions for phrases;
    "ngram" = trigrams)."""
    import lancedb
    import pyarrow as pa

    shutil.rmtree(folder, ignore_errors=True)
    db = lancedb.connect(folder)
    texts = ["\n".join(p) for p in readings.lines + extra]
    t0 = time.perf_counter()
    tbl = db.create_table("texts", pa.table({"reading": pa.array(range(len(texts)), pa.int64()),
                                             "text": pa.array(texts, pa.string())}))
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    from lancedb.index import FTS

    tbl.create_index("text", config=FTS(with_position=tokenizer == "simple", stem=False,
                                        remove_stop_words=False, ascii_folding=True,
                                        lower_case=True, base_tokenizer=tokenizer))
    build_s = time.perf_counter() - t0
    uri = os.path.join(folder, "texts.lance")
    return {"table": tbl, "write_s": write_s, "build_s": build_s,
            "index_bytes": dir_size(os.path.join(uri, "_indices")),
            "table_bytes": dir_size(uri) - dir_size(os.path.join(uri, "_indices"))}


def make_queries(readings: data.Readings, per: int, seed: int = 7) -> dict[str, list[dict]]:
    """Queries by category, each {q, typed (what the user types), want (the picture it
    came from), word (the right word)}."""
    from loupe.search.text.normalise import allowed_edits

    rng = random.Random(seed)
    words, counts = readings.words, readings.counts
    rank = {w: i for i, w in enumerate(words)}
    cats = {
        "word, common, 3-5 letters": lambda w: 3 <= len(w) <= 5 and rank[w] < 500,
        "word, common, 6-11 letters": lambda w: 6 <= len(w) <= 11 and rank[w] < 3000,
        "word, rare, 3-5 letters": lambda w: 3 <= len(w) <= 5 and counts[rank[w]] <= 20,
        "word, rare, 6-11 letters": lambda w: 6 <= len(w) <= 11 and counts[rank[w]] <= 20,
        "word, 12+ letters": lambda w: len(w) >= 12,
    }
    out: dict[str, list[dict]] = {c: [] for c in cats}
    out.update({"phrase, 2 words": [], "phrase, 3 words": [],
                "misspelled 1 letter, 4-5 letters": [],
                "misspelled 1 letter, 6-11 letters": [],
                "misspelled 2 letters, 12+ letters": [],
                "word glued inside another": []})
    n = len(readings.lines)
    tries = 0
    while tries < 400 * per * len(out) and any(len(v) < per for v in out.values()):
        tries += 1
        pic = rng.randrange(n)
        line = rng.choice(readings.lines[pic])
        toks = [t.lower() for t in line.split()
                if t.isalpha() and t.lower() in rank]  # glued/priced tokens left out
        if not toks:
            continue
        w = rng.choice(toks)
        for c, ok in cats.items():
            if len(out[c]) < per and ok(w):
                out[c].append({"q": w, "want": pic, "word": w})
        for k in (2, 3):
            parts = line.lower().split()
            c = f"phrase, {k} words"
            if len(out[c]) < per and len(parts) >= k:
                at = rng.randrange(len(parts) - k + 1)
                ph = parts[at:at + k]
                if all(p.isalpha() and p in rank for p in ph):
                    out[c].append({"q": " ".join(ph), "want": pic, "word": " ".join(ph)})
        for c, lo, hi, changes in (("misspelled 1 letter, 4-5 letters", 4, 5, 1),
                                   ("misspelled 1 letter, 6-11 letters", 6, 11, 1),
                                   ("misspelled 2 letters, 12+ letters", 12, 99, 2)):
            fits = lo <= len(w) <= hi and changes <= max(1, allowed_edits(len(w)))
            if len(out[c]) < per and fits:
                bad = data.misspell(w, rng, changes)
                if bad not in rank:  # not another real word
                    out[c].append({"q": bad, "want": pic, "word": w})
    glued = [g for g in readings.glued if len(g[2]) >= 4]
    rng.shuffle(glued)
    for pic, tok, inner in glued[:per]:
        out["word glued inside another"].append({"q": inner, "want": pic, "word": inner,
                                                 "glued": tok})
    return out


def _core_query(index, q: dict, fuzzy: bool) -> set[int]:
    return {int(m.reading, 16) for m in index.match(q["q"], fuzzy=fuzzy)}


def _lance_query(tbl, q: dict, cat: str, tokenizer: str, limit: int | None) -> set[int]:
    from lancedb.query import MatchQuery, PhraseQuery

    from loupe.search.text.normalise import allowed_edits

    text = q["q"]
    if tokenizer == "ngram":
        # LanceDB ORs the query's trigrams (operator=AND makes no difference with this
        # tokenizer in 0.40), so the candidates are checked for the squashed query.
        from loupe.search.text.normalise import squash

        want = squash(text)
        got = tbl.search(MatchQuery(text, "text"), query_type="fts").select(
            ["reading", "text", "_score"]).limit(limit or 10_000_000).to_arrow()
        return {r for r, t in zip(got["reading"].to_pylist(), got["text"].to_pylist(),
                                  strict=True) if want in squash(t)}
    if cat.startswith("phrase"):
        query = PhraseQuery(text, "text")
    else:
        fuzz = allowed_edits(len(text)) if cat.startswith("misspelled") else 0
        query = MatchQuery(text, "text", fuzziness=fuzz, max_expansions=50)
    s = tbl.search(query, query_type="fts").select(["reading", "_score"])
    got = s.limit(limit or 10_000_000).to_arrow()
    return set(got["reading"].to_pylist())


def run_queries(name: str, fn, queries: dict[str, list[dict]], repeat: int = 1) -> dict:
    """{category: {latency summary, found share, mean matches}} of one engine."""
    out = {}
    warm = [q for qs in queries.values() for q in qs[:2]]
    for q in warm:  # first queries open files and fill caches
        fn(q, "word")
    for cat, qs in queries.items():
        times, found, matches = [], 0, 0
        for q in qs:
            for _ in range(repeat):
                t = time.perf_counter()
                got = fn(q, cat)
                times.append(time.perf_counter() - t)
            found += q["want"] in got
            matches += len(got)
        out[cat] = {**summary_ms(times), "found": found, "queries": len(qs),
                    "mean_matches": matches / max(1, len(qs))}
    return out


def part_index(args) -> dict:
    print(f"\n## 1. Text index at scale: {args.lines:,} synthetic OCR lines")
    t0 = time.perf_counter()
    words, source = data.vocabulary()
    readings = data.synthetic_readings(args.lines, words, seed=args.seed)
    print(f"vocabulary: {len(words):,} words from the {source}; "
          f"{len(readings.lines):,} pictures, {readings.n_lines:,} lines, "
          f"{len(readings.glued):,} glued pairs (made in {time.perf_counter() - t0:.1f} s)")
    sample = [" | ".join(p) for p in readings.lines[:3]]
    print("first pictures: " + " || ".join(sample))
    # page.png's first line as OCR reads it, to ask who finds a word glued inside.
    page = [["Region-basedsegmentation", "histogram ofgreyvalues:"]]
    work = os.path.join(args.work, "ocr-index")
    os.makedirs(work, exist_ok=True)
    queries = make_queries(readings, args.queries, seed=args.seed + 7)
    engines: dict[str, dict] = {}
    results: dict[str, dict] = {}

    core = load_core(readings, os.path.join(work, "loupe-db"), page)
    engines["Loupe TextIndex (SQLite FTS5 trigram)"] = core
    print(f"Loupe: texts table written in {core['write_s']:.1f} s, FTS5 trigram index "
          f"built in {core['build_s']:.1f} s")
    idx = core["index"]
    page_id = len(readings.lines)
    results["Loupe TextIndex (SQLite FTS5 trigram)"] = run_queries(
        "core", lambda q, c: _core_query(idx, q, True), queries)
    results["Loupe TextIndex, exact only (fuzzy=False)"] = run_queries(
        "core-exact", lambda q, c: _core_query(idx, q, False), queries)
    # The FTS5 lookup alone (no TextMatch objects, no line data): what the index costs.
    import sqlite3

    from loupe.search.text.normalise import squash

    con = sqlite3.connect(f"file:{idx.path}?mode=ro", uri=True)
    reading_of = {rowid: int(r, 16) for rowid, r in con.execute("SELECT rowid, reading FROM docs")}

    def raw(q: dict, c: str) -> set[int]:
        rows = con.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (f'"{squash(q["q"])}"',))
        return {reading_of[r[0]] for r in rows}

    results["SQLite FTS5 trigram MATCH alone (row ids, exact)"] = run_queries("raw", raw, queries)
    probes = {"segmentation (glued inside Region-basedsegmentation)": "segmentation",
              "segmentatian (one wrong letter)": "segmentatian",
              "histogran (one wrong letter)": "histogran",
              "grey values (phrase read as ofgreyvalues)": "grey values"}
    probe_rows = {p: {"Loupe": page_id in _core_query(idx, {"q": q}, True)}
                  for p, q in probes.items()}

    for tok, label in (("simple", "LanceDB FTS (word tokenizer, positions)"),
                       ("ngram", "LanceDB FTS (ngram tokenizer) + substring check")):
        if tok == "ngram" and args.no_ngram:
            continue
        lan = load_lance(readings, os.path.join(work, f"lance-{tok}"), page, tok)
        engines[label] = lan
        print(f"{label}: table written in {lan['write_s']:.1f} s, index built in "
              f"{lan['build_s']:.1f} s")
        tbl = lan["table"]
        results[label] = run_queries(
            label, lambda q, c, tbl=tbl, tok=tok: _lance_query(tbl, q, c, tok, None), queries)
        if tok == "simple":
            results[label + ", top 10"] = run_queries(
                label, lambda q, c, tbl=tbl, tok=tok: _lance_query(tbl, q, c, tok, 10),
                queries)
        for p, q in probes.items():
            cat = "phrase" if " " in q else ("misspelled" if p.endswith("letter)") else "word")
            probe_rows[p][label] = page_id in _lance_query(tbl, {"q": q}, cat, tok, None)

    n = readings.n_lines
    size_rows = [[name, f"{e['write_s']:.1f}", f"{e['build_s']:.1f}",
                  f"{e['index_bytes'] / 2**20:,.0f}", f"{e['index_bytes'] / n:.0f}",
                  f"{e['table_bytes'] / n:.0f}"] for name, e in engines.items()]
    print(f"\n### Build and size ({n:,} lines, {len(readings.lines):,} pictures)\n")
    print(table(size_rows, ["engine", "table write s", "index build s", "index MiB",
                            "index bytes/line", "table bytes/line"]))
    cats = list(queries)
    print(f"\n### Query latency, ms p50 / p99 (found: the query's own picture among the "
          f"matches, of {args.queries} queries; all matches returned unless 'top 10')\n")
    names = list(results)
    rows = []
    for c in cats:
        row = [c]
        for nm in names:
            r = results[nm][c]
            row.append(f"{fmt_ms(r)} ({r['found']}/{r['queries']}, {r['mean_matches']:,.0f})")
        rows.append(row)
    print(table(rows, ["query"] + names))
    print("\n(in brackets: found / queries, mean number of pictures matched)")
    print("\n### Who finds what OCR makes of page.png\n")
    cols = list(next(iter(probe_rows.values())))
    print(table([[p] + ["yes" if v[c] else "no" for c in cols] for p, v in probe_rows.items()],
                ["query"] + cols))
    return {"lines": n, "pictures": len(readings.lines), "vocabulary": source,
            "engines": {k: {x: v for x, v in e.items() if isinstance(v, (int, float))}
                        for k, e in engines.items()},
            "latency": results, "probes": probe_rows}


# == 2. quality on pictures with known text =============================================
def _tiny_encoder(work: str):
    from loupe.indexer.encoders.registry import load_encoder

    return load_encoder(tiny_model_dir(work), None, device="cpu")


def _index(folder: str, db: str, encoder, ocr: bool):
    """Index ``folder`` into a fresh ``db`` (OCR on or off); (store, report, seconds)."""
    from loupe.indexer.pipeline.options import IndexOptions
    from loupe.indexer.pipeline.run import index_paths
    from loupe.search.store import Store
    from loupe.search.text.table import set_ocr

    shutil.rmtree(db, ignore_errors=True)
    store = Store(db, create=True)
    if ocr:
        set_ocr(store, True)
    t0 = time.perf_counter()
    report = index_paths([folder], store, encoder, IndexOptions(progress=False))
    return store, report, time.perf_counter() - t0


def _searcher(store):
    from loupe.search.engine import Searcher

    return Searcher(store)


def _ask(searcher, store, phrase: str, fuzzy: bool, k: int = 10):
    """Hits of ``ocr:"phrase"`` alone: Searcher.search (fuzzy) or its text path with
    fuzzy matching off."""
    from loupe.search.query_parse import parse_query
    from loupe.search.text.search import text_filter

    terms = parse_query([f'ocr:"{phrase}"'])
    if fuzzy:
        return searcher.search(terms, k=k)
    return searcher.search_text(text_filter(store, terms, fuzzy=False), k=k)


def _score(rows: list[tuple[str, set[str], list[str]]]) -> tuple[float, float, int, int]:
    """(recall@10, precision, hits returned, true hits) of (query, truth files, hit files)."""
    found = sum(bool(truth & set(hits)) for _, truth, hits in rows)
    returned = sum(len(hits) for _, _, hits in rows)
    true = sum(sum(h in truth for h in hits) for _, truth, hits in rows)
    return (found / max(1, len(rows)), true / returned if returned else float("nan"),
            returned, true)


def part_quality(args) -> dict:
    from loupe.search.text.normalise import allowed_edits, normalise
    from loupe.search.text.table import texts_of

    print("\n## 2. Quality: pictures with known text")
    work = os.path.join(args.work, "ocr-quality")
    pics = os.path.join(work, "pictures")
    shutil.rmtree(pics, ignore_errors=True)
    words, _ = data.vocabulary()
    rendered = data.render_set(pics, words, per_cell=args.per_cell, no_text=args.no_text,
                               seed=args.seed)
    for real in ("page.png", "astronaut.png"):  # the corpus's real pictures of text
        shutil.copy(os.path.join(data.PHOTOS, real), os.path.join(pics, real))
    n_text = sum(1 for r in rendered if r.words)
    print(f"{n_text} pictures with rendered words (sizes 16/28/48 px x angles 0/10/25 x "
          f"contrasts sign/high/low, {args.per_cell} each), {args.no_text} without text, "
          "page.png and astronaut.png (real text)")
    enc = _tiny_encoder(args.work)
    store, report, secs = _index(pics, os.path.join(work, "db"), enc, ocr=True)
    print(f"indexed with OCR in {secs:.1f} s: {report.texts_read} pictures read, "
          f"{report.texts_with_text} with text, {report.text_lines} lines")
    searcher = _searcher(store)
    by_file = {os.path.join(pics, r.file): r for r in rendered}
    page_path = os.path.join(pics, "page.png")

    def hits_of(phrase: str, fuzzy: bool) -> list[str]:
        return [h.path for h in _ask(searcher, store, phrase, fuzzy)]

    rng = random.Random(args.seed + 3)
    groups: dict[str, list] = {}
    rows_exact, rows_fuzzy, rows_miss_f, rows_miss_e = [], [], [], []
    for path, r in by_file.items():
        for w in r.words:
            truth = {path}
            e, f = hits_of(w, False), hits_of(w, True)
            rows_exact.append((w, truth, e))
            rows_fuzzy.append((w, truth, f))
            for key in (f"size {r.size} px", f"angle {r.angle}", f"contrast {r.contrast}"):
                groups.setdefault(key, []).append((w, truth, e, f))
            if allowed_edits(len(w)) >= 1:
                bad = data.misspell(w, rng, 1)
                rows_miss_f.append((bad, truth, hits_of(bad, True)))
                rows_miss_e.append((bad, truth, hits_of(bad, False)))

    # page.png: the words of its text (read by eye), 4 letters or more, each once.
    page_words = sorted({w for line in data.PAGE_TRUTH for w in normalise(line).split()
                         if len(w) >= 4})
    page_rows_e = [(w, {page_path}, hits_of(w, False)) for w in page_words]
    page_rows_f = [(w, {page_path}, hits_of(w, True)) for w in page_words]
    page_read = texts_of(store, _page_ids(store, page_path))
    read_lines = [(x.text, round(x.score, 2)) for lines in page_read.values() for x in lines]
    astro_path = os.path.join(pics, "astronaut.png")
    astro_words = [w.lower() for w in data.ASTRONAUT_TRUTH]
    astro_rows_e = [(w, {astro_path}, hits_of(w, False)) for w in astro_words]
    astro_rows_f = [(w, {astro_path}, hits_of(w, True)) for w in astro_words]
    astro_read = [(x.text, round(x.score, 2)) for lines in
                  texts_of(store, _page_ids(store, astro_path)).values() for x in lines]

    # pictures without text that were read as showing some (a line above the floor)
    plain_ids = _ids_by_path(store, [p for p, r in by_file.items() if not r.words])
    plain_read = texts_of(store, list(plain_ids))
    false_text = {plain_ids[i]: [(x.text, round(x.score, 2)) for x in lines if x.score >= 0.5]
                  for i, lines in plain_read.items()}
    false_text = {os.path.basename(p): v for p, v in false_text.items() if v}

    def line(name, rows):
        rec, prec, ret, true = _score(rows)
        return [name, len(rows), f"{rec:.3f}", "-" if ret == 0 else f"{prec:.3f}", ret, true]

    head = ["queries", "n", "recall@10", "precision", "hits returned", "true hits"]
    qrows = [line("rendered words, exact only", rows_exact),
             line("rendered words, fuzzy (default)", rows_fuzzy),
             line("one letter changed (6+ letters), exact only", rows_miss_e),
             line("one letter changed (6+ letters), fuzzy", rows_miss_f),
             line("page.png words (4+ letters), exact only", page_rows_e),
             line("page.png words (4+ letters), fuzzy", page_rows_f),
             line("astronaut.png patch names, exact only", astro_rows_e),
             line("astronaut.png patch names, fuzzy", astro_rows_f)]
    print("\n### Text queries (ocr:\"word\", k = 10)\n")
    print(table(qrows, head))
    grows = []
    for key in sorted(groups, key=lambda k: (k.split()[0], int(k.split()[1]) if
                                             k.split()[1].isdigit() else k.split()[1])):
        g = groups[key]
        re_ = _score([(w, t, e) for w, t, e, _ in g])
        rf = _score([(w, t, f) for w, t, _, f in g])
        grows.append([key, len(g), f"{re_[0]:.3f}", f"{rf[0]:.3f}", f"{rf[1]:.3f}"])
    print("\n### Recall@10 by how the words were drawn\n")
    print(table(grows, ["pictures drawn at", "words", "recall exact", "recall fuzzy",
                        "precision fuzzy"]))
    missed = [w for w, t, h in page_rows_f if not t & set(h)]
    print(f"\npage.png as read: {read_lines}")
    print(f"page.png words not found: {missed}")
    print(f"astronaut.png as read: {astro_read}")
    print("astronaut.png names found (fuzzy): "
          f"{[w for w, t, h in astro_rows_f if t & set(h)]}")
    print(f"pictures without text read as showing text (lines >= 0.5): {len(false_text)} "
          f"of {args.no_text}: {false_text}")
    fails = [(w, os.path.basename(next(iter(t)))) for w, t, h in rows_fuzzy if not t & set(h)]
    print(f"rendered words not found (fuzzy): {len(fails)}: {fails[:30]}")
    wrong = sorted({(w, os.path.basename(h)) for w, t, hs in rows_fuzzy for h in hs
                    if h not in t})
    print(f"wrong hits (fuzzy): {wrong[:30]}")
    return {"queries": {r[0]: dict(zip(head[1:], r[1:], strict=True)) for r in qrows},
            "by_condition": {r[0]: r[1:] for r in grows}, "page_read": read_lines,
            "page_missed": missed, "astronaut_read": astro_read, "false_text": false_text,
            "index_s": secs}


def _ids_by_path(store, paths: list[str]) -> dict[str, str]:
    import pyarrow.compute as pc

    rows = store.item_rows(["id", "path"])
    rows = rows.filter(pc.is_in(rows["path"], __import__("pyarrow").array(paths)))
    return dict(zip(rows["id"].to_pylist(), rows["path"].to_pylist(), strict=True))


def _page_ids(store, path: str) -> list[str]:
    return list(_ids_by_path(store, [path]))


# == 3. title cards in a video ==========================================================
def part_video(args) -> dict:
    from loupe.indexer.ocr.update import update_texts
    from loupe.search.text.table import set_ocr

    print("\n## 3. Video title cards")
    work = os.path.join(args.work, "ocr-video")
    folder = os.path.join(work, "video")
    shutil.rmtree(folder, ignore_errors=True)
    titles = ["Hotel Lisboa", "CHAPTER TWO", "Harbour Lights", "Night Market",
              "The Long Winter"]
    cards = data.title_card_video(os.path.join(folder, "cards.mp4"), titles,
                                  holds=(3.0, 5.0, 4.0, 5.0, 3.0))
    length = cards[-1].end + 4.0
    enc = _tiny_encoder(args.work)
    store, report, secs = _index(folder, os.path.join(work, "db"), enc, ocr=False)
    frames = store.item_rows(["id", "timestamp"], "kind = 'frame'").to_pylist()
    on_cards = sum(any(c.start <= f["timestamp"] < c.end for c in cards) for f in frames)
    set_ocr(store, True)
    t0 = time.perf_counter()
    stats = update_texts(store)
    ocr_s = time.perf_counter() - t0
    print(f"{length:.0f} s video, {len(cards)} cards held 3-5 s; {len(frames)} frames "
          f"indexed ({on_cards} on cards), embedded in {secs:.1f} s; OCR pass {ocr_s:.1f} s: "
          f"{stats.read} frames read, {stats.shared} shared an earlier frame's reading")
    from loupe.search.text.table import text_rows

    read = text_rows(store, ["id", "timestamp", "read_from"]).to_pylist()
    card_rows = []
    for c in cards:
        on = [r for r in read if c.start <= r["timestamp"] < c.end]
        card_rows.append([c.title, len(on), len({r["read_from"] for r in on})])
    print()
    print(table(card_rows, ["card", "frames sampled on it", "OCR reads"]))
    searcher = _searcher(store)
    rows, found = [], 0
    for c in cards:
        hits = _ask(searcher, store, c.title, True)
        moments = [m.timestamp for h in hits for m in (h.moments or [])] or [
            h.timestamp for h in hits if h.timestamp is not None]
        at = [t for t in moments if c.start - 1e-6 <= t < c.end]
        ok = bool(at) and len(at) == len(moments)
        found += bool(at)
        rows.append([c.title, f"{c.start:.0f}-{c.end:.0f} s",
                     ", ".join(f"{t:.1f}" for t in moments) or "-",
                     "yes" if ok else ("found, plus others" if at else "no")])
    print()
    print(table(rows, ["title", "on screen", "hit moments (s)", "at its time"]))
    saved = stats.shared
    print(f"\nOCR reads: {stats.read} for {stats.read + stats.shared} frames "
          f"({saved} saved = {saved / max(1, stats.read + stats.shared):.0%})")
    return {"cards": rows, "card_reads": card_rows, "found": found, "frames": len(frames),
            "read": stats.read, "shared": stats.shared, "ocr_s": ocr_s}


# == 4. speed ===========================================================================
def part_speed(args) -> dict:
    from loupe.indexer.ocr.reader import load_reader
    from loupe.indexer.ocr.update import update_texts
    from loupe.search.text.table import set_ocr

    print("\n## 4. Speed (this machine: " + machine_info() + ")")
    work = os.path.join(args.work, "ocr-speed")
    words, _ = data.vocabulary()
    n = args.speed_pictures
    n_with = max(1, round(n * 0.1))
    src = os.path.join(work, "src")
    shutil.rmtree(src, ignore_errors=True)
    # Enough text pictures (all 27 conditions) and plain pictures for both archives.
    per_cell = max(1, -(-n // 27))
    rendered = data.render_set(src, words, per_cell=per_cell, no_text=n, seed=args.seed + 11)
    text_files = [r.file for r in rendered if r.words][:n]
    plain_files = [r.file for r in rendered if not r.words][:n]
    archives = {"all show text": text_files,
                "10% show text": text_files[:n_with] + plain_files[:n - n_with],
                "no text": plain_files}
    enc = _tiny_encoder(args.work)
    reader = load_reader()
    from PIL import Image

    warm = Image.open(os.path.join(src, text_files[0])).convert("RGB")
    reader.read(warm)
    out, rows = {}, []
    for name, files in archives.items():
        folder = os.path.join(work, name.replace(" ", "-").replace("%", "pc"))
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for f in files:
            shutil.copy(os.path.join(src, f), folder)
        # embedding alone, then the OCR pass over the same index (what --ocr adds)
        store, _, embed_s = _index(folder, os.path.join(work, "db-" + os.path.basename(folder)),
                                   enc, ocr=False)
        set_ocr(store, True)
        t0, c0 = time.perf_counter(), time.process_time()
        stats = update_texts(store, lambda: reader)
        ocr_s, ocr_cpu = time.perf_counter() - t0, time.process_time() - c0
        # the whole run with OCR on, in one go (index_paths does both)
        _, rep, both_s = _index(folder, os.path.join(work, "db2-" + os.path.basename(folder)),
                                enc, ocr=True)
        out[name] = {"pictures": len(files), "embed_s": embed_s, "ocr_s": ocr_s,
                     "ocr_cpu_s": ocr_cpu,
                     "with_text": stats.with_text, "indexed_with_ocr_s": both_s}
        rows.append([name, len(files), stats.with_text, f"{ocr_s / len(files):.3f}",
                     f"{ocr_cpu / len(files):.3f}", f"{len(files) / ocr_s:.2f}",
                     f"{embed_s / len(files):.3f}",
                     f"{both_s / len(files):.3f}", f"{len(files) / both_s:.2f}"])
    # per picture: the detector alone (gate closed) vs detector + recogniser
    det_only, full, det_cpu, full_cpu = [], [], [], []
    for f in text_files[:20] + plain_files[:20]:
        im = Image.open(os.path.join(src, f)).convert("RGB")
        t, c = time.perf_counter(), time.process_time()
        lines = reader.read(im)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        (full if lines else det_only).append(wall)
        (full_cpu if lines else det_cpu).append(cpu)
    print(f"\n### OCR cost per picture, 640x480 pictures, {os.cpu_count()} cores "
          f"(ONNX Runtime threads: {os.environ.get('LOUPE_OCR_THREADS', os.cpu_count())})\n")
    print(table(rows, ["archive", "pictures", "read with text", "OCR s/picture",
                       "OCR CPU-s/picture", "OCR pictures/s", "embed s/picture (tiny CLIP)",
                       "index --ocr s/picture", "index --ocr pictures/s"]))
    d, f = summary_ms(det_only), summary_ms(full)
    dc, fc = summary_ms(det_cpu), summary_ms(full_cpu)
    print(f"\nreader.read per picture: no line found (the detector alone) p50 {d['p50']:.0f} ms "
          f"wall, {dc['p50']:.0f} ms CPU (n={d['n']}); lines found (detector + recogniser) "
          f"p50 {f['p50']:.0f} ms wall, {fc['p50']:.0f} ms CPU (n={f['n']})")
    # by picture size: the reader works on at most READ_SIDE (2000) pixels a side
    size_rows = []
    font = data.fonts()[1]
    for w, h in ((640, 480), (1280, 960), (4000, 3000)):
        rng = random.Random(5)
        plain_t, text_t = [], []
        for j in range(3):
            img = data.background(data.BACKGROUNDS[(j * 5) % len(data.BACKGROUNDS)], (w, h), rng)
            t = time.perf_counter()
            reader.read(img)
            plain_t.append(time.perf_counter() - t)
            data.draw_words(img, "HOTEL LISBOA", font, h // 12, 0, "sign", rng)
            t = time.perf_counter()
            reader.read(img)
            text_t.append(time.perf_counter() - t)
        size_rows.append([f"{w}x{h}", f"{sorted(plain_t)[1]:.2f}", f"{sorted(text_t)[1]:.2f}"])
    print("\n### reader.read by picture size (median of 3, seconds)\n")
    print(table(size_rows, ["picture", "no text", "one sign"]))
    a, m = out["all show text"], out["10% show text"]
    print(f"the gate: an archive where 90% show no text costs "
          f"{m['ocr_s'] / m['pictures']:.3f} s/picture of OCR "
          f"({m['ocr_cpu_s'] / m['pictures']:.3f} CPU-s) vs "
          f"{a['ocr_s'] / a['pictures']:.3f} s ({a['ocr_cpu_s'] / a['pictures']:.3f} CPU-s) "
          f"when all show text ({1 - m['ocr_cpu_s'] / a['ocr_cpu_s']:.0%} less CPU)")
    return {"archives": out, "det_only_ms": d, "full_ms": f, "det_only_cpu_ms": dc,
            "full_cpu_ms": fc, "by_size": size_rows}


def _own_cpu_s() -> float:
    """CPU seconds of this process and its waited-for children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", nargs="+", choices=PARTS + ("all",), default=["all"])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--lines", type=int, default=1_000_000, help="synthetic OCR lines (1M)")
    ap.add_argument("--queries", type=int, default=100, help="queries per category (100)")
    ap.add_argument("--no-ngram", action="store_true",
                    help="leave out LanceDB's ngram-tokenizer index")
    ap.add_argument("--per-cell", type=int, default=2,
                    help="rendered pictures per (size, angle, contrast) cell (2: 54)")
    ap.add_argument("--no-text", type=int, default=40, help="pictures without text (40)")
    ap.add_argument("--speed-pictures", type=int, default=40,
                    help="pictures per archive in the speed part (40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", help="write the numbers as JSON files into this folder")
    args = ap.parse_args(argv)
    parts = PARTS if "all" in args.part else args.part
    print(machine_info())
    fns = {"index": part_index, "quality": part_quality, "video": part_video,
           "speed": part_speed}
    for p in parts:
        t0, busy0, own0 = time.perf_counter(), cpu_busy_s(), _own_cpu_s()
        numbers = fns[p](args)
        wall = time.perf_counter() - t0
        others = max(0.0, cpu_busy_s() - busy0 - (_own_cpu_s() - own0))
        note = load_note(others, wall)
        numbers["load_note"] = note
        print(f"\n({p}: {wall:.0f} s; {note})")
        write_json(args.json_out, f"ocr-{p}.json", json.loads(json.dumps(numbers, default=str)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
