"""Batches the items of many files per model input, embeds them, hands rows to the writer.

Photos, frames and sound windows of different files share batches. A file's record
goes to the writer once its last item is embedded (and its spill is then deleted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loupe.indexer.decode.results import FileResult, Item
from loupe.indexer.kinds import ItemKind, MediaKind, Modality
from loupe.indexer.pipeline.options import IndexReport
from loupe.indexer.pipeline.plan import Column
from loupe.indexer.pipeline.writer import ReuseBook, Writer


@dataclass
class _Pending:
    """A file being embedded: its items wait in the batch queues until all are done."""

    result: FileResult
    need: frozenset[str]  # vector columns to compute for its items
    left: int = 0  # items not yet embedded
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # spilled inputs


class Embedder:
    """See the module docstring."""

    def __init__(self, columns: list[Column], writer: Writer, report: IndexReport,
                 batch_size: int, reuse: ReuseBook):
        self.columns, self.writer, self.report = columns, writer, report
        self.batch_size = batch_size
        self.book = reuse
        self.all_columns = frozenset(c.name for c in columns)
        self.queues: dict[str, list[tuple[_Pending, Item]]] = {
            Modality.IMAGE: [], Modality.AUDIO: []}
        self.files: dict[str, _Pending] = {}

    def add(self, r: FileResult, need: frozenset[str]) -> None:
        book = self.book
        if r.kind == MediaKind.IMAGE and r.fingerprint is not None and need == self.all_columns:
            # Identical content decoded twice in one run: embed it once.
            if r.fingerprint in book.run_photos:
                book.waiting.append(r)
                return
            if r.fingerprint in book.twins:
                book.twins[r.fingerprint].append(r)
                return
            book.twins[r.fingerprint] = []
        p = _Pending(r, need, left=len(r.items))
        if r.spill is not None:
            p.arrays = r.spill.arrays()
        self.files[r.path] = p
        if not r.items:
            self._done(p)
            return
        for item in r.items:
            q = Modality.AUDIO if item.kind == ItemKind.AUDIO else Modality.IMAGE
            self.queues[q].append((p, item))
        for q in self.queues:
            while len(self.queues[q]) >= self.batch_size:
                self._embed(q, self.batch_size)

    def flush(self) -> None:
        for q in self.queues:
            while self.queues[q]:
                self._embed(q, self.batch_size)

    def drop(self, path: str) -> None:
        """Forget a file's queued items (it turned out bad on a retry)."""
        p = self.files.pop(path, None)
        if p is not None:
            for q in self.queues:
                self.queues[q] = [(f, i) for f, i in self.queues[q] if f is not p]
            self._remove_spill(p)

    def discard(self) -> None:
        """Drop everything queued (interrupted run) and delete the spills."""
        for p in list(self.files.values()):
            self._remove_spill(p)
        self.files.clear()
        for q in self.queues:
            self.queues[q] = []

    @staticmethod
    def _remove_spill(p: _Pending) -> None:
        p.arrays = {}
        if p.result.spill is not None:
            p.result.spill.remove()

    @staticmethod
    def _input(p: _Pending, item: Item, key: str) -> np.ndarray:
        if p.result.pixels is not None:  # a photo: inputs inline
            return p.result.pixels[int(key[3:])]
        return p.arrays[key][item.src]

    def _embed(self, q: str, n: int) -> None:
        batch, self.queues[q] = self.queues[q][:n], self.queues[q][n:]
        vectors: list[dict[str, np.ndarray]] = [{} for _ in batch]
        sound = q == Modality.AUDIO
        for c in self.columns:
            if sound and not c.audio:
                continue
            rows = [i for i, (p, _) in enumerate(batch) if c.name in p.need]
            if not rows:
                continue
            key = "audio" if sound else f"img{c.image_input}"  # the spill's input keys
            inputs = np.stack([self._input(batch[i][0], batch[i][1], key) for i in rows])
            out = c.encoder.embed_audio(inputs) if sound else c.encoder.embed_pixels(inputs)
            for i, v in zip(rows, out, strict=True):
                vectors[i][c.name] = v.astype(np.float32)
        for (p, item), vecs in zip(batch, vectors, strict=True):
            self.writer.add_item(p.result, item, vecs)
            if item.kind == ItemKind.PHOTO and p.need == self.all_columns:
                self.book.run_photos[p.result.fingerprint] = (vecs, item.width, item.height)
                self.book.waiting.extend(self.book.twins.pop(p.result.fingerprint, []))
            self.report.embedded += 1
            p.left -= 1
            if p.left == 0:
                self._done(p)

    def _done(self, p: _Pending) -> None:
        self.report.count_items([i.kind for i in p.result.items])
        self.writer.add_file(p.result, len(p.result.items))
        self.files.pop(p.result.path, None)
        self._remove_spill(p)
