"""How the UI server is configured: the gate's settings from the app's arguments, the
environment and Streamlit's own configuration (no Streamlit page code here)."""

from __future__ import annotations

import importlib.resources
import os
import secrets
import socket
import sys
from typing import TYPE_CHECKING

from loupe.indexer import LoupeError
from loupe.ui.gate import LOOPBACK_NAMES, TOKEN_PARAM, GateConfig, password_digest

TOKEN_ENV = "LOUPE_UI_TOKEN"  # the loopback key, from `loupe ui` (environment only)
API_KEY_ENV = "LOUPE_API_KEY"  # the API key (Authorization: Bearer), environment only
GATED_ENV = "LOUPE_UI_GATED"  # set by server.py: the pages are served behind the gate
if TYPE_CHECKING:
    from loupe.ui.core import AppArgs

WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def new_token() -> str:
    """A fresh per-launch key (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listening address or name) is this machine only."""
    return host.strip("[]").lower() in LOOPBACK_NAMES or host.startswith("127.")


def served_names(address: str, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The names a browser may use for this server: loopback names always, the listening
    address, ``extra`` (``--allow-host``), and for a wildcard address this machine's own
    names and addresses."""
    names = set(LOOPBACK_NAMES) | {address.strip("[]").lower()} | {e.lower() for e in extra}
    if address in WILDCARDS:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass
    return frozenset(n for n in names if n and n not in WILDCARDS)


def read_password(path: str) -> str:
    """The password in ``path`` (its first line); LoupeError when it cannot be read, is
    empty or shorter than 8 characters."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().strip()
    except OSError as e:
        raise LoupeError(f"cannot read the password file {path}: {e.strerror or e}") from e
    if len(password) < 8:
        raise LoupeError(f"the password in {path} is too short (8 characters at least)")
    return password


def gate_config(args: AppArgs) -> GateConfig:
    """The gate for this server process, from Streamlit's address, port and TLS settings
    and the app's arguments (OIDC sign-in, a password, or else the loopback key); with no
    key given (started by hand), a new one is made and the address to open is printed."""
    from streamlit import config

    address = str(config.get_option("server.address") or "0.0.0.0")
    port = int(config.get_option("server.port"))
    tls = bool(config.get_option("server.sslCertFile"))
    hosts = served_names(address, args.allow_hosts)
    api_key = os.environ.get(API_KEY_ENV) or None  # `loupe ui` makes one per launch
    if args.auth == "oidc":
        from loupe.ui.oidc import signed_in

        return GateConfig(hosts, port, signed_in=signed_in, tls=tls, api_key=api_key)
    if args.password_file:
        return GateConfig(hosts, port, password_sha256=password_digest(
            read_password(args.password_file)), tls=tls, api_key=api_key)
    if not is_loopback(address):
        raise LoupeError(f"serving on {address} needs a sign-in: give --password-file FILE "
                         "or --auth oidc")
    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = new_token()
        print(f"Loupe UI: open {ui_url('http', address, port, token)}", file=sys.stderr)
    return GateConfig(hosts, port, token=token, tls=tls, api_key=api_key)


def ui_url(scheme: str, host: str, port: int, token: str | None = None) -> str:
    """The address to open (with the key, when there is one)."""
    shown = "127.0.0.1" if host in WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}/" + (f"?{TOKEN_PARAM}={token}" if token else "")


def ui_command(db: str, port: int = 8501, host: str = "127.0.0.1",
               grounding_model: str | None = None, max_upload_mb: int = 50,
               allow_indexing: bool = False, allow_hosts: tuple[str, ...] = (),
               password_file: str | None = None, tls: tuple[str, str] | None = None,
               auth: str | None = None, oidc_secrets: str | None = None,
               max_upload_pixels: int | None = None,
               max_sound_seconds: float | None = None, watch: bool = False,
               poll: float | None = None) -> list[str]:
    """The ``streamlit run`` command line that serves the UI (tests start it the same way).
    ``watch``: the server keeps the index's folders indexed (``poll``: every so many
    seconds by walking them, instead of file-system events).

    The loopback key is not on it: pass it in the environment (``LOUPE_UI_TOKEN``).
    """
    server = str(importlib.resources.files("loupe.ui") / "server.py")
    cmd = [sys.executable, "-m", "streamlit", "run", server,
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--server.maxUploadSize", str(max_upload_mb), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none",
           "--server.fileWatcherType", "none"]
    if tls:
        cmd += ["--server.sslCertFile", tls[0], "--server.sslKeyFile", tls[1]]
    cmd += ["--", "--db", db]
    if watch:
        cmd.append("--watch")
    if poll:
        cmd += ["--poll", str(poll)]
    if grounding_model:
        cmd += ["--grounding-model", grounding_model]
    for name in allow_hosts:
        cmd += ["--allow-host", name]
    if password_file:
        cmd += ["--password-file", os.path.abspath(password_file)]
    if max_upload_pixels:
        cmd += ["--max-upload-pixels", str(max_upload_pixels)]
    if max_sound_seconds:
        cmd += ["--max-sound-seconds", str(max_sound_seconds)]
    if auth:
        cmd += ["--auth", auth]
    if oidc_secrets:
        cmd += ["--oidc-secrets", os.path.abspath(oidc_secrets)]
    if not is_loopback(host) and not allow_indexing:
        cmd.append("--no-indexing")  # strangers must not make the server index its disks
    return cmd


def check_oidc(secrets_file: str | None) -> None:
    """LoupeError unless OIDC sign-in can work: Authlib installed (Streamlit's st.login
    needs it) and, when given, a secrets file with a complete [auth] table."""
    import importlib.util

    if importlib.util.find_spec("authlib") is None:
        raise LoupeError("--auth oidc needs Authlib: pip install 'loupe-archive[oidc]'")
    if secrets_file:
        from loupe.ui.oidc import read_auth_secrets

        read_auth_secrets(secrets_file)
