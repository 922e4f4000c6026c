"""What the backends share about where weights come from: the device to run on, a weight
file's content hash, and whether the Hugging Face hub can be reached (offline here)."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager

from loupe.indexer.errors import LoupeError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; anything else is checked."""
    import torch

    if device in ("auto", "", None):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoupeError(f"--device {device} asked for, but torch sees no CUDA GPU")
    return device


def file_sha256(path: str) -> str:
    """sha256 of a weight file, cached by (path, size, mtime) in the user cache dir."""
    from platformdirs import user_cache_dir

    st = os.stat(path)
    key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    cache = os.path.join(user_cache_dir("loupe", appauthor=False), "weight-hashes.json")
    try:
        with open(cache, encoding="utf-8") as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = "sha256:" + h.hexdigest()
    known[key] = digest
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = cache + f".{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(known, f)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only home only costs re-hashing
    return digest


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (False at once when HF_HUB_OFFLINE is set).

    Without this check a machine with no network spends ~45 s in retries before
    huggingface_hub gives up, even when the weights are already in its cache.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def hub_offline(offline: bool):
    """Put huggingface_hub in offline mode (cache only) for the duration, if asked."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
