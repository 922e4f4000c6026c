"""Whole vectors of a compressed (PQ) index, by index position, in files beside it.

A PQ index re-scores its candidates (up to 1,000 per query) with whole vectors. Read
from the store by id, that is a filtered scan per query: 208 ms for 1,000 ids at 1M
rows, 92 ms with a BTREE index on ``id``. Read from memory-mapped float32 files in
position order, it is a gather of rows from local disk or the page cache: 0.64 ms
(bench/bench_rescore_read.py, 2 cores, warm cache).

The rows lie in segment files, each written once and never changed: a rebuild writes
one, each refresh of the index one more with the rows it added (slots of deleted rows
stay, as in the index). So a reader's mapped files never change under it, whatever a
writer does meanwhile. Past ``MAX_SEGMENTS`` they are merged into one new file.
"""

from __future__ import annotations

import os
import uuid

import numpy as np

MAX_SEGMENTS = 16


class PositionVectors:
    """float32 vectors by position: rows in segment files (memory-mapped), then rows
    added since, in memory until :meth:`save`."""

    def __init__(self, dim: int, directory: str | None = None,
                 segments: list[tuple[str, int]] | None = None,
                 pending: np.ndarray | None = None):
        self.dim, self.directory = dim, directory
        self.segments = list(segments or [])  # (file name, rows)
        self._maps = [np.memmap(os.path.join(directory, name), np.float32, "r",
                                shape=(rows, dim))
                      for name, rows in self.segments if rows] if directory else []
        self._ends = np.cumsum([len(m) for m in self._maps], dtype=np.int64)
        self.saved = int(self._ends[-1]) if len(self._ends) else 0
        self.pending = (np.zeros((0, dim), np.float32) if pending is None
                        else np.ascontiguousarray(pending, np.float32).reshape(-1, dim))

    @classmethod
    def open(cls, directory: str, segments: list, dim: int) -> PositionVectors | None:
        """The saved vectors listed in an index's metadata, or None when a file is
        missing or short (the caller then reads vectors from the store)."""
        try:
            segs = [(str(name), int(rows)) for name, rows in segments]
            for name, rows in segs:
                if os.path.getsize(os.path.join(directory, name)) < rows * dim * 4:
                    return None
            return cls(dim, directory, segs)
        except (OSError, ValueError, TypeError):
            return None

    def __len__(self) -> int:
        return self.saved + len(self.pending)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Rows at ``positions`` as an (n, dim) float32 array (a copy)."""
        pos = np.asarray(positions, np.int64).reshape(-1)
        out = np.empty((len(pos), self.dim), np.float32)
        seg = np.searchsorted(self._ends, pos, side="right")
        for s in np.unique(seg):
            at = np.flatnonzero(seg == s)
            if s == len(self._maps):
                out[at] = self.pending[pos[at] - self.saved]
                continue
            local = pos[at] - (int(self._ends[s - 1]) if s else 0)
            order = np.argsort(local, kind="stable")  # read each file front to back
            out[at[order]] = self._maps[s][local[order]]
        return out

    def appended(self, vectors: np.ndarray) -> PositionVectors:
        """A copy with ``vectors`` after the last row (written by :meth:`save`). It keeps
        this one's mapped files rather than opening them again: a writer may have merged
        and removed them since (a reader refreshing beside watch mode's frequent runs)."""
        more = np.concatenate([self.pending,
                               np.asarray(vectors, np.float32).reshape(-1, self.dim)])
        out = PositionVectors(self.dim, None, None, more)
        out.directory, out.segments = self.directory, list(self.segments)
        out._maps, out._ends, out.saved = self._maps, self._ends, self.saved
        return out

    def save(self, directory: str, stem: str) -> PositionVectors:
        """Write the rows added since the last save as a new segment ``stem.vecN`` (N:
        its first row) in ``directory``, or everything as one file when the segments
        would pass ``MAX_SEGMENTS`` or lie elsewhere. Returns the saved vectors."""
        moved = self.directory is not None and os.path.abspath(
            self.directory) != os.path.abspath(directory)
        if moved or len(self.segments) + 1 > MAX_SEGMENTS:
            name = f"{stem}.vec0"
            _write(os.path.join(directory, name),
                   [*self._maps, self.pending])
            return PositionVectors(self.dim, directory, [(name, len(self))])
        if not len(self.pending):
            return self
        name = f"{stem}.vec{self.saved}"
        _write(os.path.join(directory, name), [self.pending])
        return PositionVectors(self.dim, directory, [*self.segments, (name, len(self.pending))])


def _write(path: str, blocks: list[np.ndarray]) -> None:
    """Write the rows of ``blocks`` to ``path`` whole (a temporary name, renamed)."""
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"  # this process's own
    with open(tmp, "wb") as f:
        for block in blocks:
            for start in range(0, len(block), 65536):
                f.write(np.ascontiguousarray(block[start:start + 65536], np.float32).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
