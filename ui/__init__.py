"""Loupe's Streamlit web UI (`loupe ui`) and its JSON API (`loupe serve`): they call the
public names of loupe.search and loupe.indexer only. Its own public names (how to start
them) are for the CLI; the API's are loaded on first use (pydantic and Starlette are not
imported by commands that do not serve)."""

from typing import Any

from loupe.ui.launch import (
    API_KEY_ENV,
    TOKEN_ENV,
    check_oidc,
    is_loopback,
    new_token,
    read_password,
    served_names,
    ui_command,
    ui_url,
)

_API = ("ApiSettings", "router_app", "serve_app", "warm_up")

__all__ = ["API_KEY_ENV", "TOKEN_ENV", "ApiSettings", "GateConfig", "check_oidc",
           "is_loopback", "new_token", "password_digest", "read_password", "router_app",
           "serve_app",
           "served_names", "shared_encoders", "ui_command", "ui_url", "warm_up"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from loupe.ui import api

        return getattr(api, name)
    if name == "shared_encoders":
        from loupe.ui import services

        return services.shared_encoders
    if name in ("GateConfig", "password_digest"):
        from loupe.ui import gate

        return getattr(gate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
