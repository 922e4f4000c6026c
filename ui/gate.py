"""The UI's front door: an ASGI middleware in front of everything the server answers
(the page, its WebSocket, Streamlit's media, Loupe's own routes).

A request gets through only when

- its ``Host`` names this server (loopback names by default, the names given with
  ``--host``/``--allow-host``): a page on another site that rebinds its DNS name to
  127.0.0.1 sends its own name and is refused;
- its ``Origin``, when a browser sends one, is this server itself (scheme, name and
  port): a page on another site or on another local port cannot drive the UI, and the
  opaque ``null`` origin is refused;
- and it carries the secret: on loopback, the per-launch token that ``loupe ui`` prints
  in the URL (as Jupyter does), kept in a cookie after the first visit; beyond loopback,
  a session cookie got by logging in with the password from ``--password-file``. In
  every mode a program may instead send ``Authorization: Bearer <API key>`` (the
  per-launch key in the index's server file), and with a password ``Bearer <password>``.

Failed attempts (a wrong token, password or bearer) are rate limited per client address.
Refusals of paths under ``/api/`` are JSON errors, as the API's own. No Streamlit here:
the gate is plain ASGI, tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
LOGIN_PATH = "/loupe/login"
OPEN_PATHS = frozenset({"/_stcore/health"})  # answers "ok" only: liveness probes need no key
TOKEN_PARAM = "token"
# With a sign-in (OIDC) the page and its WebSocket stay open (they offer the sign-in
# and show nothing before it); what holds the archive's bytes needs the signed-in user.
SIGNED_IN_PATHS = ("/media/", "/loupe/", "/_stcore/upload_file", "/api/")
API_PATHS = "/api/"  # programs' paths: refusals there are JSON
SESSION_SECONDS = 7 * 24 * 3600
MAX_FAILURES = 5  # wrong secrets per client address per window, then 429
FAILURE_WINDOW_S = 60.0
MAX_FORM_BYTES = 4096


@dataclass
class GateConfig:
    """Who may come in.

    ``hosts``: names accepted in ``Host`` and ``Origin`` (lower case, no port).
    ``port``: the port the server listens on (an ``Origin`` on another port is another
    site). One secret: ``token``, the loopback key; ``password_sha256``, the digest of
    the password a login must give; or ``signed_in``, which tells from the cookies
    whether the identity provider signed the browser in (the page itself, which offers
    the sign-in, stays open; files, media and uploads need it). ``tls``: cookies are
    ``Secure``. ``api_key``: what programs send as ``Authorization: Bearer KEY``
    whatever the secret (with a password, the password is accepted there too).
    """

    hosts: frozenset[str]
    port: int
    token: str | None = None
    password_sha256: bytes | None = None
    signed_in: Callable[[Mapping[str, str]], bool] | None = None  # OIDC: cookies -> user?
    tls: bool = False
    api_key: str | None = None  # accepted as "Authorization: Bearer ..." in every mode

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.token, self.password_sha256, self.signed_in)]
        if sum(given) != 1:
            raise ValueError("the gate needs exactly one secret: a token, a password or "
                             "a sign-in")
        self.hosts = frozenset(h.lower().strip("[]") for h in self.hosts)

    @property
    def cookie(self) -> str:
        # Cookies are not kept apart by port: two Loupe UIs on one machine need two names.
        return f"loupe_key_{self.port}"


def password_digest(password: str) -> bytes:
    """What the gate keeps of a password (compared in constant time)."""
    return hashlib.sha256(password.encode()).digest()


@dataclass
class _Failures:
    """Failed attempts per client address within the last window."""

    times: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: it may)."""
        with self.lock:
            recent = [t for t in self.times.get(client, []) if now - t < FAILURE_WINDOW_S]
            self.times[client] = recent
            if len(recent) < MAX_FAILURES:
                return 0.0
            return FAILURE_WINDOW_S - (now - recent[0])

    def add(self, client: str, now: float) -> None:
        with self.lock:
            self.times.setdefault(client, []).append(now)
            if len(self.times) > 10_000:  # a flood of addresses: forget the oldest
                for key in list(self.times)[:5_000]:
                    del self.times[key]


class Gate:
    """ASGI middleware: refuses foreign hosts and origins, and requests without the
    secret (see the module's docstring)."""

    def __init__(self, app: ASGIApp, config: GateConfig):
        self.app = app
        self.config = config
        self._failures = _Failures()
        self._sessions: dict[str, float] = {}  # password logins: session id -> expiry
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        why = self._foreign(headers, scope)
        if why:
            _log(f"refused {kind} {scope['path']}: {why}")
            await _refuse(scope, receive, send, 403, f"Refused: {why}.")
            return
        if kind == "http" and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        bearer = _bearer(headers)
        if bearer is not None:
            await self._with_bearer(scope, receive, send, client, bearer)
            return
        if self.config.password_sha256 is not None and scope["path"] == LOGIN_PATH:
            await self._login(scope, receive, send, client)
            return
        if self.config.signed_in is not None:
            if not scope["path"].startswith(SIGNED_IN_PATHS) or self.config.signed_in(
                    _cookies(headers.get("cookie", ""))):
                await self.app(scope, receive, send)
            else:
                await _refuse(scope, receive, send, 401, "Sign in first (open the UI's page).")
            return
        if self._has_key(headers):
            await self.app(scope, receive, send)
            return
        given = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get(
            TOKEN_PARAM)
        if kind == "http" and given is not None and self.config.token is not None:
            wait = self._failures.blocked(client, time.monotonic())
            if wait:
                await _too_many(scope, receive, send, wait)
                return
            if hmac.compare_digest(given.encode(), self.config.token.encode()):
                await _redirect(send, _without_token(scope), self._cookie(self.config.token))
                return
            self._failures.add(client, time.monotonic())
        if _is_api(scope):
            await _refuse(scope, receive, send, 401,
                          "This Loupe server needs its API key: send Authorization: Bearer "
                          "KEY (the key is in the index folder's .server.json).")
            return
        if kind == "http" and self.config.password_sha256 is not None:
            await _redirect(send, LOGIN_PATH)
            return
        await _refuse(scope, receive, send, 401,
                      "This Loupe UI needs its key: open the address that `loupe ui` "
                      "printed (it ends in ?token=...).")

    async def _with_bearer(self, scope: Scope, receive: Receive, send: Send, client: str,
                           given: str) -> None:
        """A request that names its key (``Authorization: Bearer ...``): let in, or
        refused (a wrong one counts as a failure of its address)."""
        wait = self._failures.blocked(client, time.monotonic())
        if wait:
            await _too_many(scope, receive, send, wait)
            return
        if self._bearer_ok(given):
            await self.app(scope, receive, send)
            return
        self._failures.add(client, time.monotonic())
        _log(f"refused {scope['type']} {scope['path']}: a wrong key")
        await _refuse(scope, receive, send, 401, "Wrong key: send the API key in the index "
                      "folder's .server.json as Authorization: Bearer KEY.")
    # -- checks -----------------------------------------------------------------------
    def _foreign(self, headers: dict[str, str], scope: Scope) -> str | None:
        """Why the request comes from somewhere else (None: it does not)."""
        host = _host_name(headers.get("host", ""))
        if host not in self.config.hosts:
            return f"this server does not answer to the name {host or '(none)'}"
        site = headers.get("sec-fetch-site")
        if site not in (None, "same-origin", "none") and not (
                headers.get("sec-fetch-mode") == "navigate" and scope.get("method") == "GET"):
            # a page elsewhere (another port counts: cookies ignore ports) fetching a file
            # or a picture without an Origin; opening a link to the UI is still fine
            return f"a request made by a page elsewhere ({site})"
        origin = headers.get("origin")
        if origin is None:
            return None  # not a browser's cross-origin request (curl, the CLI)
        if origin == "null":
            return "a page with no origin (a file, a sandbox) may not use this UI"
        try:
            parts = urlsplit(origin)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "an unreadable Origin"
        want = "https" if self.config.tls else "http"
        if parts.scheme != want or (parts.hostname or "") not in self.config.hosts \
                or port != self.config.port:
            return f"pages from {origin} may not use this UI"
        return None

    def _bearer_ok(self, given: str) -> bool:
        key = self.config.api_key
        if key is not None and hmac.compare_digest(given.encode(), key.encode()):
            return True
        digest = self.config.password_sha256
        return digest is not None and hmac.compare_digest(password_digest(given), digest)

    def _has_key(self, headers: dict[str, str]) -> bool:
        value = _cookies(headers.get("cookie", "")).get(self.config.cookie)
        if not value:
            return False
        if self.config.token is not None:
            return hmac.compare_digest(value.encode(), self.config.token.encode())
        with self._lock:
            expiry = self._sessions.get(value)
            if expiry is None:
                return False
            if expiry < time.time():
                del self._sessions[value]
                return False
            return True

    def _cookie(self, value: str, max_age: int | None = None) -> str:
        out = f"{self.config.cookie}={value}; Path=/; HttpOnly; SameSite=Strict"
        if max_age is not None:
            out += f"; Max-Age={max_age}"
        return out + ("; Secure" if self.config.tls else "")

    # -- password login ---------------------------------------------------------------
    async def _login(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        if scope["type"] != "http":
            await _refuse(scope, receive, send, 403, "Refused.")
            return
        if scope["method"] == "GET":
            await _html(send, 200, _login_page(""))
            return
        if scope["method"] != "POST":
            await _html(send, 405, _login_page("Use the form."))
            return
        wait = self._failures.blocked(client, time.monotonic())
        if wait:
            await _too_many(scope, receive, send, wait)
            return
        body = await _body(receive, MAX_FORM_BYTES)
        password = dict(parse_qsl(body.decode("utf-8", "replace"))).get("password", "")
        assert self.config.password_sha256 is not None
        if hmac.compare_digest(password_digest(password),
                                                    self.config.password_sha256):
            session = secrets.token_urlsafe(32)
            with self._lock:
                now = time.time()
                self._sessions = {k: v for k, v in self._sessions.items() if v > now}
                self._sessions[session] = now + SESSION_SECONDS
            await _redirect(send, "/", self._cookie(session, SESSION_SECONDS))
            return
        self._failures.add(client, time.monotonic())
        await _html(send, 401, _login_page("Wrong password."))


# -- small ASGI helpers ------------------------------------------------------------------
def _log(line: str) -> None:
    """One line on the server's stderr (the operator sees who was turned away)."""
    print(f"loupe ui: {line}", file=sys.stderr, flush=True)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name = k.decode("latin-1").lower()
        if name not in out:  # the first of a repeated header counts
            out[name] = v.decode("latin-1")
    return out


def _bearer(headers: dict[str, str]) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header (None without one, or
    with another scheme: a proxy's Basic sign-in in front is not a wrong key)."""
    scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def _is_api(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope.get("path", "")).startswith(API_PATHS)


def json_error(status: int, message: str) -> bytes:
    """The body of an API error: ``{"error": {"status": ..., "message": ...}}``."""
    return json.dumps({"error": {"status": status, "message": message}},
                      ensure_ascii=False).encode()


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8501`` -> ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name not in out:
            out[name] = value
    return out


def _without_token(scope: Scope) -> str:
    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                          keep_blank_values=True) if k != TOKEN_PARAM]
    path = scope.get("path") or "/"
    return path + ("?" + urlencode(query) if query else "")


async def _body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b""
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, content_type: str,
                extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
               (b"x-frame-options", b"DENY"), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _html(send: Send, status: int, page: str) -> None:
    await _send(send, status, page.encode(), "text/html; charset=utf-8")


async def _redirect(send: Send, to: str, cookie: str | None = None) -> None:
    extra = [(b"location", to.encode("latin-1"))]
    if cookie:
        extra.append((b"set-cookie", cookie.encode("latin-1")))
    await _send(send, 303, b"", "text/plain", extra)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, line: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect; closing before accept refuses the handshake
        await send({"type": "websocket.close", "code": 1008})
        return
    if _is_api(scope):
        await _send(send, status, json_error(status, line), "application/json")
        return
    await _send(send, status, (line + "\n").encode(), "text/plain; charset=utf-8")


async def _too_many(scope: Scope, receive: Receive, send: Send, wait: float) -> None:
    seconds = max(1, int(wait + 0.999))
    if scope["type"] == "websocket":
        await _refuse(scope, receive, send, 429, "")
        return
    line = f"Too many wrong attempts: try again in {seconds} s."
    retry = [(b"retry-after", str(seconds).encode())]
    if _is_api(scope):
        await _send(send, 429, json_error(429, line), "application/json", retry)
        return
    await _send(send, 429, (line + "\n").encode(), "text/plain; charset=utf-8", retry)


def _login_page(message: str) -> str:
    note = f'<p class="note">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loupe: sign in</title>
<style>body{{font-family:sans-serif;max-width:22rem;margin:4rem auto}}
input{{font-size:1rem;padding:.4rem;width:100%;margin:.3rem 0}}.note{{color:#b00}}</style>
</head><body><h1>Loupe</h1>{note}
<form method="post" action="{LOGIN_PATH}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 autofocus required>
<input type="submit" value="Sign in"></form></body></html>"""
