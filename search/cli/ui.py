"""``loupe ui``: serve the Streamlit web UI on an index, behind its gate.

On this machine (the default) the UI needs a per-launch key, printed in the address to
open; beyond it (``--host``) viewers sign in with the password of ``--password-file``,
over TLS when ``--tls-cert``/``--tls-key`` are given. Each launch also makes an API key
for the JSON API the server carries (``Authorization: Bearer KEY``), written with the
address in the index folder's server file for the server's life.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from loupe.indexer import LoupeError
from loupe.search.cli.common import (
    EXIT_OK,
    add_db,
    add_server_options,
    check_server_options,
    db_dir,
)
from loupe.ui import (
    API_KEY_ENV,
    TOKEN_ENV,
    check_oidc,
    is_loopback,
    new_token,
    read_password,
    ui_command,
    ui_url,
)

NAME = "ui"
__all__ = ["register", "run", "tls_pair", "ui_command"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe ui`` to the subparsers."""
    p = sub.add_parser(NAME, help="open the web UI (Streamlit) on this index",
                       description="Serve the web UI: search by words, image or sound, look "
                                   "at hits, ground them. It listens on 127.0.0.1 only and "
                                   "needs the key in the address it prints, unless --host "
                                   "says otherwise (then viewers sign in with a password).")
    add_db(p)
    p.add_argument("--port", type=int, default=8501, help="port (8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; another address "
                        "exposes the UI and every indexed file to whoever signs in, and needs "
                        "--password-file)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name browsers reach this server by (a DNS name of this "
                        "machine, a proxy's name); repeatable")
    p.add_argument("--password-file", default=None, metavar="FILE",
                   help="the password viewers sign in with (its first line; 8 characters or "
                        "more); needed with --host")
    p.add_argument("--auth", choices=["oidc"], default=None,
                   help="oidc: viewers sign in with the team's identity provider (Streamlit's "
                        "st.login; its [auth] settings from --oidc-secrets or Streamlit's "
                        "secrets.toml)")
    p.add_argument("--oidc-secrets", default=None, metavar="TOML",
                   help="a secrets file with the [auth] table of the identity provider")
    p.add_argument("--no-browser", action="store_true",
                   help="do not open a browser on the address")
    p.add_argument("--allow-indexing", action="store_true",
                   help="keep the page's 'Index a folder' action when --host exposes the UI "
                        "(it is always on for 127.0.0.1)")
    add_server_options(p)


def tls_pair(cert: str | None, key: str | None) -> tuple[str, str] | None:
    """The absolute paths of --tls-cert and --tls-key (None when neither is given);
    LoupeError when only one is, or one is not a file."""
    if bool(cert) != bool(key):
        raise LoupeError("give both --tls-cert and --tls-key (or neither)")
    if not cert or not key:
        return None
    for path in (cert, key):
        if not os.path.isfile(path):
            raise LoupeError(f"{path} is not a file")
    return os.path.abspath(cert), os.path.abspath(key)


def _checked(args: argparse.Namespace) -> tuple[str, str, tuple[str, str] | None]:
    """(scheme, shown host, TLS files) once the flags make sense; LoupeError otherwise."""
    check_server_options(args)
    if not 0 < args.port < 65536:
        raise LoupeError("--port must be between 1 and 65535")
    tls = tls_pair(args.tls_cert, args.tls_key)
    if args.auth == "oidc":
        if args.password_file:
            raise LoupeError("give --password-file or --auth oidc, not both")
        check_oidc(args.oidc_secrets)
    elif args.oidc_secrets:
        raise LoupeError("--oidc-secrets goes with --auth oidc")
    elif args.password_file:
        read_password(args.password_file)  # a clear error now, not in the server's log
    elif not is_loopback(args.host):
        raise LoupeError(f"serving on {args.host} lets anyone who reaches this machine in: "
                         "give --password-file FILE (a password viewers sign in with) or "
                         "--auth oidc")
    if not is_loopback(args.host) and tls is None:
        print(f"loupe: warning: serving on {args.host} without TLS: passwords and pictures "
              "cross the network in clear (give --tls-cert and --tls-key)", file=sys.stderr)
    return ("https" if tls else "http"), args.host, tls


def run(args: argparse.Namespace) -> int:
    """Serve the UI until Ctrl-C (the server inherits this environment, LOUPE_* included)."""
    import subprocess

    from loupe.search import Store, announced

    db = db_dir(args)
    Store(db)  # a clear error now if there is no index there
    scheme, host, tls = _checked(args)
    env = dict(os.environ)
    token = None
    if not (args.password_file or args.auth):
        token = env[TOKEN_ENV] = new_token()
    api_key = env[API_KEY_ENV] = new_token()
    cmd = ui_command(db, args.port, host, args.grounding_model, args.max_upload_mb,
                     args.allow_indexing, tuple(args.allow_host), args.password_file, tls,
                     args.auth, args.oidc_secrets, args.max_upload_pixels,
                     args.max_sound_seconds, args.watch, args.poll)
    url = ui_url(scheme, host, args.port, token)
    print(f"Loupe UI for {db} at {url} (Ctrl-C stops it)", file=sys.stderr)
    # The API's address for this machine's clients: loopback for a wildcard, as printed.
    api_url = ui_url(scheme, host, args.port).rstrip("/")
    with announced(db, api_url, api_key, NAME):
        proc = subprocess.Popen(cmd, env=env)
        # `kill PID` of this process stops the server with it (and the server file goes)
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            if not args.no_browser and _has_display():
                import webbrowser

                webbrowser.open(url)
            code = proc.wait()
        except KeyboardInterrupt:  # Ctrl-C: the terminal told the server too; make sure
            _stop(proc)
            return EXIT_OK
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGINT) else code


def _stop(proc) -> None:
    """End the server process: asked first, killed when it has not ended in 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except Exception:  # subprocess.TimeoutExpired, or a second Ctrl-C
        proc.kill()
        proc.wait()


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
