"""Grounding what the index knows: items, files, video moments, with the store's cache.

A target is a stored item (by id), an image file, or a moment of a video. Its cache key
is its *content* (the file's fingerprint, plus the timestamp for a video frame), the
prompt, the model (id and weights) and the generation length, so a renamed file keeps
its answers and an edited one does not. CLI (``loupe ground``) and UI share this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
from PIL import Image

from loupe.indexer.errors import LoupeError
from loupe.indexer.fingerprint import fingerprint_file
from loupe.indexer.kinds import PICTURE_KINDS, ItemKind, MediaKind
from loupe.indexer.media.image import ImageDecodeError, upright_image_file
from loupe.indexer.media.sniff import kind_from_extension, sniff
from loupe.search.explain.grounding.draw import contact_sheet, draw_grounding
from loupe.search.explain.grounding.kosmos2 import Grounder, Grounding, normalise_prompt
from loupe.search.store import Store, scan, upsert, where_in

# Cached Kosmos-2 answers: one row per (content, prompt, model, generation settings).
GROUNDINGS = "groundings"
GROUNDINGS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # hash of everything below but result
        pa.field("content", pa.string()),  # fingerprint of the file [@ video timestamp]
        pa.field("prompt", pa.string()),
        pa.field("model", pa.string()),  # model id @ weights id
        pa.field("result", pa.string()),  # the Grounding as JSON
        pa.field("created", pa.float64()),
    ]
)


def cached_groundings(store: Store, keys: Sequence[str]) -> dict[str, str]:
    """{key: result JSON} of the cached groundings among ``keys``."""
    t = store.table(GROUNDINGS, lambda: GROUNDINGS_SCHEMA, create=False)
    out: dict[str, str] = {}
    if t is None:
        return out
    for where in where_in("key", keys):
        for row in scan(t, ["key", "result"], where).to_pylist():
            out[row["key"]] = row["result"]
    return out


def cache_groundings(store: Store, rows: list[dict]) -> None:
    """Insert or replace grounding cache rows by key, in one commit."""
    if rows:
        upsert(store.table(GROUNDINGS, lambda: GROUNDINGS_SCHEMA), "key", rows,
               GROUNDINGS_SCHEMA)

_ITEM_ID = re.compile(r"^[0-9a-f]{24}$")


@dataclass
class Target:
    """Something to ground."""

    path: str
    timestamp: float | None = None  # a video moment
    item_id: str | None = None
    fingerprint: str | None = None

    @property
    def label(self) -> str:
        """How people see it: the path, and the time for a video moment."""
        return self.path if self.timestamp is None else f"{self.path} @ {self.timestamp:.3f} s"

    @property
    def content(self) -> str:
        """The content part of the cache key."""
        fp = self.fingerprint or _fingerprint(self.path)
        return fp if self.timestamp is None else f"{fp}@{self.timestamp:.6f}"

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"path": self.path, "timestamp": self.timestamp, "item_id": self.item_id}


def _fingerprint(path: str) -> str:
    try:
        return fingerprint_file(path, os.path.getsize(path))
    except OSError as e:
        raise LoupeError(f"cannot read {path}: {e.strerror or e}") from e


def resolve_target(ref: str, store: Store | None = None, at: float | None = None) -> Target:
    """A target from what a person typed: a stored item id, or a file path.

    A video file needs ``at`` (seconds; the frame on screen then is grounded).
    """
    if store is not None and _ITEM_ID.match(ref) and not os.path.exists(ref):
        row = store.get_items([ref]).get(ref)
        if row is None:
            raise LoupeError(f"no item {ref} in the index at {store.dir}")
        ts = row["timestamp"] if row["kind"] == ItemKind.FRAME else None
        if row["kind"] not in PICTURE_KINDS:
            raise LoupeError(f"item {ref} is a sound window: only pictures can be grounded")
        return Target(row["path"], ts if at is None else at, ref,
                      row["fingerprint"] if at is None else None)
    path = os.path.abspath(ref)
    if not os.path.isfile(path):
        raise LoupeError(f"no such file or item id: {ref}")
    try:
        with open(path, "rb") as f:
            kind = sniff(f.read(64)) or kind_from_extension(path)
    except OSError as e:
        raise LoupeError(f"cannot read {path}: {e.strerror or e}") from e
    if kind == MediaKind.VIDEO:
        if at is None:
            raise LoupeError(f"{ref} is a video: say which moment with --at SECONDS, or "
                             "ground sampled frames with --video")
        return Target(path, float(at))
    if at is not None:
        raise LoupeError(f"--at is for videos; {ref} is not one")
    return Target(path)


def target_image(t: Target) -> Image.Image:
    """The picture of a target (full size, upright RGB); its exact time for a frame."""
    from loupe.indexer.media.video import VideoDecodeError, frame_at

    try:
        if t.timestamp is not None:
            image, t.timestamp = frame_at(t.path, t.timestamp)
            return image
        return upright_image_file(t.path)
    except (ImageDecodeError, VideoDecodeError) as e:
        raise LoupeError(f"cannot read {t.label}: {e}") from e


def cache_key(content: str, prompt: str, grounder: Grounder, max_new_tokens: int) -> str:
    """The cache key of one answer."""
    raw = "\0".join([content, prompt, grounder.model_id, grounder.weights_id,
                     str(max_new_tokens)])
    return hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class GroundResult:
    """A target's grounding, and whether it came from the cache."""

    target: Target
    grounding: Grounding
    cached: bool

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"target": self.target.as_dict(), "cached": self.cached,
                **self.grounding.to_dict()}


def ground_targets(grounder: Grounder, targets: Sequence[Target], prompt: str | None = None,
                   store: Store | None = None, batch_size: int = 8,
                   max_new_tokens: int = 64, use_cache: bool = True,
                   images: Sequence[Image.Image] | None = None) -> list[GroundResult]:
    """Ground each target with one prompt: cached answers first, the rest in batches.

    ``images``: the targets' pictures when the caller has them already (else decoded
    here). New answers are written to ``store``'s cache (when given) in one commit.
    """
    prompt = normalise_prompt(prompt)
    keys = [cache_key(t.content, prompt, grounder, max_new_tokens) for t in targets]
    hits = cached_groundings(store, keys) if (store is not None and use_cache) else {}
    out: list[GroundResult | None] = [None] * len(targets)
    todo = []
    for i, (t, k) in enumerate(zip(targets, keys, strict=True)):
        if k in hits:
            out[i] = GroundResult(t, Grounding.from_dict(json.loads(hits[k])), True)
        else:
            todo.append(i)
    if todo:
        pics = [images[i] if images is not None else target_image(targets[i]) for i in todo]
        answers = grounder.ground(pics, prompt, batch_size=batch_size,
                                  max_new_tokens=max_new_tokens)
        rows = []
        for i, g in zip(todo, answers, strict=True):
            out[i] = GroundResult(targets[i], g, False)
            rows.append({"key": keys[i], "content": targets[i].content, "prompt": prompt,
                         "model": f"{grounder.model_id}@{grounder.weights_id}",
                         "result": json.dumps(g.to_dict()), "created": time.time()})
        if store is not None:
            cache_groundings(store, rows)
    return [r for r in out if r is not None]


def ground_video(grounder: Grounder, path: str, every: float = 1.0, prompt: str | None = None,
                 store: Store | None = None, batch_size: int = 8, max_new_tokens: int = 64,
                 use_cache: bool = True,
                 shot_threshold: float | None = 0.35) -> Iterator[tuple[GroundResult, Image.Image]]:
    """Ground a video's sampled frames (one per ``every`` seconds plus shot changes),
    streaming: frames are decoded, grounded and yielded one batch at a time.

    Yields ``(result, frame image)`` in time order.
    """
    from loupe.indexer.media.video import VideoDecodeError, sample_frames

    path = os.path.abspath(path)
    fp = _fingerprint(path)
    try:
        sampler = sample_frames(path, every, shot_threshold)
    except VideoDecodeError as e:
        raise LoupeError(f"cannot read {path} as video: {e}") from e
    batch: list[tuple[Target, Image.Image]] = []

    def flush() -> Iterator[tuple[GroundResult, Image.Image]]:
        results = ground_targets(grounder, [t for t, _ in batch], prompt, store, batch_size,
                                 max_new_tokens, use_cache, [im for _, im in batch])
        yield from zip(results, [im for _, im in batch], strict=True)
        batch.clear()

    with sampler:
        for fr in sampler:
            batch.append((Target(path, fr.timestamp, fingerprint=fp), fr.image))
            if len(batch) >= batch_size:
                yield from flush()
        if batch:
            yield from flush()


def ground_video_to_dir(grounder: Grounder, path: str, every: float = 1.0,
                        prompt: str | None = None, store: Store | None = None,
                        batch_size: int = 8, max_new_tokens: int = 64, use_cache: bool = True,
                        out_dir: str | None = None,
                        sheet: str | None = None) -> Iterator[GroundResult]:
    """Ground a video's sampled frames (:func:`ground_video`) and write them out.

    ``out_dir`` (made if needed): ``groundings.jsonl``, one answer a line, flushed as
    each comes, and every frame with its boxes as ``frame_SSSSSS.sss.jpg`` (the moment
    in seconds). ``sheet``: a contact sheet of the boxed frames, written after the last
    one. Yields each result in time order, once its files are written.
    """
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    tiles: list[tuple[Image.Image, str]] = []
    jsonl = open(os.path.join(out_dir, "groundings.jsonl"), "w",  # noqa: SIM115
                 encoding="utf-8") if out_dir else None
    try:
        for res, image in ground_video(grounder, path, every, prompt, store, batch_size,
                                       max_new_tokens, use_cache):
            if jsonl:
                jsonl.write(json.dumps(res.as_dict(), ensure_ascii=False) + "\n")
                jsonl.flush()
            if out_dir or sheet:
                drawn = draw_grounding(image, res.grounding)
                if out_dir:
                    drawn.save(os.path.join(out_dir, f"frame_{res.target.timestamp:010.3f}.jpg"),
                               quality=90)
                if sheet:
                    drawn.thumbnail((640, 640))
                    tiles.append((drawn, f"{res.target.timestamp:.1f} s: {res.grounding.caption}"))
            yield res
    finally:
        if jsonl:
            jsonl.close()
    if sheet and tiles:
        contact_sheet(tiles).save(sheet)
