"""Loupe's vocabulary: the kinds of rows, files, model inputs and skip records.

Each is a ``StrEnum`` whose values are the strings stored in the tables and in
``meta.json`` ("photo", "bad", ...), so a member compares, hashes, formats and
serialises exactly as its stored string does, and an index written before these
names existed reads the same.
"""

from __future__ import annotations

from enum import StrEnum


class ItemKind(StrEnum):
    """What one row of the items table is."""

    PHOTO = "photo"  # a still picture: one row per file
    FRAME = "frame"  # a sampled video frame, with its timestamp
    AUDIO = "audio"  # a window of sound (an audio file's or a video's soundtrack)


class MediaKind(StrEnum):
    """What a source file holds, as told from its content (files table ``media``)."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


class Modality(StrEnum):
    """An input a model embeds, and so a kind of query term."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


class SkipCode(StrEnum):
    """Why a file has no rows (skipped table ``code``)."""

    BAD = "bad"  # unreadable, corrupt, truncated, refused...
    UNSUPPORTED = "unsupported"  # a media kind this run cannot index (retried later)
    NOT_MEDIA = "not-media"  # content is not media (not shown as a problem)


PICTURE_KINDS: tuple[ItemKind, ...] = (ItemKind.PHOTO, ItemKind.FRAME)  # rows with pixels

__all__ = ["ItemKind", "MediaKind", "Modality", "PICTURE_KINDS", "SkipCode"]
