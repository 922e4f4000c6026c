"""The JSON API's routes (``/api/v1/...``): Starlette handlers over the library calls the
CLI and the UI make (ui/api/search.py, items.py, explain.py), on the process's shared
services (ui/services.py).

Every request is read and checked here (sizes, fields), then its work runs in a worker
thread (``anyio.to_thread``): the event loop never decodes, embeds or searches. Errors
are JSON lines (ui/api/errors.py), a wrong method a 405, any other path under ``/api/``
a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio.to_thread
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from loupe.indexer import LoupeError
from loupe.ui.api import explain, items
from loupe.ui.api import models as m
from loupe.ui.api import search as searches
from loupe.ui.api.common import PREFIX, ApiSettings
from loupe.ui.api.errors import body_json, error_response, parsed, status_of
from loupe.ui.api.openapi import Endpoint, openapi_document
from loupe.ui.routes import stream_item
from loupe.ui.services import log_unexpected

SMALL_BODY = 16 * 1024  # bodies without uploads (grounding)
ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _handled(methods: tuple[str, ...], fn: Callable[[Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
    """``fn`` answering errors as JSON: a LoupeError with its status and its one line,
    anything else as 500 (its traceback to stderr only)."""
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    async def run(request: Request) -> Response:
        if request.method not in allowed:
            return error_response(405, f"{request.url.path} answers "
                                       f"{' and '.join(sorted(set(methods)))}, not "
                                       f"{request.method}", {"Allow": ", ".join(methods)})
        try:
            return await fn(request)
        except LoupeError as e:
            return error_response(status_of(e), str(e))
        except Exception as e:
            log_unexpected(f"{request.method} {request.url.path}", e)
            return error_response(500, f"Something went wrong: {type(e).__name__}")

    return run


def _json(data: Any) -> Response:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


async def _thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(partial(fn, *args))


def _query(request: Request, model: type[BaseModel]) -> Any:
    return parsed(model, dict(request.query_params))


def _item_id(request: Request) -> str:
    return request.path_params["item_id"]


# -- the route table --------------------------------------------------------------------
def endpoints(settings: ApiSettings) -> list[Endpoint]:
    """Every route of the API with its handler (the OpenAPI route is added by
    :func:`api_routes`)."""
    reader = items.Readers(settings.db)

    async def post_search(request: Request) -> Response:
        req = parsed(m.SearchRequest, await body_json(request, settings.max_body))
        return _json(await _thread(searches.search, settings, req))

    async def get_status(request: Request) -> Response:
        return _json(await _thread(searches.status, settings))

    async def get_item(request: Request) -> Response:
        return _json(await _thread(reader.call, items.record, _item_id(request)))

    async def get_thumbnail(request: Request) -> Response:
        side = _query(request, m.ThumbnailQuery).side
        data = await _thread(reader.call, items.thumbnail, _item_id(request), side)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def get_file(request: Request) -> Response:
        item = await _thread(reader.call, items.opened, _item_id(request))
        response = stream_item(item, request)
        if response.status_code == 416:
            return error_response(416, "the range asked for starts past the end of the file",
                                  {"Content-Range": response.headers["content-range"]})
        return response

    async def get_similar(request: Request) -> Response:
        q = _query(request, m.SimilarQuery)
        return _json(await _thread(searches.similar, settings, _item_id(request), q))

    async def post_grounding(request: Request) -> Response:
        req = parsed(m.GroundingRequest, await body_json(request, SMALL_BODY))
        return _json(await _thread(explain.grounding, settings, _item_id(request), req))

    async def get_tags(request: Request) -> Response:
        q = _query(request, m.TagsQuery)
        return _json(await _thread(explain.tags, settings, _item_id(request), q))

    async def get_attribution(request: Request) -> Response:
        q = _query(request, m.AttributionQuery)
        return _json(await _thread(explain.attribution, settings, _item_id(request), q))

    async def get_duplicates(request: Request) -> Response:
        q = _query(request, m.DuplicatesQuery)
        return _json(await _thread(explain.duplicates, settings, q))

    item = "/items/{item_id}"
    return [
        Endpoint("/status", ("GET",), get_status, "The index: counts, models, version, "
                 "folders, the server's kind, watch state", answer=m.Status),
        Endpoint("/search", ("POST",), post_search, "Search by words, pictures, sounds, "
                 "the text shown, with every filter of `loupe search`", body=m.SearchRequest,
                 answer=m.SearchResponse, errors=(400, 413, 422, 503)),
        Endpoint(item, ("GET",), get_item, "An item's record", answer=m.ItemRecord,
                 errors=(404,)),
        Endpoint(item + "/thumbnail", ("GET",), get_thumbnail, "An item's thumbnail (JPEG)",
                 query=m.ThumbnailQuery, answer="image/jpeg", errors=(404, 409, 410, 422)),
        Endpoint(item + "/file", ("GET", "HEAD"), get_file, "An item's file, with Range "
                 "(only while it is the file that was indexed)", answer="application/"
                 "octet-stream", errors=(404, 409, 410, 416)),
        Endpoint(item + "/similar", ("GET",), get_similar, "More like this item",
                 query=m.SimilarQuery, answer=m.SearchResponse, errors=(400, 404, 422)),
        Endpoint(item + "/grounding", ("POST",), post_grounding, "Kosmos-2: a caption whose "
                 "phrases cite boxes", body=m.GroundingRequest, answer=m.Grounding,
                 errors=(400, 404, 413, 422, 429, 503)),
        Endpoint(item + "/tags", ("GET",), get_tags, "Zero-shot tags of a picture",
                 query=m.TagsQuery, answer=m.Tags, errors=(400, 404, 422, 429, 503)),
        Endpoint(item + "/attribution", ("GET",), get_attribution, "Whose style, in what "
                 "share", query=m.AttributionQuery, answer=m.Attribution,
                 errors=(400, 404, 422, 429, 503)),
        Endpoint("/duplicates", ("GET",), get_duplicates, "Groups of identical and near-"
                 "identical items", query=m.DuplicatesQuery, answer=m.Duplicates,
                 errors=(400, 422, 429)),
    ]


def api_routes(settings: ApiSettings) -> list[BaseRoute]:
    """The API's Starlette routes (mount them in a server, behind the gate), the OpenAPI
    document at ``/api/v1/openapi.json`` included; any other path under ``/api/`` is a
    JSON 404."""
    table = endpoints(settings)
    document: list[dict] = []

    async def get_openapi(request: Request) -> Response:
        if not document:
            document.append(openapi_document(table, PREFIX))
        return _json(document[0])

    async def unknown(request: Request) -> Response:
        return error_response(404, f"no such route: {request.url.path} (see "
                                   f"{PREFIX}/openapi.json)")

    # Every method reaches the handler, which answers a wrong one with a JSON 405.
    routes: list[BaseRoute] = [Route(PREFIX + e.path, _handled(e.methods, e.handler),
                                     methods=ANY_METHOD) for e in table]
    routes.append(Route(PREFIX + "/openapi.json", _handled(("GET",), get_openapi),
                        methods=ANY_METHOD))
    routes.append(Route("/api/{rest:path}", _handled(ANY_METHOD, unknown),
                        methods=ANY_METHOD))
    return routes
