"""End to end in a real browser: `loupe ui` served on 127.0.0.1, driven by Playwright
through Debian's chromium (no browser is downloaded; without chromium these tests skip).

The index holds corpus photos, the three-shot video and sounds, built with the tiny
random open_clip and ImageBind models; grounding uses the tiny random Kosmos-2.
Screenshots are saved in the test's tmp dir (printed with -s).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                "(apt-get install chromium; .ci/run does)"),
    pytest.mark.timeout(600),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def served(tmp_path_factory, corpus, tiny_clip_dir):
    from helpers.served import serve_ui
    from helpers.tiny_models import make_tiny_imagebind_dir, make_tiny_kosmos2_dir

    from loupe.search.cli import main as loupe_main

    work = tmp_path_factory.mktemp("ui")
    root = work / "archive"
    (root / "photos").mkdir(parents=True)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "horse.png"):
        shutil.copy(corpus / "photos" / name, root / "photos" / name)
    shutil.copytree(corpus / "sounds", root / "sounds")
    shutil.copy(corpus / "video" / "three_shots.mp4", root / "three_shots.mp4")
    ib = make_tiny_imagebind_dir(str(work / "tiny-ib"))
    kosmos = make_tiny_kosmos2_dir(str(work / "tiny-kosmos"))
    db = str(work / "db")
    assert loupe_main(["index", str(root), "--db", db, "--model", tiny_clip_dir, "--model", ib,
                       "--workers", "0", "--quiet"]) == 0
    with serve_ui(db, work, grounding_model=kosmos) as s:
        yield {"url": s.url, "keyed": s.keyed_url, "root": root, "work": work, "db": db,
               "kosmos": kosmos, "server": s}


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _context(browser, served, **kw):
    """A browser context that has opened the address `loupe ui` printed (the key is then
    in its cookie)."""
    ctx = browser.new_context(**kw)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(served["keyed"])
    return ctx, pg


@pytest.fixture
def page(browser, served):
    ctx, pg = _context(browser, served, viewport={"width": 1400, "height": 1000})
    pg.get_by_label("Search", exact=True).wait_for()
    yield pg
    ctx.close()


def _idle(page) -> None:
    """Wait until the app has finished its rerun (the running indicator is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
    page.wait_for_load_state("networkidle")


def _shot(page, served, name: str) -> Path:
    _idle(page)
    path = served["work"] / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _results(page, at_least: int = 1) -> int:
    """How many hits the grid shows, once it shows ``at_least`` (the grid streams in:
    counting as soon as the first tile is there can catch it half drawn)."""
    _idle(page)
    sel = page.get_by_role("button", name="Select")
    sel.first.wait_for()
    page.wait_for_function(
        "n => [...document.querySelectorAll('button')]"
        ".filter(b => b.innerText.trim() === 'Select').length >= n", arg=at_least)
    _idle(page)
    return sel.count()


def _no_traceback(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "Traceback" not in page.content()


def test_typing_a_query_shows_a_grid(page, served):
    box = page.get_by_label("Search", exact=True)
    box.fill("a photo of a cat")
    box.press("Enter")
    n = _results(page, at_least=5)
    assert n >= 5
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImage\"] img')"
                           ".length >= 5")
    _shot(page, served, "query-grid")
    _no_traceback(page)


def _open_uploads(page) -> None:
    page.get_by_text("Search with a picture or a sound").click()


def test_uploading_an_image(page, served, corpus):
    _open_uploads(page)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(0).set_input_files(str(corpus / "photos" / "chelsea.png"))
    assert _results(page, at_least=5) >= 5
    # the picture is in the index: it finds itself first
    assert page.get_by_text("chelsea.png").first.is_visible()
    first_title = page.locator('[data-testid="stMarkdownContainer"] strong').first.inner_text()
    _shot(page, served, "image-query")
    assert "chelsea.png" in first_title
    _no_traceback(page)


def test_uploading_a_sound(page, served, corpus):
    _open_uploads(page)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(1).set_input_files(str(corpus / "sounds" / "bell.oga"))
    assert _results(page) >= 1
    _shot(page, served, "sound-query")
    _no_traceback(page)


def test_select_ground_and_cache(page, served):
    box = page.get_by_label("Search", exact=True)
    box.fill("an astronaut")
    box.press("Enter")
    _results(page)
    page.get_by_text("Photo", exact=True).first.click()  # photos only
    page.get_by_text(re.compile(r"photos? for your query")).first.wait_for()
    _results(page)
    page.get_by_role("button", name="Select").first.click()
    _idle(page)
    page.get_by_role("button", name="Ground", exact=True).click()
    page.get_by_text("new answer", exact=False).first.wait_for()
    _shot(page, served, "grounded")
    page.get_by_role("button", name="Ground", exact=True).click()
    _idle(page)
    page.get_by_text("cached", exact=False).first.wait_for()
    _no_traceback(page)


def test_a_grounding_draws_its_boxes(browser, served):
    """A known answer (seeded in the cache as the app would store it) is drawn as boxes
    on the selected picture: the box edge in the served image has the first box colour."""
    import io
    import json

    from PIL import Image

    from loupe.search.explain.grounding.cache import cache_groundings, cache_key, resolve_target
    from loupe.search.explain.grounding.draw import PALETTE
    from loupe.search.explain.grounding.kosmos2 import (
        Entity,
        Grounding,
        load_grounder,
        normalise_prompt,
    )
    from loupe.search.store import Store

    store = Store(served["db"])
    rows = store.item_rows(["id", "path", "kind"]).to_pylist()
    item = next(r["id"] for r in rows if r["path"].endswith("astronaut.png"))
    width, height = Image.open(served["root"] / "photos" / "astronaut.png").size
    prompt = normalise_prompt("Where is the astronaut?")  # asked by no other test
    g = Grounding(caption="An image of an astronaut", prompt=prompt, model="seeded",
                  width=width, height=height, text="",
                  entities=[Entity("an astronaut", 12, 24, [(100.0, 50.0, 400.0, 500.0)])])
    grounder = load_grounder(served["kosmos"], "cpu")
    target = resolve_target(item, store)
    cache_groundings(store, [{"key": cache_key(target.content, prompt, grounder, 64),
                             "content": target.content, "prompt": prompt,
                             "model": "seeded", "result": json.dumps(g.to_dict()),
                             "created": 0.0}])
    ctx, pg = _context(browser, served, viewport={"width": 1400, "height": 1000})
    pg.goto(f"{served['url']}/?item={item}")
    box = pg.get_by_label("Prompt", exact=True)
    box.fill(prompt)
    box.press("Enter")
    _idle(pg)
    pg.get_by_role("button", name="Ground", exact=True).click()
    pg.get_by_text("cached", exact=False).first.wait_for()
    pg.get_by_text("an astronaut", exact=False).first.wait_for()
    _shot(pg, served, "grounding-boxes")
    dialog = pg.get_by_role("dialog")
    # A media URL lives only as long as the page run that made it: when the page reruns
    # in between (seen once in CI: the URL read first no longer gave a picture), read the
    # URL the page shows now.
    deadline = time.monotonic() + 20
    while True:
        src = dialog.locator('[data-testid="stImage"] img').first.get_attribute("src")
        answer = pg.request.get(served["url"] + src if src.startswith("/") else src)
        if answer.ok and answer.headers.get("content-type", "").startswith("image/"):
            break
        assert time.monotonic() < deadline, (answer.status, answer.text()[:200])
        time.sleep(0.5)
    shown = Image.open(io.BytesIO(answer.body())).convert("RGB")
    sx, sy = shown.width / width, shown.height / height
    x, y = round(100 * sx) + 1, round(300 * sy)  # on the left edge, halfway down
    got = shown.getpixel((x, y))
    assert max(abs(a - b) for a, b in zip(got, PALETTE[0], strict=True)) < 40, got
    ctx.close()


def test_a_video_hit_plays_from_its_moment(page, served):
    box = page.get_by_label("Search", exact=True)
    box.fill("coffee")
    box.press("Enter")
    _results(page)
    page.get_by_text("Video", exact=True).first.click()  # video moments only
    page.get_by_text(re.compile(r"videos? for your query")).first.wait_for()
    _results(page)
    page.get_by_role("button", name="Select").first.click()
    _idle(page)
    video = page.locator("video").first
    video.wait_for()
    page.wait_for_function("() => { const v = document.querySelector('video');"
                           " return v && v.readyState >= 1; }")
    start = page.evaluate("() => document.querySelector('video').currentTime")
    src = page.evaluate("() => document.querySelector('video').currentSrc")
    url_item = page.evaluate("() => new URL(location.href).searchParams.get('item')")
    assert url_item
    _shot(page, served, "video-hit")
    from loupe.search.store import Store

    row = Store(served["db"]).get_items([url_item])[url_item]
    assert row["kind"] == "frame"
    assert abs(start - int(row["timestamp"])) < 1.0, (start, row["timestamp"])
    assert src.startswith(served["url"]) and src.endswith(f"/loupe/file/{url_item}")  # streamed


def test_a_crafted_item_is_refused(browser, served):
    ctx, pg = _context(browser, served)
    for bad in ("..%2F..%2Fetc%2Fpasswd", "0123456789abcdef01234567"):
        pg.goto(f"{served['url']}/?item={bad}")
        pg.locator('[data-testid="stAlert"]').first.wait_for()
        text = pg.content()
        assert "root:x:" not in text and "Traceback" not in text
    ctx.close()


def test_the_atlas_maps_the_index_and_a_box_picks_items(page, served):
    box = page.get_by_label("Search", exact=True)
    box.fill("a photo of a cat")
    box.press("Enter")
    _results(page)  # the hits are marked on the map
    page.get_by_role("link", name="Atlas").click()
    page.get_by_role("heading", name="Atlas").wait_for()
    chart = page.locator('[data-testid="stPlotlyChart"]')
    chart.wait_for()
    _idle(page)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .legendtext')"
                           ".length >= 2")
    legend = " ".join(page.locator(".js-plotly-plot .legendtext").all_text_contents())
    assert "Photos (5)" in legend and "Video moments" in legend and "Search hits" in legend
    assert page.get_by_text(re.compile(r"items · PCA · store version \d+")).count() == 1
    _shot(page, served, "atlas")
    # a box over the whole map picks every item (shown as a grid, with a count)
    drag = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(drag["x"] + 5, drag["y"] + 5)
    page.mouse.down()
    page.mouse.move(drag["x"] + drag["width"] / 2, drag["y"] + drag["height"] / 2, steps=5)
    page.mouse.move(drag["x"] + drag["width"] - 5, drag["y"] + drag["height"] - 5, steps=5)
    page.mouse.up()
    picked = page.get_by_text(re.compile(r"\d+ items picked"))
    picked.wait_for()
    assert picked.inner_text().startswith("29 items picked")
    # the grid streams in (thumbnails of video frames are decoded): wait for all of it
    playwright.expect(page.get_by_role("link", name="Open")).to_have_count(29, timeout=60_000)
    picked.scroll_into_view_if_needed()  # the page scrolls inside its main container
    _shot(page, served, "atlas-picked")
    _no_traceback(page)


def test_tags_and_style_charts_with_evidence(page, served, corpus, tmp_path):
    """The selected picture's tags, artists, movements and reference collections are
    drawn as bar charts, with the nearest reference works as thumbnails."""
    from loupe.indexer.encoders import LazyEncoder
    from loupe.search.explain.attribution import add_collection
    from loupe.search.store import Store

    refs = tmp_path / "refs"
    for who, names in (("Cats", ["chelsea.png"]), ("Machines", ["camera.png", "rocket.jpg"])):
        (refs / who).mkdir(parents=True)
        for n in names:
            shutil.copy(corpus / "photos" / n, refs / who / n)
    store = Store(served["db"])
    for who in ("Cats", "Machines"):
        add_collection(store, who, [str(refs / who)],
                       lambda c: LazyEncoder(store.meta.encoders[c], "cpu"))
    box = page.get_by_label("Search", exact=True)
    box.fill("a cat")
    box.press("Enter")
    _results(page)
    page.get_by_text("Photo", exact=True).first.click()
    page.get_by_text(re.compile(r"photos? for your query")).first.wait_for()
    _results(page)
    page.get_by_role("button", name="Select").first.click()
    _idle(page)
    page.get_by_role("button", name="Tags and style").click()
    dialog = page.get_by_role("dialog")
    charts = dialog.locator('[data-testid="stVegaLiteChart"]')
    playwright.expect(charts).to_have_count(4, timeout=120_000)
    dialog.get_by_text("Reference collections", exact=True).wait_for()
    dialog.get_by_text(re.compile(r"Evidence: the 3 nearest reference works")).wait_for()
    for i in range(4):  # each chart has drawn its bars (vega-lite renders SVG here)
        playwright.expect(charts.nth(i).locator("g.mark-rect path").first).to_be_attached()
    evidence = dialog.get_by_text(re.compile(r"^(Cats|Machines) · "))
    playwright.expect(evidence).to_have_count(3)
    charts.nth(1).scroll_into_view_if_needed()  # the dialog scrolls inside itself
    _shot(page, served, "tags-and-style")
    _no_traceback(page)


def test_the_key_is_needed_once_then_kept_in_a_cookie(browser, served):
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    r = pg.goto(served["url"] + "/")
    assert r.status == 401 and "loupe ui" in pg.content()
    assert pg.get_by_label("Search", exact=True).count() == 0
    pg.goto(served["keyed"])
    pg.get_by_label("Search", exact=True).wait_for()
    assert "token=" not in pg.url  # the key left the address bar (and the history)
    pg.goto(served["url"] + "/index")  # a later visit: the cookie carries the key
    pg.get_by_role("link", name="Search").wait_for()
    key = [c for c in ctx.cookies() if c["name"] == served["server"].cookie]
    assert len(key) == 1 and key[0]["httpOnly"] and key[0]["sameSite"] == "Strict"
    ctx.close()


def test_a_page_on_another_local_port_cannot_drive_the_ui(browser, served):
    """A page the user opens on another local port (same site for cookies: they ignore
    ports) tries the UI's WebSocket and a file: both are refused, though the browser
    holds the key."""
    import http.server
    import threading

    from helpers.served import free_port

    from loupe.search.store import Store

    item = next(r["id"] for r in Store(served["db"]).items(create=False).to_arrow().to_pylist()
                if r["kind"] == "frame")
    target = served["url"].replace("http://", "")
    attack = f"""<!doctype html><script>
    window.result = {{}};
    const ws = new WebSocket("ws://{target}/_stcore/stream");
    ws.onopen = () => {{ window.result.ws = "open"; }};
    ws.onerror = () => {{ window.result.ws = "refused"; }};
    fetch("http://{target}/loupe/file/{item}", {{credentials: "include", mode: "no-cors"}})
      .then(r => {{ window.result.file = r.type; }})
      .catch(() => {{ window.result.file = "refused"; }});
    </script>"""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = attack.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    ctx, pg = _context(browser, served)  # this browser holds the key
    pg.get_by_label("Search", exact=True).wait_for()
    log = served["server"].log
    before = log.read_text()
    try:
        pg.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        pg.wait_for_function("() => window.result.ws && window.result.file")
        got = pg.evaluate("() => window.result")
    finally:
        evil.shutdown()
        ctx.close()
    assert got["ws"] == "refused", got
    # no-cors hides the answer from the page: the server's log says the gate refused it
    told = log.read_text()[len(before):]
    origin = f"pages from http://127.0.0.1:{evil.server_address[1]} may not use this UI"
    assert f"refused websocket /_stcore/stream: {origin}" in told, told
    assert f"refused http /loupe/file/{item}: a request made by a page elsewhere" in told, told
