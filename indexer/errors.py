"""The exception types Loupe shows to people."""

from __future__ import annotations

import errno
import os


class LoupeError(Exception):
    """An error with a message meant for the person running Loupe (one line, actionable)."""


class IndexFault(LoupeError):
    """Writing the index failed (its disk is full, read-only, failing): the run's fault,
    never the source file's. The run stops; what it committed is kept."""

    @classmethod
    def of(cls, where: str, error: OSError) -> IndexFault:
        """The one line for ``error`` met writing ``where`` (a path in the index)."""
        folder = where if os.path.isdir(where) else os.path.dirname(where)
        what = {errno.ENOSPC: "is full", errno.EDQUOT: "is over its quota",
                errno.EROFS: "is read-only", errno.EACCES: "is not writable",
                errno.EPERM: "is not writable", errno.EIO: "had an I/O error"}.get(
            error.errno, f"could not be written ({error.strerror or error})")
        return cls(f"the index folder {folder} {what}; the work committed so far is kept "
                   "(run again once it is fixed)")
