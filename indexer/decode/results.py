"""What decoding hands back: the settings a worker decodes with, the items of a file
and where their model inputs lie (inline for a photo, spilled to raw files for a video
or a sound), and the parts of a video decoded in segments. Plain data, picklable: it
crosses from worker processes (and Ray tasks) to the embedder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from loupe.indexer.encoders.spec import AudioPreprocess, ImagePreprocess
from loupe.indexer.errors import IndexFault
from loupe.indexer.media.capture import Capture
from loupe.indexer.media.image import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:  # PyAV is imported only by workers that meet a video or a sound
    from loupe.indexer.media.segments import SegmentEdges


@dataclass(frozen=True)
class DecodeSettings:
    """Everything a worker needs besides the file (sent once per worker)."""

    preprocesses: tuple[ImagePreprocess, ...]  # one model input per distinct preprocessing
    audio: AudioPreprocess | None = None  # decode sound (files, soundtracks) when set
    max_pixels: int = DEFAULT_MAX_PIXELS
    draft_factor: float | None = 2.0
    frame_interval: float = 1.0  # seconds between sampled video frames
    shot_threshold: float | None = 0.35  # histogram distance of a cut; None: no detection
    spill_dir: str | None = None  # where video/audio model inputs are spilled


@dataclass
class Item:
    """Metadata of one item decoded from a file (its model input lies elsewhere)."""

    kind: str  # "photo", "frame" or "audio"
    timestamp: float | None = None  # seconds (frames: pts exact; audio: window start)
    end: float | None = None  # audio windows: end of the real audio
    shot: int | None = None
    silent: bool | None = None
    width: int | None = None
    height: int | None = None
    src: int = 0  # row of this item's input in its spill (frames and windows counted apart)


SPILL_HEADROOM = 64 << 20  # bytes the spill leaves free on its disk (at most 1/20 of it)


def ensure_room(spill_dir: str, nbytes: int, what: str) -> None:
    """Refuse (:class:`IndexFault`) to spill ``nbytes`` for ``what`` when the spill
    folder's disk has not that much free (plus a margin): said before decoding a long
    video, instead of filling the disk half way through it."""
    import shutil

    try:
        disk = shutil.disk_usage(spill_dir)
    except OSError as e:
        raise IndexFault.of(spill_dir, e) from e
    if nbytes + min(SPILL_HEADROOM, disk.total // 20) > disk.free:
        raise IndexFault(
            f"the index folder {os.path.dirname(os.path.dirname(spill_dir))} is too full for "
            f"{what}: it needs about {_mib(nbytes)} of model inputs spilled and the disk "
            f"has {_mib(disk.free)} free; free some space, or sample it less often "
            "(--every); the work committed so far is kept")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


@dataclass
class Spill:
    """Model inputs of one file appended to raw files: read with :meth:`arrays`.

    A key's rows may lie in several files (a long video decoded in segments): ``files``
    lists them in row order with their row counts.
    """

    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # key -> parts
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # key -> one row's shape
    dtypes: dict[str, str] = field(default_factory=dict)

    def append(self, spill_dir: str, stem: str, key: str, row: np.ndarray) -> None:
        """Append one input row under ``key``. A failed write is the index's fault
        (:class:`IndexFault`: a full or read-only disk), not the source file's."""
        try:
            if key not in self.files:
                path = os.path.join(spill_dir, f"{stem}.{key}.bin")
                self.files[key] = [(path, 0)]
                self.shapes[key], self.dtypes[key] = row.shape, row.dtype.str
                open(path, "wb").close()
            path, count = self.files[key][-1]
            with open(path, "ab") as f:
                f.write(np.ascontiguousarray(row).tobytes())
        except OSError as e:
            raise IndexFault.of(spill_dir, e) from e
        self.files[key][-1] = (path, count + 1)

    def rows(self, key: str) -> int:
        """How many rows ``key`` holds."""
        return sum(n for _, n in self.files.get(key, []))

    def extend(self, other: Spill) -> None:
        """Take ``other``'s rows after this one's (their files are shared, not copied)."""
        for key, parts in other.files.items():
            if key in self.files and (self.shapes[key], self.dtypes[key]) != (
                    other.shapes[key], other.dtypes[key]):
                raise ValueError(f"spill {key!r}: rows of different shapes")
            self.files.setdefault(key, []).extend(parts)
            self.shapes[key], self.dtypes[key] = other.shapes[key], other.dtypes[key]

    def arrays(self) -> dict[str, np.ndarray | _Rows]:
        """{key: memory-mapped (count, *shape) array (or rows across several files)}."""
        out: dict[str, np.ndarray | _Rows] = {}
        for k, parts in self.files.items():
            maps = [np.memmap(p, dtype=self.dtypes[k], mode="r", shape=(n, *self.shapes[k]))
                    for p, n in parts if n]
            if maps:
                out[k] = maps[0] if len(maps) == 1 else _Rows(maps)
        return out

    def remove(self) -> None:
        """Delete the spilled files."""
        for parts in self.files.values():
            for p, _ in parts:
                try:
                    os.unlink(p)
                except OSError:
                    pass


class _Rows:
    """Rows of several memory-mapped arrays read as one: ``rows[i]`` for an int ``i``."""

    def __init__(self, parts: list[np.ndarray]):
        self.parts = parts
        self.ends = np.cumsum([len(a) for a in parts])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        k = int(np.searchsorted(self.ends, i, side="right"))
        return self.parts[k][i - (int(self.ends[k - 1]) if k else 0)]


@dataclass
class FileResult:
    """The outcome for one file."""

    path: str
    size: int
    mtime_ns: int
    kind: str | None = None  # media: "image", "video", "audio" or None (not media)
    fingerprint: str | None = None
    items: list[Item] = field(default_factory=list)
    pixels: tuple[np.ndarray, ...] | None = None  # a photo's inputs, one per preprocessing
    spill: Spill | None = None  # inputs of a video's / audio file's items
    duration: float | None = None
    sound: bool = False  # sound was looked at (an audio model was on)
    reused: bool = False  # fingerprint already has vectors: not decoded
    code: str | None = None  # skip code when not indexed
    reason: str | None = None
    problem: str | None = None  # indexed, but something went wrong (damaged tail...)
    decoded_from: str | None = None  # a camera raw's: "raw preview WxH" or "... demosaic"
    capture: Capture | None = None  # what its metadata says (None: not read, not media)
    # a long video to decode in segments: the start of each segment after the first
    # (stream time base; see loupe.indexer.media.video.plan_segments). Nothing decoded yet.
    segments: list[int] | None = None

    @property
    def width(self) -> int | None:
        return self.items[0].width if self.items else None

    @property
    def height(self) -> int | None:
        return self.items[0].height if self.items else None


SOUNDTRACK = -1  # the part number of a split video's sound


@dataclass
class PartResult:
    """One part of a video decoded in segments: a segment's frames, or its soundtrack."""

    part: int  # segment number, or SOUNDTRACK
    items: list[Item]
    spill: Spill
    problems: list[str]
    error: str | None = None  # why this part gave nothing
    edges: SegmentEdges | None = None  # a segment's (None for the soundtrack)
