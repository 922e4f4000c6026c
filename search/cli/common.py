"""What the ``loupe`` commands share: exit codes, the --db / --model arguments, opening
the index, and the ways a terminal line shows paths, moments and progress."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from loupe.indexer import LoupeError, precise_clock

clock = precise_clock  # 1:02:03.5 / 2:03.5 / 3.50s: the moments of search hits
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

MODELS_HELP = ("open_clip model name (ViT-B-32, ...), hf-hub:ORG/REPO, imagebind_huge, or a "
               "local folder with open_clip_config.json or imagebind_config.json + weights")
DEVICE_HELP = "auto, cpu, cuda, cuda:1, mps"


def add_db(p: argparse.ArgumentParser) -> None:
    """--db DIR: the index directory."""
    p.add_argument("--db", metavar="DIR", default=None,
                   help="index directory (default: $LOUPE_DB, else the per-user data dir)")


def add_encoder(p: argparse.ArgumentParser, for_query: bool) -> None:
    """--model / --pretrained / --device / --precision of the embedding model(s): one for
    a query, repeatable for an index run (each --pretrained goes with its --model)."""
    if for_query:
        p.add_argument("--model", default=None,
                       help=f"{MODELS_HELP} (default: the index's first model that embeds every "
                            "term of the query)")
        p.add_argument("--pretrained", default=None,
                       help="pretrained tag or local weight file of --model")
    else:
        p.add_argument("--model", action="append", default=None,
                       help=f"{MODELS_HELP}; repeat for several models, each its own vector "
                            "column (default: the index's models, else ViT-B-32)")
        p.add_argument("--pretrained", action="append", default=None,
                       help="pretrained tag (laion2b_s34b_b79k, ...) or a local weight file; "
                            "the n-th --pretrained goes with the n-th --model")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                   help="auto (default; also LOUPE_PRECISION): fp16 on CUDA, bf16 on CPUs "
                        "with native bf16 (AVX512-BF16, AMX: about 2x faster, cosine with "
                        "fp32 > 0.9999), else fp32; fp32 forces full precision")


def add_server_options(p: argparse.ArgumentParser) -> None:
    """What ``loupe serve`` and ``loupe ui`` share: TLS, Kosmos-2, the bounds of one query,
    and watch mode (the server keeps the folders the index was built from indexed)."""
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="TLS certificate (HTTPS)")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="TLS private key")
    p.add_argument("--grounding-model", default=None, metavar="NAME_OR_DIR",
                   help="Kosmos-2 for grounding (hub id or local folder)")
    p.add_argument("--max-upload-mb", type=int, default=50,
                   help="largest query picture or sound upload, in MB (50)")
    p.add_argument("--max-upload-pixels", type=int, default=None, metavar="N",
                   help="largest query picture in pixels, checked before it is decoded "
                        "(50,000,000)")
    p.add_argument("--max-sound-seconds", type=float, default=None, metavar="S",
                   help="of a query sound, only the first S seconds are used (60)")
    p.add_argument("--watch", action="store_true",
                   help="keep the index's folders indexed while serving (new, changed, "
                        "moved and deleted files)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="with --watch: look for changes every SECONDS by walking the "
                        "folders (default: file-system events; polling on network mounts)")


def check_server_options(args: argparse.Namespace) -> None:
    """LoupeError (one line) when :func:`add_server_options`' values make no sense."""
    if args.max_upload_mb < 1:
        raise LoupeError("--max-upload-mb must be at least 1")
    if args.max_upload_pixels is not None and args.max_upload_pixels < 1:
        raise LoupeError("--max-upload-pixels must be at least 1")
    if args.max_sound_seconds is not None and not args.max_sound_seconds > 0:
        raise LoupeError("--max-sound-seconds must be more than 0")
    if args.poll is not None and not args.watch:
        raise LoupeError("--poll goes with --watch")
    if args.poll is not None and not args.poll > 0:
        raise LoupeError("--poll must be a positive number of seconds")


def db_dir(args: argparse.Namespace) -> str:
    """The absolute index directory of ``--db`` (else $LOUPE_DB, else the per-user one)."""
    from loupe.search import default_db_dir

    return os.path.abspath(args.db or default_db_dir())


def existing_store(db: str):
    """The Store at ``db`` when an index is there, else None (nothing is created)."""
    from loupe.search import Store

    return Store(db) if os.path.exists(os.path.join(db, "meta.json")) else None


def open_store(args: argparse.Namespace, required: bool = True):
    """The index of ``--db``: None when there is none, unless ``required`` (then Store
    says there is none, in one line)."""
    from loupe.search import Store

    return Store(db_dir(args)) if required else existing_store(db_dir(args))


def shown(path: str) -> str:
    """A path for a terminal line: quoted when it holds control characters (newlines...)."""
    return repr(path) if any(ord(c) < 32 or ord(c) == 127 for c in path) else path


def date_range(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """Local calendar days (YYYY-MM-DD, both included) as [since, until) epoch seconds
    (``loupe.search.day_range``: the JSON API reads them with it too)."""
    from loupe.search import day_range

    return day_range(since, until)


def progress_bar(total_hint: str) -> Callable[[int, int], None] | None:
    """An on_progress(done, total) callback drawing a bar on a terminal (else None)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=total_hint, unit="item", leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update
