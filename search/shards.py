"""Shards of one huge index: which shard a file belongs to, and the top-k merge.

A shard replica (``loupe serve --shard I/N``) keeps the rows of the files whose path
hashes to shard I of N: its FAISS index holds 1/N of the vectors, in 1/N of the memory.
A file lives wholly in one shard (all its frames and sound windows), so each shard's
grouped hits are whole, and the best k of all the shards' best k are exactly the best k
of the whole index: :func:`merge_hits`, used by the entry point that asks every shard
(``loupe serve --shards URL,...``, ui/api/router.py). That merge is the only cluster
code: the shards are ordinary replicas.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from loupe.indexer.errors import LoupeError


def shard_of(path: str, count: int) -> int:
    """The shard (0 .. count-1) of a file, by a stable hash of its path (CRC-32: the same
    on every machine and Python, unlike ``hash``)."""
    return zlib.crc32(path.encode("utf-8", "surrogateescape")) % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (shard I of N, counted from 0) as (I, N); LoupeError when malformed."""
    part, sep, whole = text.partition("/")
    try:
        index, count = int(part), int(whole)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise LoupeError(f"--shard {text!r}: give I/N, shard I of N counted from 0 (0/2, 1/2)")
    return index, count


def merge_hits(answers: Sequence[Sequence[dict]], k: int) -> list[dict]:
    """The best ``k`` of several shards' hits (``Hit.as_dict()`` form, each list best
    first), by score, ties by id: equal to the top k of one index holding every shard,
    when each shard answered with at least its own top k."""
    merged = [h for hits in answers for h in hits]
    ids = [h["id"] for h in merged]
    if len(set(ids)) != len(ids):
        raise LoupeError("two shards answered with the same item: are two replicas "
                         "serving the same shard?")
    merged.sort(key=lambda h: (-h["score"], h["id"]))
    return merged[:k]
