"""The real UI server (`loupe ui`'s command on 127.0.0.1) behind its gate: WebSocket
handshakes with a foreign Host, a foreign Origin, another local port's Origin and `null`
are refused while the page's own handshake works; nothing is served without the key;
Loupe's file route sits behind the gate too; beyond loopback a password is needed and
signing in works, over TLS when given; the page started directly says how to start it."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess

import pytest
from helpers.media import solid
from helpers.served import TOKEN, serve_ui

from loupe.search import Store
from loupe.search.cli import main as loupe

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, corpus, tiny_clip_dir):
    work = tmp_path_factory.mktemp("ui-server")
    root = work / "archive"
    solid(root / "red.png", (250, 0, 0))
    shutil.copy(corpus / "video" / "three_shots_10s.webm", root / "clip.webm")
    db = str(work / "db")
    assert loupe(["index", str(root), "--db", db, "--model", tiny_clip_dir, "--workers", "0",
                  "--quiet", "--every", "2"]) == 0
    return work, db


@pytest.fixture(scope="module")
def served(indexed):
    work, db = indexed
    with serve_ui(db, work) as s:
        yield s


def _handshake(port: int, host: str, origin: str | None, cookie: str | None) -> int:
    """The status of a raw WebSocket handshake on Streamlit's stream (101: accepted)."""
    lines = ["GET /_stcore/stream HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode()]
    if origin:
        lines.append(f"Origin: {origin}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = s.recv(4096).split(b"\r\n", 1)[0]
    return int(status.split()[1])


def test_websocket_handshakes_from_elsewhere_are_refused_and_the_pages_own_works(served):
    port, key = served.port, f"{served.cookie}={TOKEN}"
    own = f"http://127.0.0.1:{port}"
    assert _handshake(port, f"127.0.0.1:{port}", own, key) == 101
    assert _handshake(port, f"localhost:{port}", f"http://localhost:{port}", key) == 101
    refused = [
        (f"rebound.example:{port}", f"http://rebound.example:{port}", key),  # DNS rebinding
        (f"127.0.0.1:{port}", "https://evil.example", key),  # another site
        (f"127.0.0.1:{port}", "http://127.0.0.1:1", key),  # another local port
        (f"127.0.0.1:{port}", "null", key),  # a sandboxed frame, a file: page
        (f"127.0.0.1:{port}", own, None),  # no key
        (f"127.0.0.1:{port}", own, f"{served.cookie}=guess"),  # a wrong key
    ]
    for host, origin, cookie in refused:
        assert _handshake(port, host, origin, cookie) == 403, (host, origin, cookie)


def _get(served, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    r.body = r.read()
    c.close()
    return r


def test_nothing_is_served_without_the_key_and_the_key_becomes_a_cookie(served, indexed):
    _, db = indexed
    frame = next(r["id"] for r in Store(db).items(create=False).to_arrow().to_pylist()
                 if r["kind"] == "frame")
    for path in ("/", "/search", f"/loupe/file/{frame}", "/_stcore/host-config",
                 "/static/index.html"):
        r = _get(served, path)
        assert r.status == 401, (path, r.status)
        assert b"<html" not in r.body.lower() and b"webm" not in r.body
    r = _get(served, f"/?token={TOKEN}")
    assert r.status == 303 and r.getheader("location") == "/"
    cookie = r.getheader("set-cookie").split(";")[0]
    page = _get(served, "/", {"Cookie": cookie})
    assert page.status == 200 and b"<html" in page.body.lower()
    media = _get(served, f"/loupe/file/{frame}", {"Cookie": cookie, "Range": "bytes=0-3"})
    assert media.status == 206 and media.body == open(
        Store(db).get_items([frame])[frame]["path"], "rb").read(4)
    assert _get(served, "/_stcore/health").body.strip() == b"ok"  # probes need no key


def test_beyond_loopback_a_password_is_needed(indexed, capsys):
    _, db = indexed
    capsys.readouterr()
    assert loupe(["ui", "--db", db, "--host", "0.0.0.0", "--no-browser"]) == 1
    err = capsys.readouterr().err
    assert "--password-file" in err and "Traceback" not in err


def _self_signed(work) -> tuple[str, str]:
    cert, key = str(work / "cert.pem"), str(work / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test cert")
def test_password_sign_in_over_tls(indexed):
    work, db = indexed
    password = work / "password"
    password.write_text("a long team password\n")
    cert, key = _self_signed(work)
    with serve_ui(db, work, token=None, host="127.0.0.1", password_file=str(password),
                  tls=(cert, key)) as s:
        ctx = ssl.create_default_context(cafile=cert)

        def call(method, path, body=None, headers=None):
            c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=30)
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            r.body = r.read()
            c.close()
            return r

        r = call("GET", "/")
        assert r.status == 303 and r.getheader("location") == "/loupe/login"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert call("POST", "/loupe/login", "password=wrong", form).status == 401
        r = call("POST", "/loupe/login", "password=a+long+team+password", form)
        assert r.status == 303
        cookie = r.getheader("set-cookie")
        assert "Secure" in cookie and "HttpOnly" in cookie
        page = call("GET", "/", headers={"Cookie": cookie.split(";")[0]})
        assert page.status == 200 and b"<html" in page.body.lower()


def test_started_by_hand_it_stays_on_this_machine_and_makes_its_own_key(indexed):
    """`streamlit run ui/server.py` with no flags: the shipped settings keep it on
    127.0.0.1, it makes a key and prints the address with it, and the key works."""
    import importlib.resources
    import re
    import sys
    import time

    from helpers.served import free_port

    work, db = indexed
    port = free_port()
    server = str(importlib.resources.files("loupe.ui") / "server.py")
    env = {k: v for k, v in os.environ.items() if k != "LOUPE_UI_TOKEN"}
    log = work / "by-hand.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", server,
                                 "--server.port", str(port), "--", "--db", db],
                                env=dict(env, HF_HUB_OFFLINE="1"), stdout=out,
                                stderr=subprocess.STDOUT, cwd=str(work))
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"open (http://127\.0\.0\.1:\d+/\?token=(\S+))",
                                  log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        token = m.group(2)
        time.sleep(1.0)
        with pytest.raises(OSError):  # not on the machine's other addresses
            other = socket.gethostbyname(socket.gethostname())
            if other.startswith("127."):
                raise OSError("no other address to try")
            socket.create_connection((other, port), timeout=3).close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", f"/?token={token}")
        assert c.getresponse().status == 303
    finally:
        proc.terminate()
        proc.wait(15)
