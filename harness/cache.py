"""Content-addressed cache: build or download once, reuse offline forever after.

Every entry is a directory named by the sha256 of its inputs.  Builders write into a temporary
sibling that is renamed into place when complete, under an flock, so a crashed or concurrent
run never leaves or sees a half-built entry.  The ``.complete`` marker records the sha256 of
every file the entry boots from, checked before use, so a corrupted entry is rebuilt.
"""

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.paths import cache_root

log = logging.getLogger(__name__)


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


COMPLETE = ".complete"
ALL = ("",)  # ``unchecked`` value for entries that are never booted (source trees)
_verified: set[Path] = set()  # entries already checked by this process


def _sums(root: Path, unchecked: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file of an entry (relative path → digest), but those under the
    ``unchecked`` prefixes (large trees that are never booted directly, e.g. modules)."""
    sums: dict[str, str] = {}
    if "" in unchecked:
        return sums
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = str(path.relative_to(root))
        if rel == COMPLETE or rel.startswith(unchecked):
            continue
        sums[rel] = file_digest(path)
    return sums


def intact(final: Path) -> bool:
    """Whether a complete entry still holds exactly what was built: a corrupted file (a bit
    flipped, a truncated download, an editor's save) must be rebuilt, never booted."""
    if final in _verified:
        return True
    marker = final / COMPLETE
    try:
        recorded = json.loads(marker.read_text() or "{}")
    except (OSError, ValueError):
        return False
    sums = recorded.get("sha256", {})
    unchecked = tuple(recorded.get("unchecked", ()))
    if sums != _sums(final, unchecked):
        return False
    _verified.add(final)
    return True


def build_once(
    kind: str, key: str, builder: Callable[[Path], None], unchecked: tuple[str, ...] = ()
) -> Path:
    """Returns the complete entry ``kind/key``, running ``builder(tmpdir)`` only if missing
    or corrupt (every file's sha256 is recorded when it is built and checked when it is used,
    but those under the ``unchecked`` path prefixes)."""
    final = entry(kind, key)
    if (final / COMPLETE).exists() and intact(final):
        return final
    with locked(final.with_name(final.name + ".lock")):
        if (final / COMPLETE).exists():
            if intact(final):
                return final
            if not (final / COMPLETE).read_text().strip():
                log.info("cache entry %s predates checksums: rebuilding it once", final)
            else:
                log.warning(
                    "cache entry %s is corrupt (a file changed since it was built): rebuilding",
                    final,
                )
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            builder(tmp)
            record = {"sha256": _sums(tmp, unchecked), "unchecked": list(unchecked)}
            (tmp / COMPLETE).write_text(json.dumps(record, indent=1) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            _verified.add(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
