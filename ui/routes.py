"""HTTP routes beside the Streamlit app: an item's file, streamed to the browser's player.

``GET /loupe/file/{item_id}`` serves the file of an item only while it is the file that
was indexed (``loupe.search.open_item``), straight from the checked descriptor, a chunk
at a time, with byte ranges (players seek with them). Nothing is read whole, so memory
stays flat whatever the file's size. The server that mounts these routes puts its
access control in front of them.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from loupe.indexer import LoupeError
from loupe.search import FileChanged, FileGone, ItemFile, Store, open_item

FILE_ROUTE = "/loupe/file"
CHUNK = 256 * 1024
HEADERS = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; sandbox"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def file_url(item_id: str, page_url: str | None = None) -> str:
    """The URL of an item's file on the route, for ``st.video`` / ``st.audio``.

    They take only absolute URLs, so it is made on the origin of ``page_url`` (the
    page's own URL, ``st.context.url``); without one (a headless run) on the server's
    configured browser address.
    """
    parts = urlsplit(page_url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        origin = f"{parts.scheme}://{parts.netloc}"
    else:
        from streamlit import config

        origin = (f"http://{config.get_option('browser.serverAddress')}:"
                  f"{config.get_option('browser.serverPort')}")
    return f"{origin}{FILE_ROUTE}/{quote(item_id, safe='')}"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) asked by a ``Range`` header; None for the whole file (no
    header, or one this route ignores: several ranges, another unit, malformed).
    ValueError when the range cannot be satisfied."""
    m = _RANGE.fullmatch((header or "").strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # an invalid header, ignored (RFC 9110 14.1.1)
    if start >= size:
        raise ValueError("range starts past the end")
    return start, size if last == "" else min(int(last) + 1, size)


class _FileStream(StreamingResponse):
    """Bytes [start, end) of a checked item file, read a chunk at a time in a worker
    thread; the file is closed however the response ends (done, client gone, error)."""

    def __init__(self, item: ItemFile, start: int, end: int, status: int,
                 headers: dict[str, str], body: bool):
        self.item = item
        super().__init__(self._chunks(start, end) if body else _nothing(), status,
                         headers, item.media_type)

    async def _chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        fd, pos = self.item.fileno(), start
        while pos < end:
            data = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, end - pos), pos)
            if not data:  # the file was cut short while being sent
                raise OSError(f"{self.item.path} ended early")
            pos += len(data)
            yield data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.item.close()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing (a HEAD response)


def stream_item(item: ItemFile, request: Request) -> Response:
    """The response that sends a checked, open item file (closed once sent): 200 with
    all of it, 206 with the ``Range`` asked, 416 (no body) when that cannot be met; a
    HEAD request gets the headers only. The file routes and the JSON API send files so."""
    size = item.size
    try:
        asked = byte_range(request.headers.get("range"), size)
    except ValueError:
        item.close()
        return Response(status_code=416, headers={**HEADERS,
                                                  "Content-Range": f"bytes */{size}"})
    start, end = asked or (0, size)
    headers = {**HEADERS, "Content-Length": str(end - start)}
    if asked is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return _FileStream(item, start, end, 206 if asked else 200, headers,
                       body=request.method != "HEAD")


def file_routes(db: str) -> list[BaseRoute]:
    """The routes that serve the files of the index at ``db`` (mount them in the app's
    server): ``GET``/``HEAD /loupe/file/{item_id}``.

    200 with the whole file, or 206 with the asked byte range (416 when it cannot be
    satisfied); 404 for what is not an item of the index; 409 (410 when gone) with a
    one-line reason when the file is not the one that was indexed.
    """
    lock = threading.Lock()  # one Store, used by one thread at a time
    stores: list[Store] = []

    def check(item_id: str) -> ItemFile:
        with lock:
            if not stores:
                stores.append(Store(db))
            return open_item(stores[0], item_id)

    async def serve(request: Request) -> Response:
        item_id = request.path_params["item_id"]
        try:
            item = await anyio.to_thread.run_sync(check, item_id)
        except FileChanged as e:
            return PlainTextResponse(str(e), 410 if isinstance(e, FileGone) else 409,
                                     headers={"Cache-Control": "no-store"})
        except LoupeError:
            return PlainTextResponse("no such item in this index", 404,
                                     headers={"Cache-Control": "no-store"})
        return stream_item(item, request)

    return [Route(FILE_ROUTE + "/{item_id}", serve, methods=["GET", "HEAD"])]
