"""Short-lived directories of a memharness process (QMP and channel sockets), and the sweep
that removes those of processes that died without cleaning up (SIGKILL, OOM, power loss).

Socket paths must be short (sun_path is 108 bytes), so they live in the system temp directory,
not in the artifacts.  Each name carries its owner: ``mh-<pid>-<start time>-<random>``.  A
directory is stale only when it is ours (our uid, a real directory, that name) and its owner is
gone: no such pid, or a pid that started at another time (the number was reused).  A directory
of a live memharness is never touched.
"""

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "mh-"
_NAME = re.compile(r"^mh-(\d+)-(\d+)-[A-Za-z0-9_]+$")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None
    when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def socket_dir() -> Path:
    """A new private directory owned by this process (stale ones are swept first)."""
    sweep_stale()
    me = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{me}-{start_time(me) or 0}-"))


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Removes the directories of dead memharness processes; returns what it removed."""
    base = root or Path(tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return []
    for path in entries:
        match = _NAME.match(path.name)
        if not match or not _ours(path):
            continue
        pid, started = int(match.group(1)), int(match.group(2))
        if start_time(pid) == started:
            continue  # its owner is alive
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _ours(path: Path) -> bool:
    with contextlib.suppress(OSError):
        st = path.lstat()
        return path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid()
    return False
