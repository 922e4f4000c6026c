"""``loupe ui``: serve the Streamlit web UI on an index."""

from __future__ import annotations

import argparse
import importlib.resources
import sys

from loupe.indexer import LoupeError
from loupe.search.cli.common import EXIT_OK, add_db, db_dir

NAME = "ui"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``loupe ui`` to the subparsers."""
    p = sub.add_parser(NAME, help="open the web UI (Streamlit) on this index",
                       description="Serve the web UI: search by words, image or sound, look "
                                   "at hits, ground them. It listens on 127.0.0.1 only, unless "
                                   "--host says otherwise.")
    add_db(p)
    p.add_argument("--port", type=int, default=8501, help="port (8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes "
                        "the UI and every indexed file to the network)")
    p.add_argument("--grounding-model", default=None, metavar="NAME_OR_DIR",
                   help="Kosmos-2 for grounding (hub id or local folder)")
    p.add_argument("--max-upload-mb", type=int, default=50,
                   help="largest query image/sound upload in MB (50)")
    p.add_argument("--allow-indexing", action="store_true",
                   help="keep the page's 'Index a folder' action when --host exposes the UI "
                        "(it is always on for 127.0.0.1)")


def ui_command(db: str, port: int = 8501, host: str = "127.0.0.1",
               grounding_model: str | None = None, max_upload_mb: int = 50,
               allow_indexing: bool = False) -> list[str]:
    """The ``streamlit run`` command line that serves the UI (tests start it the same way)."""
    app = str(importlib.resources.files("loupe.ui") / "app.py")
    cmd = [sys.executable, "-m", "streamlit", "run", app,
           "--server.address", host, "--server.port", str(port), "--server.headless", "true",
           "--server.maxUploadSize", str(max_upload_mb), "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer", "--client.showErrorDetails", "false",
           "--server.fileWatcherType", "none", "--", "--db", db]
    if grounding_model:
        cmd += ["--grounding-model", grounding_model]
    if host not in LOOPBACK and not allow_indexing:
        cmd.append("--no-indexing")  # strangers must not make the server index its disks
    return cmd


def run(args: argparse.Namespace) -> int:
    """Serve the UI until Ctrl-C (the server inherits this environment, LOUPE_* included)."""
    import subprocess

    from loupe.search import Store

    db = db_dir(args)
    Store(db)  # a clear error now if there is no index there
    if not 0 < args.port < 65536:
        raise LoupeError("--port must be between 1 and 65535")
    if args.max_upload_mb < 1:
        raise LoupeError("--max-upload-mb must be at least 1")
    if args.host not in LOOPBACK:
        print(f"loupe: warning: serving on {args.host}: anyone who can reach this machine can "
              "search the index and see every indexed file", file=sys.stderr)
    cmd = ui_command(db, args.port, args.host, args.grounding_model, args.max_upload_mb,
                     args.allow_indexing)
    print(f"Loupe UI for {db} at http://{args.host}:{args.port} (Ctrl-C stops it)",
          file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return EXIT_OK
