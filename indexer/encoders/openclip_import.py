"""Importing open_clip without transformers and timm when the model needs neither.

``import open_clip`` imports transformers (for Hugging Face text towers and CoCa's
generation) and timm (for timm image towers) whether the model uses them or not: about
1.2 s of a cold ``loupe search`` on this machine, more than building ViT-B-32. open_clip
imports both inside ``try: ... except ImportError`` and works without them, so when the
model about to load is a plain CLIP (its config names no ``hf_model_name`` and no
``timm_model_name``), the first import runs with both refused to this thread alone (a
finder first on ``sys.meta_path`` for the duration; other threads import as ever). When
a later model needs one, :func:`import_open_clip` imports it and re-runs the open_clip
modules that looked for it (``hf_model``, ``timm_model``, ``coca_model``), rebinding the
classes open_clip's model and factory modules took from them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import os
import sys
import threading
import types

_OPTIONAL = ("transformers", "timm")
# the open_clip modules that import each optional package, and the names others took
_USERS = {
    "transformers": {"open_clip.hf_model": {"open_clip.model": "HFTextEncoder"},
                     "open_clip.coca_model": {"open_clip.factory": "CoCa", "open_clip": "CoCa"}},
    "timm": {"open_clip.timm_model": {"open_clip.model": "TimmModel"}},
}
_left_out: set[str] = set()  # optional packages open_clip was first imported without
_lock = threading.Lock()


def _config(model: str | None) -> dict | None:
    """The open_clip model config of a --model value, read without importing open_clip
    (None: unknown, e.g. an hf-hub: id before it is fetched)."""
    if not model or model.startswith("hf-hub:"):
        return None
    path = model.removeprefix("local-dir:")
    if model.startswith("local-dir:") or os.path.isdir(path):
        path = os.path.join(path, "open_clip_config.json")
    else:
        found = importlib.util.find_spec("open_clip")  # locates; executes nothing
        if found is None or not found.submodule_search_locations:
            return None
        path = os.path.join(list(found.submodule_search_locations)[0], "model_configs",
                            f"{model}.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else None


def needed(model: str | None) -> set[str]:
    """Which of transformers / timm open_clip needs to build ``model`` (both if unknown)."""
    cfg = _config(model)
    if cfg is None:
        return set(_OPTIONAL)
    text, vision = cfg.get("text_cfg") or {}, cfg.get("vision_cfg") or {}
    return ({"transformers"} if "hf_model_name" in text else set()) | (
        {"timm"} if "timm_model_name" in vision else set())


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuses some top-level packages to one thread's imports, and notes which it did."""

    def __init__(self, names: set[str]):
        self.names, self.thread, self.refused = names, threading.get_ident(), set()

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in self.names and threading.get_ident() == self.thread:
            self.refused.add(top)
            raise ModuleNotFoundError(f"{top} left out while open_clip imports", name=top)
        return None  # anything else: the other finders'


def import_open_clip(model: str | None = None) -> types.ModuleType:
    """``open_clip``, ready to build ``model`` (see the module docstring)."""
    with _lock:
        if "open_clip" not in sys.modules:
            refuse = _Refuse({m for m in _OPTIONAL
                              if m not in needed(model) and m not in sys.modules})
            sys.meta_path.insert(0, refuse)
            try:
                import open_clip
            finally:
                sys.meta_path.remove(refuse)
            _left_out.update(refuse.refused)
        for name in sorted(_left_out & needed(model)):
            _bring_back(name)
    import open_clip

    return open_clip


def _bring_back(name: str) -> None:
    """Import ``name`` and re-run the open_clip modules that were imported without it."""
    importlib.import_module(name)  # an ImportError here is the real one: not installed
    for module, taken in _USERS[name].items():
        fresh = importlib.reload(sys.modules[module])
        for user, attr in taken.items():
            setattr(sys.modules[user], attr, getattr(fresh, attr))
    _left_out.discard(name)
