"""Sign-in with the team's identity provider (OpenID Connect), through Streamlit's own
``st.login``: Streamlit runs the flow and keeps the signed-in user in a signed cookie;
the gate reads that cookie to let a signed-in browser reach files and media.

Streamlit 1.67 keeps its cookie reader inside its server package; the three names used
here are pinned by the Streamlit version in pyproject and by tests/test_ui_oidc.py.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from typing import Any

from loupe.indexer import LoupeError

AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret",
             "server_metadata_url")


def read_auth_secrets(path: str) -> dict[str, Any]:
    """The ``[auth]`` table of a TOML secrets file (Streamlit's format), checked for the
    keys a provider needs; LoupeError naming what is missing."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise LoupeError(f"cannot read {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise LoupeError(f"{path} is not TOML: {e}") from e
    auth = data.get("auth")
    if not isinstance(auth, dict):
        raise LoupeError(f"{path} has no [auth] table (Streamlit's OIDC settings)")
    missing = [k for k in AUTH_KEYS if not auth.get(k)]
    if missing:
        raise LoupeError(f"the [auth] table of {path} lacks {', '.join(missing)}")
    if len(str(auth["cookie_secret"])) < 32:
        raise LoupeError(f"the cookie_secret in {path} is too short (32 characters at least)")
    return data


def signed_in(cookies: Mapping[str, str]) -> bool:
    """Whether the request's cookies hold Streamlit's signed "logged in" user."""
    from streamlit.auth_util import get_cookie_with_chunks
    from streamlit.web.server.server_util import AUTH_COOKIE_NAME, get_cookie_secret
    from streamlit.web.server.starlette.starlette_app_utils import decode_signed_value

    secret = get_cookie_secret()

    def one(name: str) -> bytes | None:
        raw = cookies.get(name)
        return None if raw is None else decode_signed_value(secret, name, raw.encode("latin-1"))

    try:
        value = get_cookie_with_chunks(one, AUTH_COOKIE_NAME)
        return bool(value) and bool(json.loads(value).get("is_logged_in"))
    except (ValueError, UnicodeError, AttributeError):
        return False
