"""Errors as the API answers them: ``{"error": {"status": N, "message": "one line"}}``.

The message of a LoupeError is its text, the line the CLI prints after ``loupe: error:``
for the same problem; its HTTP status says which kind of problem it is.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from loupe.indexer import LoupeError
from loupe.search import FileChanged, FileGone
from loupe.ui.gate import json_error
from loupe.ui.services import Busy, ModelUnavailable

M = TypeVar("M", bound=BaseModel)
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(LoupeError):
    """A LoupeError with the HTTP status it is answered with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def status_of(error: LoupeError) -> int:
    """The HTTP status of a library error."""
    if isinstance(error, ApiError):
        return error.status
    for kind, status in ((FileGone, 410), (FileChanged, 409), (Busy, 429),
                         (ModelUnavailable, 503)):
        if isinstance(error, kind):
            return status
    return 400


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> Response:
    """The JSON answer of an error (one line)."""
    line = " ".join(str(message).split()) or "error"
    extra = {"Retry-After": "2"} if status == 429 else {}
    return Response(json_error(status, line), status, {**HEADERS, **extra, **(headers or {})},
                    media_type="application/json")


def invalid(error: ValidationError) -> ApiError:
    """A 422 naming the first field pydantic refused (``terms.0.data: Field required``)."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    msg = str(first.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    return ApiError(422, f"{where}: {msg}")


def parsed(model: type[M], data: object) -> M:
    """``data`` as ``model``; ApiError 422 when it is not one."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid(e) from None


async def body_json(request: Request, limit: int) -> object:
    """The request's JSON body, read at most ``limit`` bytes (413 beyond; 400 when it is
    not JSON)."""
    declared = request.headers.get("content-length")
    too_big = ApiError(413, f"the request is too large: at most {_size(limit)} are taken "
                            "(uploads count as their base64)")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not JSON: {e}") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"
