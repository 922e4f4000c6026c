"""Loupe's web server: the Streamlit UI (app.py) behind the gate (gate.py), with
Loupe's own routes (the file route and the JSON API, ui/api), as one ASGI app
(Streamlit's ``st.App``). The pages and the API share the process's loaded models.

Started by ``loupe ui`` as ``streamlit run <loupe.ui>/server.py -- --db DIR ...`` with
the keys in the environment (``LOUPE_UI_TOKEN`` and ``LOUPE_API_KEY``, never on the
command line, where other users of the machine could read them). Started by hand without
one, it makes a key and prints the address to open. The settings next to it
(``.streamlit/config.toml``) keep it on this machine unless told otherwise.
"""

from __future__ import annotations

import os
import sys

import streamlit as st
from starlette.middleware import Middleware

from loupe.ui.api import ApiSettings, api_routes
from loupe.ui.core import parse_args
from loupe.ui.gate import Gate
from loupe.ui.launch import GATED_ENV, gate_config
from loupe.ui.oidc import read_auth_secrets
from loupe.ui.routes import file_routes
from loupe.ui.watching import ensure_watching, watch_state

_ARGS = parse_args(sys.argv[1:])
os.environ[GATED_ENV] = "1"  # the pages refuse to render when not served from here

# --auth oidc: Streamlit's sign-in settings ([auth]) from the file given, else from
# Streamlit's own secrets.toml places
_SECRETS = read_auth_secrets(_ARGS.oidc_secrets) if _ARGS.oidc_secrets else None
ensure_watching(_ARGS)  # `loupe ui --watch`: the watcher runs in this server process


def _api() -> ApiSettings:
    from streamlit import config

    upload_mb = int(config.get_option("server.maxUploadSize") or 50)
    return ApiSettings(_ARGS.db, "ui", _ARGS.query_limits, _ARGS.grounding_model,
                       max_body=upload_mb * 2**20 * 4 // 3 + 64 * 1024,
                       watch=(lambda: watch_state(_ARGS.db)) if _ARGS.watch else None)


app = st.App("app.py", routes=[*file_routes(_ARGS.db), *api_routes(_api())],
             secrets=_SECRETS,
             middleware=[Middleware(Gate, config=gate_config(_ARGS))])
