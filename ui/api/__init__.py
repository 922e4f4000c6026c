"""Loupe's JSON API (``/api/v1``): typed bodies (pydantic 2), Starlette routes over the
library calls the CLI makes, an OpenAPI 3.1 document built from both. The UI's server
mounts the routes beside its pages (ui/server.py); ``loupe serve`` serves them alone
(:func:`serve_app`)."""

from loupe.ui.api.app import serve_app
from loupe.ui.api.common import PREFIX, ApiSettings
from loupe.ui.api.openapi import Endpoint, openapi_document
from loupe.ui.api.router import router_app
from loupe.ui.api.routes import api_routes, endpoints
from loupe.ui.api.search import warm_up

__all__ = ["PREFIX", "ApiSettings", "Endpoint", "api_routes", "endpoints",
           "openapi_document", "router_app", "serve_app", "warm_up"]
