"""Content fingerprints: equal bytes -> equal fingerprint, whatever the path.

Files up to ``FULL_HASH_LIMIT`` are hashed whole (photos: the bytes are read for
decoding anyway). Larger files (videos) are fingerprinted from their size and
``SAMPLES`` evenly spaced 1 MiB chunks, so moving a 20 GB film costs milliseconds;
the ``s:`` prefix marks such sampled fingerprints.
"""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

FULL_HASH_LIMIT = 64 * 1024 * 1024
CHUNK = 1024 * 1024
SAMPLES = 16


def fingerprint_bytes(data: bytes) -> str:
    """Fingerprint of a whole file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint_file(path: str, size: int | None = None) -> str:
    """Fingerprint of a file on disk (whole-file hash, or sampled when large)."""
    if size is None:
        size = os.path.getsize(path)
    with open(path, "rb") as f:
        return fingerprint_open(f, size)


def fingerprint_open(f: BinaryIO, size: int) -> str:
    """Fingerprint of an open file of ``size`` bytes, read from its start (a small file
    is hashed a chunk at a time: the same digest as :func:`fingerprint_bytes`)."""
    h = hashlib.blake2b(digest_size=16)
    if size <= FULL_HASH_LIMIT:
        f.seek(0)
        while chunk := f.read(CHUNK):
            h.update(chunk)
        return h.hexdigest()
    h.update(str(size).encode())
    for i in range(SAMPLES):
        f.seek((size - CHUNK) * i // (SAMPLES - 1))
        h.update(f.read(CHUNK))
    return "s:" + h.hexdigest()
