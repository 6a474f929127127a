"""Free disk space, checked before a step that writes gigabytes.

A full disk half-way through an unpack or a kernel build shows up as a tar or linker error
about some file deep in the tree; checked first, it is one line that says how much is needed,
where, and how to make room.
"""

import os
from pathlib import Path

from harness.errors import InfraError

GIB = 1 << 30
MARGIN = 256 << 20  # filesystem metadata, logs, and whatever runs beside us
ROOM_HINT = (
    "free space there (`memharness clean --exports` removes exported kernel trees) or set "
    "MEMHARNESS_CACHE to a directory on a larger disk"
)


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the filesystem that holds (or will hold)
    ``path``: its nearest existing ancestor decides (a huge number when that cannot be told,
    e.g. a directory removed under us: nothing to warn about)."""
    try:
        st = os.statvfs(_existing(path))
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def require_free(path: Path, need: int, what: str) -> None:
    """Raises a one-line InfraError unless ``need`` bytes (plus a margin) are free at
    ``path``; the disk filling up is the environment's failure, not the kernel's."""
    free = free_bytes(path)
    if free < need + MARGIN:
        raise InfraError(
            f"{what} needs about {_gib(need + MARGIN)} free in {_existing(path)}, "
            f"only {_gib(free)} is: {ROOM_HINT}"
        )


def tree_bytes(path: Path) -> int:
    """Bytes the files below ``path`` occupy (what deleting it gives back)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_nlink == 1:  # a hard-linked file stays on disk through its other names
                total += st.st_blocks * 512
    return total


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
