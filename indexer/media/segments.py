"""A long video decoded in segments, joined into exactly what one pass samples: what
each segment must report about its edges, and the join (planning the segments, by
seeking the video, is ``video.plan_segments``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance of two colour histograms, in [0, 1]."""
    return 0.5 * float(np.abs(b - a).sum())


@dataclass
class SegmentEdges:
    """What joining a segment to its neighbours needs (see :func:`join_segments`).

    Times are in the stream's time base. ``cuts`` counts the cuts after the segment's
    first frame; whether that first frame is itself a cut depends on the previous
    segment's last frame, which only the join sees.
    """

    first_pts: int | None = None
    last_pts: int | None = None
    next_pts: int | None = None  # the first frame at or after the segment's end
    first_slot: int | None = None  # interval slots of the first and last frame
    last_slot: int | None = None
    first_hist: np.ndarray | None = None  # colour histograms (shot detection)
    last_hist: np.ndarray | None = None
    cuts: int = 0
    irregular: str | None = None  # why this segment cannot be joined exactly


@dataclass
class SegmentJoin:
    """How one segment's sampled frames enter the whole video's."""

    keep_first: bool  # its first sampled frame is a sample of the whole video too
    first_cut: bool  # that frame starts a new shot
    shot_offset: int  # added to the segment's own shot numbers


def join_segments(edges: list[SegmentEdges], starts: list[int | None],
                  shot_threshold: float | None) -> list[SegmentJoin]:
    """Join segments decoded apart into exactly what one pass over the video samples.

    ``starts[k]`` is segment k's ``start_pts`` (None for the first). A segment's first
    frame is sampled by itself (it has no predecessor there); in the whole video it is
    sampled when it opens a new interval slot or is a cut from the previous segment's
    last frame. Shot numbers carry over. Raises ValueError when the segments do not
    tile the stream frame for frame (a seek that landed elsewhere, irregular
    timestamps): the caller then decodes the video in one pass.
    """
    out: list[SegmentJoin] = []
    offset = 0
    for k, e in enumerate(edges):
        if e.irregular:
            raise ValueError(f"segment {k}: {e.irregular}")
        if e.first_pts is None:
            raise ValueError(f"segment {k}: no frame decoded")
        if k == 0:
            out.append(SegmentJoin(True, False, 0))
            continue
        prev = edges[k - 1]
        if not (prev.next_pts == e.first_pts == starts[k]):
            raise ValueError(f"segment {k} starts at pts {e.first_pts}, expected {starts[k]} "
                             f"(previous segment's next frame: {prev.next_pts})")
        assert prev.last_slot is not None and e.first_slot is not None
        cut = (shot_threshold is not None and prev.last_hist is not None
               and e.first_hist is not None
               and hist_distance(prev.last_hist, e.first_hist) > shot_threshold)
        offset += prev.cuts + cut
        out.append(SegmentJoin(e.first_slot > prev.last_slot or cut, cut, offset))
    return out
