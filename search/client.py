"""Asking a running server of an index (``loupe serve``, ``loupe ui``) instead of loading
the models here: how ``loupe search`` answers warm, without importing torch.

The server is found through the index folder's server file
(:func:`loupe.search.server_file.read_server`: its address and API key), asked once over
HTTP, and given up on quietly when it cannot answer for this client: nobody listens
there any more, it refuses the key, or it answers something other than the JSON API
(set ``LOUPE_DEBUG=1`` to see one ``loupe: note:`` line on stderr then). The caller then
does the work itself, so that the answer never depends on whether a server runs. A
query the server finds wrong (a bad day, a tag filter on an untagged index) is a
:class:`LoupeError` with the server's one line, the line the caller would have said.

Standard library only, and the smallest part of it: the CLI imports this module before
it knows that a server answers, and importing http.client (with email and ssl) costs
about 20 ms here, a seventh of a warm search's budget, so the one exchange is written
here on a socket.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from loupe.indexer.errors import LoupeError
from loupe.search.query_parse import Term
from loupe.search.server_file import ServerInfo, read_server

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "NoAnswer", "ServerSearch", "call",
           "find_server", "note", "query_terms", "search"]

CONNECT_TIMEOUT = 1.0  # seconds; a server on this machine accepts (or refuses) at once
READ_TIMEOUT = 600.0  # the server may load its model for this first query
# Statuses whose JSON error is about the request itself (the library's one line): said
# as they are. Any other refusal (the key: 401/403; limits, busy, a broken server:
# 413/422/429/5xx) only means this server will not answer: the caller does it itself.
SAID = frozenset({400, 404, 409, 410})
SEARCH_PATH = "/api/v1/search"


class NoAnswer(Exception):
    """The server cannot answer this client (why, in words): do the work here."""


@dataclass(frozen=True)
class ServerSearch:
    """A search answered by a server."""

    url: str  # the server's address
    response: dict  # its SearchResponse (hits, column, seconds, hidden, ...)
    seconds: float  # the whole exchange, as this client waited for it


def note(message: str) -> None:
    """One ``loupe: note:`` line on stderr, only when ``LOUPE_DEBUG`` is set."""
    if os.environ.get("LOUPE_DEBUG"):
        print(f"loupe: note: {message}", file=sys.stderr)


def query_terms(terms: Sequence[Term]) -> list[dict]:
    """Parsed terms as a SearchRequest's ``terms``: words as they are, pictures and
    sounds as their bytes (base64) with the name they were given (for their extension
    and the server's messages). OSError when a file cannot be read."""
    out: list[dict] = []
    for t in terms:
        if t.kind in ("text", "ocr"):  # words, or text shown in the pictures
            out.append({"kind": t.kind, "text": t.value, "weight": t.weight})
            continue
        import base64  # (only a query with files pays for it)

        with open(t.value, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        out.append({"kind": t.kind, "data": data, "name": t.value, "weight": t.weight})
    return out


def find_server(db_dir: str) -> ServerInfo | None:
    """The server the index at ``db_dir`` names, when this machine can reach it: a
    loopback address written on another machine (an index folder shared over the
    network) is that machine's, not this one's."""
    info = read_server(db_dir)
    if info is None:
        return None
    if info.host != socket.gethostname() and _loopback(urlsplit(info.url).hostname or ""):
        note(f"the index's server runs on {info.host}, at an address only it reaches")
        return None
    return info


def _loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def search(db_dir: str, terms: Sequence[Term], **fields) -> ServerSearch | None:
    """The answer of the server running for the index at ``db_dir`` to a search for
    ``terms`` with the SearchRequest ``fields`` (k, kind, folder, ...); None when there is
    none or it cannot answer (the caller then searches itself). LoupeError: the server's
    one line about a wrong query."""
    info = find_server(db_dir)
    if info is None:
        return None
    try:
        body = {"terms": query_terms(terms), **fields}
    except OSError as e:  # said the way a local search says it
        note(f"cannot read a query file ({e}); searching here")
        return None
    t0 = time.perf_counter()
    try:
        response = call(info, "POST", SEARCH_PATH, body)
        if not isinstance(response.get("hits"), list):
            raise NoAnswer(f"the server at {info.url} answered without hits")
    except NoAnswer as e:
        note(f"{e}; searching here")
        return None
    except LoupeError as e:
        # A query picture or sound the server will not take: it checks uploads by their
        # name and first bytes, where a search here decodes the file itself, so only a
        # search here says what a search here says about it.
        if any(t.kind not in ("text", "ocr") and t.value in str(e) for t in terms):
            note(f"the server at {info.url} refused a query file ({e}); searching here")
            return None
        raise
    return ServerSearch(info.url, response, time.perf_counter() - t0)


def call(info: ServerInfo, method: str, path: str, body: object = None,
         read_timeout: float = READ_TIMEOUT) -> dict:
    """One JSON exchange with a server, its key as the bearer: the answer's object.

    NoAnswer when the server is not there or will not answer this client; LoupeError
    with the server's message when it says the request is wrong (a status in SAID).
    """
    payload = None if body is None else json.dumps(body).encode("utf-8")
    try:
        status, data = _exchange(info, method, path, payload, read_timeout)
    except OSError as e:
        raise NoAnswer(f"the server at {info.url} did not answer ({_reason(e)})") from e
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if status == 200 and isinstance(answer, dict):
        return answer
    message = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        message = answer["error"].get("message")
    if status in SAID and isinstance(message, str) and message:
        raise LoupeError(message)
    if status in (401, 403):
        raise NoAnswer(f"the server at {info.url} refused its key (HTTP {status})")
    raise NoAnswer(f"the server at {info.url} answered HTTP {status}"
                   + (f": {message}" if message else ""))


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _exchange(info: ServerInfo, method: str, path: str, payload: bytes | None,
              read_timeout: float) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 request (Connection: close). OSError when the
    connection fails or the answer is not HTTP."""
    url = urlsplit(info.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise OSError(f"not an address: {info.url}")
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.hostname  # an ASCII name goes as bytes: no IDNA codec to import
    sock = socket.create_connection((host.encode("ascii") if host.isascii() else host, port),
                                    timeout=CONNECT_TIMEOUT)
    try:
        if url.scheme == "https":  # certificates checked as any client would
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
        sock.settimeout(read_timeout)
        head = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}",
                "Accept: application/json", "Connection: close", "User-Agent: loupe-cli"]
        if info.token:
            head.append(f"Authorization: Bearer {info.token}")
        if payload is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (payload or b""))
        return _read_response(sock)
    finally:
        sock.close()


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("the connection closed before an answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise OSError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        while len(body) < int(length):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("the connection closed in the middle of the answer")
            body += chunk
        return int(parts[1]), body[:int(length)]
    while chunk := sock.recv(65536):  # no length: the body ends with the connection
        body += chunk
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    return int(parts[1]), body


def _unchunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise OSError("a chunked answer ended early")
        try:
            size = int(data[pos:end].split(b";")[0].strip(), 16)
        except ValueError:
            raise OSError("a chunked answer is garbled") from None
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
