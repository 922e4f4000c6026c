"""Moments in a video or a sound, written for people: one place for both formats."""

from __future__ import annotations


def clock(seconds: float | None) -> str:
    """m:ss (h:mm:ss past an hour): the UI's and the atlas's labels ("" for None)."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def precise_clock(seconds: float) -> str:
    """1:02:03.5 / 2:03.5 / 3.50s: the CLI's moments, to a tenth of a second."""
    m, sec = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h}:{m:02d}:{sec:04.1f}"
    return f"{m}:{sec:04.1f}" if m else f"{sec:.2f}s"
