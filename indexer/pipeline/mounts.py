"""Which file system a folder lies on, and whether its changes reach this machine as
file-system events (inotify on Linux) or must be found by polling.

A network mount (NFS, SMB/CIFS, FUSE: sshfs, rclone...) sends no event for a change made
by another machine, so watch mode polls it; a local disk sends them.
"""

from __future__ import annotations

import os
import re

MOUNTS = "/proc/self/mounts"
# File systems whose changes made elsewhere never become local events.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "ceph", "glusterfs", "lustre",
    "gpfs", "beegfs", "davfs", "fuse", "ncpfs", "coda", "ocfs2", "gfs2", "virtiofs",
})


def _unescape(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fs_type(path: str, mounts: str = MOUNTS) -> str | None:
    """The file-system type of the mount that holds ``path`` ("ext4", "nfs4",
    "fuse.sshfs"...), from the longest matching mount point; None where the platform
    has no mount table (macOS, Windows) or it cannot be read."""
    try:
        with open(mounts, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape(parts[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equal mounts is on top
            best, best_type = point, parts[2]
    return best_type


def needs_polling(fstype: str | None) -> bool:
    """Whether changes on a file system of ``fstype`` must be polled for (network and
    FUSE mounts); ``fuseblk`` is a local disk through FUSE (NTFS, exFAT): events work."""
    if fstype is None:
        return False
    return fstype in NETWORK_FS or fstype.startswith("fuse.")
