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
    """Local calendar days (YYYY-MM-DD, both included) as [since, until) epoch seconds."""
    import datetime as dt

    def day(text: str, flag: str) -> dt.datetime:
        try:
            return dt.datetime.strptime(text, "%Y-%m-%d")
        except ValueError as e:
            raise LoupeError(f"{flag} wants a day like 2024-06-30, not {text!r}") from e

    lo = day(since, "--since").timestamp() if since else None
    hi = (day(until, "--until") + dt.timedelta(days=1)).timestamp() if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise LoupeError("--since is after --until")
    return lo, hi


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
