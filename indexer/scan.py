"""Walk the roots: every regular file with its size and mtime, nothing hidden, no loops."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class FileEntry:
    """A file found by the scan (path is absolute, not symlink-resolved)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    """Something under a root that could not be looked at, and why."""

    path: str
    reason: str


def printable_path(path: str) -> str:
    """A path that is valid UTF-8 (undecodable bytes shown as \\xNN escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def scan(roots: Iterable[str], problems: list[ScanProblem] | None = None) -> Iterator[FileEntry]:
    """Yield the regular files under ``roots``.

    Hidden files and directories (name starting with ".") are skipped. Symlinked
    directories are followed once, after the real ones: a directory already visited
    (same device and inode) is not entered again, so loops end and files keep their
    real paths when a link points inside the roots. Unreadable directories and names that
    are not valid UTF-8 are appended to ``problems`` instead of stopping the walk.
    A root may itself be a file.
    """
    problems = problems if problems is not None else []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    for root in roots:
        root = os.path.abspath(root)
        try:
            st = os.stat(root)
        except OSError as e:
            problems.append(ScanProblem(printable_path(root), f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISREG(st.st_mode):
            if root not in seen_files:
                seen_files.add(root)
                yield FileEntry(root, st.st_size, st.st_mtime_ns)
            continue
        stack = [root]
        linked: list[str] = []  # symlinked folders, walked after the real ones
        while stack or linked:
            if not stack:  # real folders first, so files keep their real paths
                stack, linked = list(reversed(linked)), []
            d = stack.pop()
            try:
                dst = os.stat(d)
            except OSError as e:
                problems.append(ScanProblem(printable_path(d), f"cannot read: {e.strerror or e}"))
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in seen_dirs:
                continue  # a symlink loop or a second link to a visited folder
            seen_dirs.add(key)
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                problems.append(ScanProblem(printable_path(d), f"cannot list: {e.strerror or e}"))
                continue
            subdirs = []
            for e in entries:
                if e.name.startswith("."):
                    continue
                if not _is_utf8(e.path):
                    problems.append(
                        ScanProblem(printable_path(e.path), "file name is not valid UTF-8")
                    )
                    continue
                try:
                    if e.is_dir(follow_symlinks=True):
                        (linked if e.is_symlink() else subdirs).append(e.path)
                        continue
                    if not e.is_file(follow_symlinks=True):
                        continue  # sockets, fifos, devices, dangling links
                    fst = e.stat(follow_symlinks=True)
                except OSError as err:
                    problems.append(ScanProblem(e.path, f"cannot stat: {err.strerror or err}"))
                    continue
                if e.path in seen_files:
                    continue
                seen_files.add(e.path)
                yield FileEntry(e.path, fst.st_size, fst.st_mtime_ns)
            stack.extend(reversed(subdirs))
