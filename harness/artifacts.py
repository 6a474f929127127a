"""Run directories under an artifacts root: one per run, never reused, and a keep-N policy.

Every run writes a directory named ``<name>-<arch>-<timestamp>[-N]``.  ``rotate`` keeps the N
newest of them and removes the rest; it only ever touches directories memharness made (a run
directory holds ``result.json`` or ``qemu.argv``), so pointing it at the wrong folder cannot
delete anything else.
"""

import shutil
import time
from pathlib import Path

RUN_MARKERS = ("result.json", "qemu.argv")


def artifacts_dir(root: Path, name: str, arch: str) -> Path:
    """root/<name>-<arch>-<timestamp>[-N]: one directory per run, never reused."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{arch}-{stamp}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:  # a parallel run took it between check and create
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def run_dirs(root: Path) -> list[Path]:
    """memharness's run directories directly under ``root`` (and under root/pytest), oldest
    first."""
    found = []
    for folder in (root, root / "pytest"):
        if folder.is_dir():
            found += [
                p
                for p in folder.iterdir()
                if p.is_dir() and not p.is_symlink() and any((p / m).exists() for m in RUN_MARKERS)
            ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def rotate(root: Path, keep: int) -> list[Path]:
    """Removes all but the ``keep`` newest run directories; returns what it removed."""
    dirs = run_dirs(root)
    doomed = dirs[: max(len(dirs) - keep, 0)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
