"""The server of ``loupe serve``: the JSON API and the file routes, no Streamlit page,
behind the same gate as the UI (ui/gate.py)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from loupe.ui.api.common import PREFIX, ApiSettings
from loupe.ui.api.errors import error_response
from loupe.ui.api.routes import api_routes
from loupe.ui.gate import ASGIApp, Gate, GateConfig
from loupe.ui.routes import file_routes


def serve_app(settings: ApiSettings, gate: GateConfig) -> ASGIApp:
    """The ASGI app that ``loupe serve`` runs: the API (``/api/v1``) and
    ``/loupe/file/{item_id}``, every request through the gate."""

    async def elsewhere(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no such route: {request.url.path} (the API is under "
                                   f"{PREFIX}: see {PREFIX}/openapi.json)")

    app = Starlette(routes=[*api_routes(settings), *file_routes(settings.db)],
                    exception_handlers={404: elsewhere})
    return Gate(app, gate)
