"""``loupe serve``: the JSON API alone (no Streamlit page), for machines that only answer
programs.

It serves ``/api/v1`` and the file route behind the UI's gate, in this process (uvicorn),
with the index's models loaded once. Every launch makes an API key; the server file in
the index folder (``.server.json``, readable by its owner only) names the address and the
key for the life of the server, so ``loupe search`` and other clients on this machine
find both. Beyond loopback (``--host``) a ``--password-file`` is needed: programs then
send the password, or the key, as ``Authorization: Bearer ...``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

from loupe.indexer import LoupeError
from loupe.search.cli.common import (
    EXIT_OK,
    add_db,
    add_server_options,
    check_server_options,
    db_dir,
)
from loupe.search.cli.ui import tls_pair

NAME = "serve"
DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe serve`` to the subparsers."""
    p = sub.add_parser(NAME, help="serve the JSON API on this index (no web page)",
                       description="Serve Loupe's JSON API (/api/v1: search, items, "
                                   "thumbnails, files, more like this, grounding, tags, "
                                   "duplicates, status; its OpenAPI document at "
                                   "/api/v1/openapi.json) with the index's models loaded "
                                   "once. Programs send the key of the index folder's "
                                   ".server.json as Authorization: Bearer KEY.")
    add_db(p)
    p.add_argument("--tables-uri", default=None, metavar="URI",
                   help="serve the index whose tables are at URI (e.g. s3://bucket/loupe) as "
                        "a search replica: --db is then this replica's own folder (made if "
                        "missing; FAISS files, caches, server file), the index is read from "
                        "the tables and what the indexer writes there is picked up")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="with --tables-uri: this replica serves shard I of N (from 0) only: "
                        "the files whose path hashes there, in 1/N of the memory")
    p.add_argument("--shards", default=None, metavar="URL,URL,...",
                   help="serve no index but the entry point of a sharded one: each search is "
                        "asked of these shard replicas and their answers merged (they and "
                        "this take the key in LOUPE_API_KEY)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port ({DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; another "
                        "address needs --password-file)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name clients reach this server by; repeatable")
    p.add_argument("--password-file", default=None, metavar="FILE",
                   help="a password clients may send as their bearer (its first line; 8 "
                        "characters or more); needed with --host")
    add_server_options(p)


def _checked(args: argparse.Namespace) -> tuple[str, tuple[str, str] | None]:
    """(scheme, TLS files) once the flags make sense; LoupeError otherwise."""
    from loupe.ui import is_loopback, read_password

    if not 0 <= args.port < 65536:
        raise LoupeError("--port must be between 0 and 65535")
    check_server_options(args)
    tls = tls_pair(args.tls_cert, args.tls_key)
    if args.password_file:
        read_password(args.password_file)
    elif not is_loopback(args.host):
        raise LoupeError(f"serving on {args.host} lets anyone who reaches this machine in: "
                         "give --password-file FILE (a password clients send as their "
                         "bearer)")
    if not is_loopback(args.host) and tls is None:
        print(f"loupe: warning: serving on {args.host} without TLS: keys, passwords and "
              "pictures cross the network in clear (give --tls-cert and --tls-key)",
              file=sys.stderr)
    return ("https" if tls else "http"), tls


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); LoupeError when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        raise LoupeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.set_inheritable(False)
    return sock


def _shard_urls(args: argparse.Namespace) -> list[str]:
    """The shard replicas of --shards (checked), or [] without it."""
    if not args.shards:
        return []
    from loupe.ui import API_KEY_ENV

    urls = [u.strip().rstrip("/") for u in args.shards.split(",") if u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if not urls or bad:
        raise LoupeError(f"--shards takes the shard replicas' addresses, http(s)://HOST:PORT "
                         f"separated by commas{f', not {bad[0]!r}' if bad else ''}")
    if args.shard or args.tables_uri or args.watch:
        raise LoupeError("--shards serves no index of its own: leave out --shard, "
                         "--tables-uri and --watch")
    if not os.environ.get(API_KEY_ENV):
        raise LoupeError(f"--shards asks the shards with the key in {API_KEY_ENV}: start "
                         "the shards and this entry point with the same LOUPE_API_KEY")
    return urls


class _Stopped(Exception):
    """SIGINT or SIGTERM: stop serving (raised once the server has shut down)."""


def _stop(signum: int, frame) -> None:
    raise _Stopped(signum)


def run(args: argparse.Namespace) -> int:
    """Serve the API until SIGINT / SIGTERM (the server file is removed on the way out)."""
    import uvicorn

    from loupe.search import (
        SERVER_FILE,
        IndexMeta,
        QueryLimits,
        Store,
        announced,
        parse_shard,
    )
    from loupe.ui import (
        API_KEY_ENV,
        ApiSettings,
        GateConfig,
        is_loopback,
        new_token,
        password_digest,
        read_password,
        router_app,
        serve_app,
        served_names,
        warm_up,
    )

    db = db_dir(args)
    shards = _shard_urls(args)
    if shards:
        os.makedirs(db, exist_ok=True)  # the entry point's folder: its server file
    else:
        # a clear error now if there is no index there (or its object store refuses us);
        # with --tables-uri an empty folder becomes a replica's (of one shard: --shard)
        shard = parse_shard(args.shard) if args.shard else None
        if shard and not (args.tables_uri or IndexMeta.exists(db)):
            raise LoupeError("--shard makes a replica: give the index's --tables-uri")
        store = Store(db, tables_uri=args.tables_uri, shard=shard)
    if args.watch and (shards or store.meta.replica):
        raise LoupeError("--watch indexes, and a replica does not write the index: watch "
                         "from the indexer's folder (`loupe index --watch`)")
    scheme, tls = _checked(args)
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    key = os.environ.get(API_KEY_ENV) or new_token()
    hosts = served_names(args.host, tuple(args.allow_host))
    if args.password_file:
        gate = GateConfig(hosts, port, password_sha256=password_digest(
            read_password(args.password_file)), tls=tls is not None, api_key=key)
    else:
        gate = GateConfig(hosts, port, token=key, tls=tls is not None, api_key=key)
    watcher = None
    if args.watch:
        from loupe.indexer import start_watch
        from loupe.ui import shared_encoders

        # the folders the index was built from, embedded with the searcher's own models
        watcher = start_watch(db, poll=args.poll, encoders=shared_encoders(db))
    limits = QueryLimits()
    limits = QueryLimits(pixels=args.max_upload_pixels or limits.pixels,
                         sound_seconds=args.max_sound_seconds or limits.sound_seconds)
    settings = ApiSettings(db, "serve", limits, args.grounding_model,
                           args.max_upload_mb * 2**20 * 4 // 3 + 64 * 1024,
                           (lambda: watcher.state().as_dict()) if watcher else None)
    if is_loopback(args.host):
        shown = str(sock.getsockname()[0])
    else:
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    url = f"{scheme}://{f'[{shown}]' if ':' in shown else shown}:{port}"
    app = router_app(shards, key, gate) if shards else serve_app(settings, gate)
    config = uvicorn.Config(app, log_level="warning",
                            access_log=False, lifespan="off", ssl_certfile=tls and tls[0],
                            ssl_keyfile=tls and tls[1], timeout_graceful_shutdown=5)
    try:
        config.load()  # the TLS files are read here: a bad one is one line
    except (OSError, ValueError) as e:
        sock.close()
        raise LoupeError(f"cannot use --tls-cert / --tls-key: {e}") from e
    server = uvicorn.Server(config)
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with announced(db, url, key, NAME) as info:
            where = os.path.join(db, SERVER_FILE)
            if os.path.exists(where):
                keyed = f"its key is in {where}"
            else:  # a read-only index folder: the key has nowhere else to be told
                keyed = f"its key: {info.token} (cannot write {where})"
            print(f"Loupe API for {db} at {url}/api/v1 ({keyed}; Ctrl-C stops it)",
                  file=sys.stderr, flush=True)
            if not shards:
                threading.Thread(target=warm_up, args=(db,), name="loupe-warm",
                                 daemon=True).start()
            server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if watcher is not None:
            watcher.stop(10)
        sock.close()
    return EXIT_OK
