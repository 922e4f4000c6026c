"""The API's OpenAPI 3.1 document, built from its route table (ui/api/routes.py) and its
models' JSON schemas (pydantic 2 writes JSON Schema 2020-12, which OpenAPI 3.1 uses as
is). Served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from loupe.ui.api import models as m

REF = "#/components/schemas/{model}"
STATUS_WORDS = {400: "Bad request", 401: "No key, or a wrong one", 403: "Refused (a foreign "
                "Host or Origin)", 404: "No such item", 405: "Another method", 409: "The file "
                "changed since it was indexed", 410: "The file is gone", 413: "Too large",
                416: "The range cannot be met", 422: "An invalid field", 429: "Too many "
                "wrong keys, or busy: try again", 503: "The model's weights are not there"}


@dataclass(frozen=True)
class Endpoint:
    """One route of the API, as served (ui/api/routes.py) and as documented here."""

    path: str  # under the prefix, with {item_id}
    methods: tuple[str, ...]
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    answer: type[BaseModel] | str | None = None  # a model, or a media type for bytes
    errors: tuple[int, ...] = ()


def _schemas(endpoints: list[Endpoint]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({(model, mode): its $ref schema}, components.schemas)."""
    wanted: list[tuple[type[BaseModel], str]] = [(m.Error, "serialization")]
    for e in endpoints:
        if e.body is not None:
            wanted.append((e.body, "validation"))
        if isinstance(e.answer, type):
            wanted.append((e.answer, "serialization"))
    wanted = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(wanted, ref_template=REF)
    return refs, top.get("$defs", {})


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "{item_id}" in e.path:
        out.append({"name": "item_id", "in": "path", "required": True,
                    "description": "an item's id (from a search's hits)",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"}})
    if e.query is not None:
        schema = e.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", None)
            prop.pop("title", None)
            param = {"name": name, "in": "query", "required": name in required,
                     "schema": prop}
            if description:
                param["description"] = description
            out.append(param)
    return out


def _error(status: int, error_ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": STATUS_WORDS.get(status, "An error"),
            "content": {"application/json": {"schema": error_ref}}}


def openapi_document(endpoints: list[Endpoint], prefix: str, version: str = "1") -> dict:
    """The OpenAPI 3.1 document of ``endpoints`` served under ``prefix``."""
    refs, components = _schemas(endpoints)
    error_ref = refs[(m.Error, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for e in [*endpoints]:
        for method in e.methods:
            op: dict[str, Any] = {"summary": e.summary,
                                  "operationId": _operation_id(method, e.path)}
            params = _parameters(e)
            if params:
                op["parameters"] = params
            if e.body is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": refs[(e.body, "validation")]}}}
            if isinstance(e.answer, type):
                ok = {"description": "OK", "content": {"application/json": {
                    "schema": refs[(e.answer, "serialization")]}}}
            else:
                ok = {"description": "OK", "content": {e.answer or "application/json": {
                    "schema": {"type": "string", "format": "binary"}}}}
            responses = {"200": ok}
            if e.path.endswith("/file"):
                responses["206"] = {"description": "The byte range asked (Range)",
                                    "content": {"application/octet-stream": {
                                        "schema": {"type": "string", "format": "binary"}}}}
            for status in sorted({401, 403, *e.errors}):
                responses[str(status)] = _error(status, error_ref)
            op["responses"] = responses
            paths.setdefault(prefix + e.path, {})[method.lower()] = op
    paths[prefix + "/openapi.json"] = {"get": {
        "summary": "This document", "operationId": "get_openapi",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {
            "application/json": {"schema": {"type": "object"}}}},
            "401": _error(401, error_ref), "403": _error(403, error_ref)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loupe", "version": version,
                 "description": "Search an archive of photos, video and sound by words, by "
                                "example, by the text shown in its pictures (ocr: terms) "
                                "and by what the camera knew. Every request needs "
                                "the server's API key as `Authorization: Bearer KEY` (it is "
                                "in the index folder's .server.json). Errors are "
                                '`{"error": {"status": N, "message": "one line"}}`, the '
                                "line the CLI prints for the same problem."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "the API key of the server file, or (with "
                                      "--password-file) the password"}}},
        "security": [{"apiKey": []}],
    }


def _operation_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.split("/") if p]
    return "_".join([method.lower(), *words]).replace("-", "_")
