"""The Atlas page at scale, in a real browser: is a 100k-point map responsive?

Builds (once, in ``--work``) a Loupe store of ``--points`` synthetic photo rows (512-d,
clustered; the files do not exist, so no thumbnails), computes its atlas with the page's
default settings (cached in the store, as the page would), serves ``loupe ui`` and drives
Debian's chromium with Playwright:

- ``open``: from navigating to the Atlas page to the map's WebGL canvas and legend drawn;
- ``select``: from releasing a box drag over a quarter of the map to "N items picked"
  shown (one Streamlit rerun: the selection goes to Python and the grid comes back);
- ``payload``: bytes the page received (the figure JSON dominates).

Run::

    python bench/bench_atlas_browser.py [--points 100000] [--work DIR]

Prints numbers (and writes JSON to ``--out``); asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import DEFAULT_WORK, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_store(db: str, points: int, seed: int = 0) -> None:
    from loupe.indexer.encoders.spec import EncoderSpec, ImagePreprocess
    from loupe.search.explain.atlas import load_atlas
    from loupe.search.store import Store

    if os.path.exists(os.path.join(db, "meta.json")):
        return
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, 512)).astype(np.float32)
    vecs = centres[rng.integers(0, 50, points)] + 0.3 * rng.normal(size=(points, 512)).astype(
        np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    tmp = db + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    store = Store(tmp, create=True)
    col = store.register_encoder(EncoderSpec(backend="bench", model="synthetic",
                                             weights="none", weights_id="synthetic", dim=512,
                                             preprocess=ImagePreprocess(size=(224, 224))))
    for start in range(0, points, 20000):
        store.upsert_items([{"id": f"{i:024x}", "path": f"/archive/{i // 1000:03d}/{i:07d}.jpg",
                             "kind": "photo", "fingerprint": f"fp{i}", "mtime_ns": 0,
                             col: vecs[i].tolist()}
                            for i in range(start, min(points, start + 20000))])
    t0 = time.perf_counter()
    atlas = load_atlas(store)  # the page's defaults: cached for it
    print(f"atlas of {len(atlas):,} points ({atlas.method}) computed in "
          f"{time.perf_counter() - t0:.1f} s")
    os.replace(tmp, db)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--out", default=None)
    ap.add_argument("--timeout", type=int, default=300, help="seconds to wait for a step")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from loupe.search.cli.ui import ui_command

    db = os.path.join(args.work, f"atlas-{args.points}", "db")
    build_store(db, args.points)
    port = _free_port()
    proc = subprocess.Popen(ui_command(db, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(args.timeout * 1000)
            received = [0]
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda f: received.__setitem__(0, received[0] + len(f))))
            page.goto(url)
            page.get_by_label("Search", exact=True).wait_for()
            t0 = time.perf_counter()
            page.goto(url + "/atlas")
            try:
                page.wait_for_function("() => document.querySelector("
                                       "'.js-plotly-plot .gl-container canvas') && "
                                       "document.querySelector('.js-plotly-plot .nsewdrag')")
            except Exception:
                page.screenshot(path=os.path.join(args.work, "atlas-browser-fail.png"))
                raise
            opened = time.perf_counter() - t0
            drag = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()
            page.mouse.move(drag["x"] + 5, drag["y"] + 5)
            page.mouse.down()
            page.mouse.move(drag["x"] + drag["width"] / 2, drag["y"] + drag["height"] / 2,
                            steps=5)
            t0 = time.perf_counter()
            page.mouse.up()
            picked = page.get_by_text(re.compile(r"[\d,]+ items picked"))
            picked.wait_for()
            selected = time.perf_counter() - t0
            n = picked.inner_text().split(" ")[0]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{args.points:,} points: page open to map drawn {opened:.2f} s; box selection "
          f"({n} items) to the grid {selected:.2f} s; {received[0] / 2**20:.1f} MiB received")
    write_json(args.out, "atlas_browser", {"points": args.points, "open_s": opened,
                                           "select_s": selected, "picked": n,
                                           "received_mib": received[0] / 2**20})


if __name__ == "__main__":
    main()
