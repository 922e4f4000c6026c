"""Loupe's Streamlit web UI (`loupe ui`): it calls the public names of loupe.search and
loupe.indexer only. Its own public names (how to start it) are for the CLI."""

from loupe.ui.launch import (
    TOKEN_ENV,
    check_oidc,
    is_loopback,
    new_token,
    read_password,
    ui_command,
    ui_url,
)

__all__ = ["TOKEN_ENV", "check_oidc", "is_loopback", "new_token", "read_password",
           "ui_command", "ui_url"]
