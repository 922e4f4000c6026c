"""The UI's gate (ui/gate.py) on its own, in front of a small ASGI app: foreign Host and
Origin refused (HTTP and WebSocket), the loopback token turned into a cookie, password
sign-in, and failed attempts rate limited. tests/test_ui_server.py tests it in the real
server and a browser."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from loupe.ui import gate as G
from loupe.ui.launch import served_names

TOKEN = "k" * 43
PORT = 8599
HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WS = f"ws://127.0.0.1:{PORT}/ws"


async def _page(request):
    return PlainTextResponse("the archive")


async def _stream(ws):
    await ws.accept()
    await ws.send_text("hello")
    await ws.close()


def _client(**config) -> TestClient:
    inner = Starlette(routes=[Route("/", _page), Route("/_stcore/health", _page),
                              Route("/loupe/file/{id}", _page), Route("/api/v1/status", _page),
                              WebSocketRoute("/ws", _stream)])
    cfg = G.GateConfig(HOSTS, PORT, **(config or {"token": TOKEN}))
    return TestClient(G.Gate(inner, cfg), base_url=f"http://127.0.0.1:{PORT}",
                      follow_redirects=False)


def _keyed(c: TestClient) -> TestClient:
    c.cookies.set(f"loupe_key_{PORT}", TOKEN)
    return c


def test_without_the_key_nothing_is_served_but_the_health_probe():
    c = _client()
    for path in ("/", "/loupe/file/abc", "/?token=wrong"):
        r = c.get(path)
        assert r.status_code == 401 and "the archive" not in r.text, path
        assert "loupe ui" in r.text
    assert c.get("/_stcore/health").text == "the archive"  # (the probe answers "ok")


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_address():
    c = _client()
    r = c.get(f"/?token={TOKEN}&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/?x=1"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"loupe_key_{PORT}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    c.cookies.set(f"loupe_key_{PORT}", TOKEN)
    assert c.get("/?x=1").text == "the archive"
    assert c.get("/loupe/file/abc").text == "the archive"


@pytest.mark.parametrize("headers, words", [
    ({"host": "evil.example:8599"}, "does not answer to the name evil.example"),  # rebinding
    ({"origin": "http://evil.example"}, "pages from http://evil.example"),
    ({"origin": "http://127.0.0.1:9999"}, "pages from http://127.0.0.1:9999"),  # other port
    ({"origin": "null"}, "no origin"),
    ({"origin": "https://127.0.0.1:8599"}, "pages from"),  # another scheme is another site
    ({"sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors"}, "a page elsewhere"),
    ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "cors"}, "a page elsewhere"),
])
def test_foreign_hosts_and_origins_are_refused_even_with_the_key(headers, words):
    c = _keyed(_client())
    r = c.get("/", headers=headers)
    assert r.status_code == 403 and words in r.text
    with pytest.raises(WebSocketDisconnect) as e, \
            c.websocket_connect(WS, headers=headers) as ws:
        ws.receive_text()
    assert e.value.code == 1008


def test_links_from_elsewhere_still_open_the_ui():
    c = _keyed(_client())
    nav = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert c.get("/", headers=nav).text == "the archive"
    own = {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"}
    assert c.get("/loupe/file/abc", headers=own).text == "the archive"


def test_the_websocket_needs_the_key_and_its_own_origin():
    c = _client()
    with pytest.raises(WebSocketDisconnect), c.websocket_connect(WS) as ws:
        ws.receive_text()
    own = {"origin": f"http://127.0.0.1:{PORT}"}
    _keyed(c)
    with c.websocket_connect(WS, headers=own) as ws:
        assert ws.receive_text() == "hello"
    ipv6 = {"host": f"[::1]:{PORT}", "origin": f"http://[::1]:{PORT}"}
    with c.websocket_connect(WS, headers=ipv6) as ws:
        assert ws.receive_text() == "hello"


def test_wrong_tokens_are_rate_limited_per_address():
    c = _client()
    for _ in range(G.MAX_FAILURES):
        assert c.get("/?token=guess").status_code == 401
    r = c.get(f"/?token={TOKEN}")  # even the right one waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_password_sign_in_sets_a_session_and_wrong_ones_are_limited():
    c = _client(password_sha256=G.password_digest("correct horse"), tls=True)
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == G.LOGIN_PATH
    page = c.get(G.LOGIN_PATH)
    assert page.status_code == 200 and 'type="password"' in page.text
    assert c.post(G.LOGIN_PATH, data={"password": "wrong"}).status_code == 401
    r = c.post(G.LOGIN_PATH, data={"password": "correct horse"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0].split("=", 1)[1]
    c.cookies.set(f"loupe_key_{PORT}", session)
    assert c.get("/").text == "the archive"
    c.cookies.set(f"loupe_key_{PORT}", "forged")
    assert c.get("/").status_code == 303
    other = _client(password_sha256=G.password_digest("correct horse"))
    for _ in range(G.MAX_FAILURES):
        other.post(G.LOGIN_PATH, data={"password": "nope"})
    r = other.post(G.LOGIN_PATH, data={"password": "correct horse"})
    assert r.status_code == 429
    # a sign-in posted by another site's page is refused before the password is looked at
    r = c.post(G.LOGIN_PATH, data={"password": "correct horse"},
               headers={"origin": "http://evil.example"})
    assert r.status_code == 403


def test_the_gate_needs_exactly_one_secret():
    with pytest.raises(ValueError):
        G.GateConfig(HOSTS, PORT)
    with pytest.raises(ValueError):
        G.GateConfig(HOSTS, PORT, token=TOKEN, password_sha256=b"x")


def test_served_names_are_loopback_plus_what_is_given():
    names = served_names("127.0.0.1", ("Archive.LAN",))
    assert names == {"127.0.0.1", "localhost", "::1", "archive.lan"}
    wide = served_names("0.0.0.0")
    assert "0.0.0.0" not in wide and "localhost" in wide and len(wide) > 3


def test_with_a_sign_in_the_page_is_open_and_files_need_the_signed_in_user():
    users = {"valid"}
    c = _client(signed_in=lambda cookies: cookies.get("_streamlit_user") in users)
    assert c.get("/").text == "the archive"  # the page offers the sign-in
    for path in ("/loupe/file/abc",):
        assert c.get(path).status_code == 401
    c.cookies.set("_streamlit_user", "forged")
    assert c.get("/loupe/file/abc").status_code == 401
    c.cookies.set("_streamlit_user", "valid")
    assert c.get("/loupe/file/abc").text == "the archive"
    assert c.get("/", headers={"origin": "http://evil.example"}).status_code == 403


API_KEY = "a" * 43


def _bearer(secret: str) -> dict:
    return {"authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("mode", [
    {"token": TOKEN},
    {"password_sha256": G.password_digest("correct horse")},
    {"signed_in": lambda cookies: False},
])
def test_the_api_key_is_a_bearer_in_every_mode(mode):
    c = _client(**mode, api_key=API_KEY)
    for path in ("/api/v1/status", "/loupe/file/abc", "/"):
        assert c.get(path, headers=_bearer(API_KEY)).text == "the archive", path
    r = c.get("/api/v1/status")  # no key: a JSON refusal, never the sign-in page
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["status"] == 401 and "\n" not in r.json()["error"]["message"]
    r = c.get("/api/v1/status", headers=_bearer("wrong"))
    assert r.status_code == 401 and "Wrong key" in r.json()["error"]["message"]
    # foreign pages are refused with the key too, in JSON under /api/
    r = c.get("/api/v1/status", headers={**_bearer(API_KEY), "origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["message"].startswith("Refused: ")


def test_with_a_password_the_password_is_a_bearer_too():
    c = _client(password_sha256=G.password_digest("correct horse"), api_key=API_KEY)
    assert c.get("/api/v1/status", headers=_bearer("correct horse")).text == "the archive"
    # another scheme (a proxy's Basic sign-in) is no key, and no wrong one either
    for _ in range(G.MAX_FAILURES + 1):
        r = c.get("/api/v1/status", headers={"authorization": "Basic eDp5"})
        assert r.status_code == 401 and "needs its API key" in r.json()["error"]["message"]
    assert c.get("/api/v1/status", headers=_bearer(API_KEY)).text == "the archive"
    only_token = _client()  # the loopback key is a cookie's, not a bearer (no api_key)
    assert only_token.get("/api/v1/status", headers=_bearer(TOKEN)).status_code == 401


def test_wrong_bearers_are_rate_limited_per_address():
    c = _client(token=TOKEN, api_key=API_KEY)
    for _ in range(G.MAX_FAILURES):
        assert c.get("/api/v1/status", headers=_bearer("guess")).status_code == 401
    r = c.get("/api/v1/status", headers=_bearer(API_KEY))  # even the right one waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many wrong attempts" in r.json()["error"]["message"]
    assert c.get("/", headers=_bearer(API_KEY)).status_code == 429
