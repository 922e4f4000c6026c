"""Loupe's indexer: scan -> decode -> embed -> write.

The stages live in sub-packages: ``scan`` (walk the roots), ``media`` (bytes to pixels,
frames and sound windows), ``decode`` (worker processes), ``encoders`` (the Encoder
seam and its backends) and ``pipeline`` (the run: diff, embed, write). The public names
below are loaded on first use (see ``loupe.indexer.lazy``).
"""

from loupe.indexer.lazy import exports

# Bound here, not lazily: the submodule loupe.indexer.scan would shadow a lazy name.
from loupe.indexer.scan import scan as scan

_EXPORTS = {
    "LoupeError": "loupe.indexer.errors",
    "ItemKind": "loupe.indexer.kinds",
    "MediaKind": "loupe.indexer.kinds",
    "Modality": "loupe.indexer.kinds",
    "SkipCode": "loupe.indexer.kinds",
    "PICTURE_KINDS": "loupe.indexer.kinds",
    "sniff": "loupe.indexer.media.sniff",
    "picture_format": "loupe.indexer.media.sniff",
    "QUERY_FORMATS": "loupe.indexer.media.image",
    "QUERY_MAX_PIXELS": "loupe.indexer.media.image",
    "AudioPreprocess": "loupe.indexer.encoders",
    "Backend": "loupe.indexer.encoders",
    "Encoder": "loupe.indexer.encoders",
    "EncoderSet": "loupe.indexer.encoders",
    "EncoderSpec": "loupe.indexer.encoders",
    "ImagePreprocess": "loupe.indexer.encoders",
    "LazyEncoder": "loupe.indexer.encoders",
    "DEFAULT_MODEL": "loupe.indexer.encoders",
    "DEFAULT_PRETRAINED": "loupe.indexer.encoders",
    "encoder_from_spec": "loupe.indexer.encoders",
    "licence": "loupe.indexer.encoders",
    "load_encoder": "loupe.indexer.encoders",
    "register_backend": "loupe.indexer.encoders",
    "same_source": "loupe.indexer.encoders",
    "clock": "loupe.indexer.timecode",
    "precise_clock": "loupe.indexer.timecode",
    "IndexOptions": "loupe.indexer.pipeline",
    "encoders_for_run": "loupe.indexer.pipeline",
    "IndexReport": "loupe.indexer.pipeline",
    "index_paths": "loupe.indexer.pipeline",
    "start_watch": "loupe.indexer.pipeline",
    "watch_roots": "loupe.indexer.pipeline",
    "Watcher": "loupe.indexer.pipeline",
    "WatchState": "loupe.indexer.pipeline",
    "BatchSummary": "loupe.indexer.pipeline",
    "RootState": "loupe.indexer.pipeline",
}
__all__ = sorted([*_EXPORTS, "scan"])
__getattr__, __dir__ = exports(__name__, _EXPORTS)
