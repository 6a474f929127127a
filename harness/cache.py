"""Content-addressed cache: build or download once, reuse offline forever after.

Every entry is a directory named by the sha256 of its inputs.  Builders write into a temporary
sibling that is renamed into place when complete, under an flock, so a crashed or concurrent
run never leaves or sees a half-built entry.
"""

import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.paths import cache_root


def digest(*parts: object) -> str:
    """Stable sha256 over JSON-serialisable parts (bytes are hashed raw)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over the relative paths, modes and contents of every file below ``root``
    (top-level entries named in ``exclude`` left out)."""
    h = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file())
    for path in sorted(p for p in files if p.relative_to(root).parts[0] not in exclude):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive flock on ``path`` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def entry(kind: str, key: str) -> Path:
    """Path of the cache entry ``kind/key`` (it may not exist yet)."""
    return cache_root() / kind / key


def build_once(kind: str, key: str, builder: Callable[[Path], None]) -> Path:
    """Returns the complete entry ``kind/key``, running ``builder(tmpdir)`` only if missing."""
    final = entry(kind, key)
    if (final / ".complete").exists():
        return final
    with locked(final.with_name(final.name + ".lock")):
        if (final / ".complete").exists():
            return final
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            builder(tmp)
            (tmp / ".complete").touch()
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
