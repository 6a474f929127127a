"""Kernel source trees: Debian's linux-source package (default) or a user's tree.

A tree's identity decides whether a build is up to date: the Debian package version, a git
commit plus a hash of uncommitted changes, or (for a plain directory) a stamp over every
file's path, size and mtime.  A user's tree keeps one build directory per arch and fragment
set, so a one-file change rebuilds incrementally.
"""

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import X86_64
from harness.cache import ALL, COMPLETE, build_once, entry, locked
from harness.debian import DebianArchive, extract_deb
from harness.diskspace import GIB, require_free, tree_bytes
from harness.errors import InfraError, UserError
from harness.kernel.export import export_commit, git
from harness.kernel.version import SERIES

SOURCE_PACKAGE = "linux-source-6.1"
UNPACKED_SOURCE = 2 * GIB  # Debian's linux-source, unpacked: 1.5 GB measured for 6.1 and 6.12
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    path: Path  # the tree's top directory
    identity: str  # changes whenever the sources do
    origin: str  # for people: package and version, or path and commit
    user_tree: bool  # a user's tree (incremental builds in a stable directory)
    # A tree memharness owns whose commits share one build directory (a bisect worktree):
    # None gives each identity its own.
    slot: str | None = None


def is_kernel_tree(path: Path) -> bool:
    makefile = path / "Makefile"
    if not makefile.is_file() or not (path / "arch").is_dir() or not (path / "Kconfig").is_file():
        return False
    head = makefile.read_text(errors="replace")[:2000]
    return bool(re.search(r"^VERSION = \d+", head, re.M)) and "PATCHLEVEL =" in head


def debian_source(series: str | None = None) -> Source:
    """Debian's linux-source package (linux-source-6.1, or ``series``: linux-source-6.12),
    unpacked once into the cache (~1.5 GB, ~15 s)."""
    if series is not None and not SERIES.match(series):
        raise UserError(f"debian:{series}: name a kernel series, e.g. --src debian:6.12")
    name = f"linux-source-{series}" if series else SOURCE_PACKAGE
    archive = DebianArchive(X86_64)  # an arch: all package, any arch's lists have it
    try:
        (package,) = archive.show([name])
    except InfraError:
        raise UserError(
            f"Debian's archive has no {name}: `apt-cache pkgnames linux-source` lists the "
            "series it has"
        ) from None
    key = f"{name}-{package.version}"

    def unpack(tmp: Path) -> None:
        require_free(tmp, UNPACKED_SOURCE, f"unpacking {name}")
        (deb,) = archive.download([package])
        extract_deb(deb, tmp / "deb")
        tarballs = list((tmp / "deb" / "usr" / "src").glob("linux-source-*.tar.*"))
        if len(tarballs) != 1:
            raise InfraError(f"{deb.name}: expected one source tarball, found {tarballs}")
        proc.run(
            ["tar", "-xf", str(tarballs[0]), "-C", str(tmp)],
            timeout=1800,
            what="unpacking the kernel source",
        )
        shutil.rmtree(tmp / "deb")

    root = build_once("src", key, unpack, unchecked=ALL)  # sources are compiled, never booted
    (tree,) = [p for p in root.iterdir() if p.is_dir() and is_kernel_tree(p)]
    return Source(tree, key, f"Debian {name} {package.version}", user_tree=False)


def user_source(path: Path, commit: str | None = None) -> Source:
    """A user's tree; with ``commit``, that commit exported from the tree's git repository."""
    path = path.expanduser().resolve()
    if not path.is_dir() or not is_kernel_tree(path):
        raise UserError(
            f"{path} is not a Linux source tree (no top-level Makefile with VERSION "
            "and no arch/): pass --src the top of a kernel tree"
        )
    if commit:
        return _exported_commit(path, commit)
    if (path / ".git").exists() and shutil.which("git"):
        head = git(path, "rev-parse", "HEAD").strip()
        dirty = hashlib.sha256(git(path, "diff", "HEAD").encode()).hexdigest()[:16]
        return Source(path, f"git-{head}-{dirty}", f"{path} at {head[:12]}", user_tree=True)
    return Source(path, f"tree-{_stamp(path)}", str(path), user_tree=True)


def _exported_commit(path: Path, commit: str) -> Source:
    if not (path / ".git").exists():
        raise UserError(f"--commit needs a git tree: {path} has no .git")
    try:
        full = git(path, "rev-parse", "--verify", f"{commit}^{{commit}}").strip()
    except InfraError:
        raise UserError(
            f"{commit} is not a commit of {path}: pass a commit, tag or branch"
        ) from None

    def export(tmp: Path) -> None:
        how = export_commit(path, full, tmp, exported_trees())
        log.info("exported %s of %s %s", full[:12], path, how)

    tree = build_once("src", f"git-{full}", export, unchecked=ALL)
    return Source(tree, f"git-{full}", f"{path} at {full[:12]}", user_tree=False)


def exported_trees() -> list[Path]:
    """Complete exported commits in the cache, newest first: the trees a new export can be
    hard-linked from."""
    root = entry("src", "")
    found = [p for p in root.glob("git-*") if p.is_dir() and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: (p / COMPLETE).stat().st_mtime, reverse=True)


def remove_exports() -> tuple[int, int]:
    """Deletes every exported commit (and the builds inside it), each under its cache lock;
    returns (trees, bytes given back).  The next --commit of one exports it again."""
    trees = freed = 0
    for tree in exported_trees():
        with locked(tree.with_name(tree.name + ".lock")):
            freed += tree_bytes(tree)
            proc.run(["rm", "-rf", str(tree)], timeout=1800, what="rm")
        trees += 1
    return trees, freed


def _stamp(path: Path) -> str:
    """sha256 over (path, size, mtime) of every source file: a changed file changes it."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]
