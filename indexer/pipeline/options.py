"""The knobs of an indexing run and the report of what it did."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from loupe.indexer.decode.pool import DEFAULT_SEGMENT_SECONDS, default_workers
from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.media.image import DEFAULT_MAX_PIXELS


@dataclass
class IndexOptions:
    """Knobs of an indexing run (CLI flags map onto these; their defaults are read here)."""

    batch_size: int = 32  # items per encoder call
    workers: int = field(default_factory=default_workers)  # decode processes; 0 = in-process
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images above this many pixels
    draft_factor: float | None = 2.0  # JPEG draft decode down to this multiple of model input
    frame_interval: float = 1.0  # seconds between sampled video frames
    # long videos are decoded in parallel segments of about this many seconds (None: not)
    video_segment: float | None = DEFAULT_SEGMENT_SECONDS
    shot_threshold: float | None = 0.35  # histogram distance counted as a cut (None: off)
    commit_rows: int = 256  # commit when this many rows are pending...
    commit_seconds: float = 10.0  # ...or this long has passed since the last commit
    retry_failed: bool = False  # look again at files skipped as bad
    # decode and embed on a Ray cluster: None = on this machine; "" = a local Ray;
    # "auto" or "ray://host:port" = that cluster (loupe.indexer.pipeline.ray)
    ray: str | None = None
    # the precision models run in where this run rebuilds them from their specs (Ray
    # actors); None: LOUPE_PRECISION or auto (loupe.indexer.encoders.torch_encoder)
    precision: str | None = None
    prune: bool = False  # forget the rows under roots that vanished (else they are kept)
    wait: bool = True  # another writer holds the index: wait (False: LoupeError at once)
    command: str = "loupe index"  # who holds the writer lock, for others' messages
    progress: bool = True  # show a progress bar on stderr
    # called with (files done, files to do) after each file (the web UI's progress bar)
    on_progress: Callable[[int, int], None] | None = None


@dataclass
class IndexReport:
    """What a run did (printed by the CLI, returned to callers)."""

    files_seen: int = 0
    unchanged: int = 0
    to_process: int = 0
    embedded: int = 0  # items embedded (photos, frames, sound windows)
    reused: int = 0  # files whose vectors were reused from identical content (moves, copies)
    photos: int = 0  # files indexed, by media
    videos: int = 0
    audio_files: int = 0
    frames: int = 0  # video frames written
    sound_windows: int = 0  # audio windows written (audio files and soundtracks)
    partial: int = 0  # files indexed with a problem (a damaged tail...)
    skipped: int = 0  # bad files recorded with a reason
    unsupported: int = 0  # media this run cannot index (recorded, retried later)
    not_media: int = 0
    removed: int = 0  # files gone from disk, rows deleted
    recaptured: int = 0  # files indexed before whose capture was read now (metadata only)
    tagged: int = 0  # photos and frames given zero-shot tags (an index with --tags)
    texts_read: int = 0  # pictures whose text was read (an index with --ocr)
    texts_with_text: int = 0  # of those, the ones that show some text
    texts_shared: int = 0  # frames that shared the reading of an unchanged frame
    text_lines: int = 0  # lines of text read
    kept_roots: list[str] = field(default_factory=list)  # vanished roots whose rows stay
    pruned_roots: list[str] = field(default_factory=list)  # vanished roots forgotten
    seconds: float = 0.0
    index_version: int = 0

    def as_dict(self) -> dict:
        """JSON-ready."""
        return asdict(self)

    def count_file(self, media: str | None, problem: str | None) -> None:
        """A file indexed (``problem``: only in part)."""
        if media == MediaKind.VIDEO:
            self.videos += 1
        elif media == MediaKind.AUDIO:
            self.audio_files += 1
        else:
            self.photos += 1
        if problem:
            self.partial += 1

    def count_items(self, kinds: Iterable[str]) -> None:
        """Items written for a file (photos are counted as files)."""
        for k in kinds:
            if k == ItemKind.FRAME:
                self.frames += 1
            elif k == ItemKind.AUDIO:
                self.sound_windows += 1

    def count_skip(self, code: str | None) -> None:
        """A file not indexed, by its skip code."""
        if code == SkipCode.NOT_MEDIA:
            self.not_media += 1
        elif code == SkipCode.UNSUPPORTED:
            self.unsupported += 1
        else:
            self.skipped += 1
