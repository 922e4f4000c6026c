"""The entry point of a sharded index (``loupe serve --shards URL,...``): every search is
asked of each shard replica (``loupe serve --shard I/N``) at once, and their answers are
merged into one top k (:func:`loupe.search.merge_hits`). It holds no index and loads no
model; each shard embeds the query itself.

A file lives wholly in one shard, so the merge is exact for relevance order (tested
against one index of all the shards). Orders and filters that need the whole ranking at
once (``sort`` by date, whose floor is relative to the best hit; ``hide_duplicates``
across shards) are refused rather than answered approximately.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from loupe.indexer import LoupeError
from loupe.search import ServerInfo, client, merge_hits
from loupe.ui.api.common import MAX_HITS, PREFIX, check_k
from loupe.ui.api.errors import HEADERS, error_response
from loupe.ui.gate import Gate, GateConfig

MAX_BODY = 96 * 2**20  # a search with its uploads, as a shard takes it
SHARD_TIMEOUT = 120.0  # seconds a shard may take to answer one search


def _shard(url: str, key: str | None) -> ServerInfo:
    return ServerInfo(url.rstrip("/"), 0, "", "serve", key, 0.0)


def ask_shards(shards: list[str], key: str | None, method: str, path: str,
               body: dict | None = None) -> list[dict]:
    """Every shard's answer to one request, asked at once; LoupeError (one line) when a
    shard refuses it or does not answer."""
    def one(url: str) -> dict:
        try:
            return client.call(_shard(url, key), method, path, body, SHARD_TIMEOUT)
        except client.NoAnswer as e:
            raise LoupeError(f"shard {url} did not answer: {e}") from e

    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        return list(pool.map(one, shards))


def merged_search(shards: list[str], key: str | None, body: dict) -> dict:
    """A SearchRequest answered by all the shards: the hits [offset, offset + k) of their
    merged ranking, as one server's SearchResponse."""
    k, offset = int(body.get("k", 10)), int(body.get("offset", 0))
    check_k(k, offset)
    if body.get("sort", "relevance") != "relevance":
        raise LoupeError("a sharded index answers in relevance order only: a date order "
                         "keeps hits near the best one, which no single shard knows")
    if body.get("hide_duplicates") is not None:
        raise LoupeError("hide_duplicates is not answered across shards: a copy in "
                         "another shard would not be seen")
    t0 = time.perf_counter()
    answers = ask_shards(shards, key, "POST", f"{PREFIX}/search",
                         {**body, "k": offset + k, "offset": 0})
    hits = merge_hits([a["hits"] for a in answers], offset + k)[offset:]
    return {"hits": hits, "column": answers[0]["column"],
            "seconds": time.perf_counter() - t0,
            "load_seconds": max(a["load_seconds"] for a in answers), "hidden": 0,
            "offset": offset, "k": k}


def router_app(shards: list[str], key: str | None, gate: GateConfig) -> ASGIApp:
    """The entry point's ASGI app: ``POST /api/v1/search`` and ``GET /api/v1/status``,
    behind the gate; ``key``: the bearer the shards take (LOUPE_API_KEY)."""

    async def search(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return error_response(413, f"the request is over {MAX_BODY // 2**20} MiB")
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            answer = await run_in_threadpool(merged_search, shards, key, body)
        except (ValueError, TypeError) as e:
            return error_response(422, f"not a search request: {e}")
        except LoupeError as e:
            return error_response(400 if "did not answer" not in str(e) else 502, str(e))
        return JSONResponse(answer, headers=HEADERS)

    async def status(request: Request) -> Response:
        try:
            each = await run_in_threadpool(ask_shards, shards, key, "GET", f"{PREFIX}/status")
        except LoupeError as e:
            return error_response(502, str(e))
        counts: dict[str, int] = {}
        for s in each:
            for kind, n in s["counts"].items():
                counts[kind] = counts.get(kind, 0) + n
        return JSONResponse({"shards": [{"url": u, **s} for u, s in zip(shards, each,
                                                                       strict=True)],
                             "items": sum(counts.values()), "counts": counts,
                             "max_hits": MAX_HITS}, headers=HEADERS)

    app = Starlette(routes=[Route(f"{PREFIX}/search", search, methods=["POST"]),
                            Route(f"{PREFIX}/status", status, methods=["GET"])])
    return Gate(app, gate)
