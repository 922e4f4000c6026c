"""What Loupe's PyAV readers (video frames, audio) share: iterator plumbing, a list of
problems, and a decode loop that skips damaged packets instead of losing the good
frames around them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av

MAX_DECODE_ERRORS = 50  # undecodable packets in a row before the rest of the stream is given up
MAX_PROBLEMS = 20  # lines kept in ``problems``


def av_reason(e: Exception) -> str:
    """The first line of an (FFmpeg) error, for one-line reasons."""
    return ((getattr(e, "strerror", None) or str(e)).splitlines() or [type(e).__name__])[0]


def declared_duration(container: Any, stream: Any) -> float | None:
    """Seconds a stream says it lasts (its own duration, else the container's), or None."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


class StreamReader:
    """Base of the PyAV readers.

    A subclass opens ``self._container`` and ``self._stream`` in its constructor (so a file
    that cannot be read raises at once) and sets ``self._gen`` to the generator of its
    results. ``problems`` lists what went wrong, one line each; ``complete`` tells
    whether the stream decoded to its end without errors.
    """

    _container: Any
    _stream: Any
    _gen: Iterator[Any]

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.complete = False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the file (also done at the end of iteration)."""
        self._gen.close()
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _problem(self, msg: str) -> None:
        if msg not in self.problems and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(msg)

    def _decode_tolerant(self, what: str = "") -> Iterator[Any]:
        """Decoded frames of ``self._stream``.

        Undecodable packets are skipped and summarised in one ``problems`` line (with the
        time span they cover); a demuxer error (truncated or damaged container) ends the
        stream, as do ``MAX_DECODE_ERRORS`` bad packets in a row; either way the frames
        still buffered in the decoder are collected. Sets ``complete``.
        """
        stream = self._stream
        bad = consecutive = 0
        first_bad: float | None = None
        last_bad: float | None = None
        slot: int | None = None  # where the summary of bad packets sits in ``problems``
        clean = True
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:
                self._problem(f"stopped reading: {av_reason(e)}")
                clean = False
                break
            try:
                frames = packet.decode()  # the empty packet demux() yields at EOF flushes
            except av.FFmpegError as e:
                bad += 1
                consecutive += 1
                if packet.pts is not None and packet.time_base is not None:
                    at = float(packet.pts * packet.time_base)
                    first_bad = at if first_bad is None else min(first_bad, at)
                    last_bad = at if last_bad is None else max(last_bad, at)
                where = (f" between {first_bad:.2f} and {last_bad:.2f} s"
                         if first_bad is not None else "")
                msg = f"{bad} undecodable {what}packet(s){where}: {av_reason(e)}"
                if slot is None:
                    slot = len(self.problems)
                    self.problems.append(msg)
                else:
                    self.problems[slot] = msg
                if consecutive >= MAX_DECODE_ERRORS:
                    self._problem(f"gave up after {consecutive} undecodable packets in a row")
                    clean = False
                    break
                continue
            consecutive = 0
            yield from frames
        if not clean:  # no flush packet came: collect what is still in the decoder
            try:
                yield from stream.codec_context.decode(None)
            except av.FFmpegError:
                pass
        self.complete = clean and bad == 0
