"""Kosmos-2 grounding (phrases and boxes) of stored items, files and video moments: the
model (``kosmos2``), the cache of its answers (``cache``) and the drawings (``draw``).
"""

from loupe.indexer.lazy import exports

_EXPORTS = {
    "DEFAULT_PROMPT": "loupe.search.explain.grounding.kosmos2",
    "Grounder": "loupe.search.explain.grounding.kosmos2",
    "Grounding": "loupe.search.explain.grounding.kosmos2",
    "load_grounder": "loupe.search.explain.grounding.kosmos2",
    "normalise_prompt": "loupe.search.explain.grounding.kosmos2",
    "GroundResult": "loupe.search.explain.grounding.cache",
    "Target": "loupe.search.explain.grounding.cache",
    "cache_key": "loupe.search.explain.grounding.cache",
    "cached_groundings": "loupe.search.explain.grounding.cache",
    "ground_targets": "loupe.search.explain.grounding.cache",
    "ground_video": "loupe.search.explain.grounding.cache",
    "ground_video_to_dir": "loupe.search.explain.grounding.cache",
    "resolve_target": "loupe.search.explain.grounding.cache",
    "target_image": "loupe.search.explain.grounding.cache",
    "contact_sheet": "loupe.search.explain.grounding.draw",
    "draw_grounding": "loupe.search.explain.grounding.draw",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
