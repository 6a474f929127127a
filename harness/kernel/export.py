"""One commit of a user's git repository, written out as a tree memharness owns.

A kernel's `git archive` is 1.5 GB, and a test suite or a series of `--commit` runs exports
commits that differ in a handful of files: written out in full, five exports filled a CI disk.
So a new export starts as hard links to an earlier complete export of a commit the repository
has (a commit names its tree, so a clone's export serves as well), and only the paths
`git diff` names between the two commits are unlinked and written from the new commit: N
nearby commits cost one tree plus their differences.

That is safe because nothing writes into an owned source tree in place: kbuild builds out of
tree (O=), the selftests build works on a copy, and a path that differs is unlinked before its
new content is extracted, so no write ever goes through a link into another export.
"""

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from harness import proc
from harness.diskspace import require_free
from harness.errors import InfraError

RECORD = ".memharness-export"  # {repo, commit}: what the export holds, and whence
_CHUNK = 400  # paths per `git archive` call, well below any argv limit


def git(repo: Path, *args: str) -> str:
    return proc.run(["git", "-C", str(repo), *args], timeout=900, what="git").stdout.decode()


def _extract(repo: Path, commit: str, dest: Path, paths: list[str] | None = None) -> None:
    """`git archive COMMIT [-- PATHS] | tar -x` streamed (a kernel's tar is 1.3 GB: never
    held in memory); pathspecs are literal, so a file named `*.c` is just that file."""
    script = (
        'git --literal-pathspecs -C "$1" archive --format=tar "$2" "${@:4}" | tar -xf - -C "$3"'
    )
    argv = ["bash", "-o", "pipefail", "-c", script, "export", str(repo), commit, str(dest)]
    proc.run([*argv, *(["--", *paths] if paths else [])], timeout=1800, what="git archive | tar")


def file_sizes(repo: Path, commit: str) -> dict[str, int]:
    """{path: bytes} of every file of ``commit`` (symlinks count their target's length)."""
    sizes: dict[str, int] = {}
    for record in git(repo, "ls-tree", "-r", "-l", "-z", commit).split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        size = meta.split()[3]
        sizes[path] = int(size) if size.isdigit() else 0
    return sizes


def changed_paths(repo: Path, old: str, new: str) -> list[tuple[str, str]]:
    """(status letter, path) of every file that differs between two commits, renames split
    into a deletion and an addition (a rename's old path must go, its new one be written)."""
    out = git(repo, "diff", "--name-status", "-z", "--no-renames", old, new)
    fields = out.split("\0")
    return [(fields[i][0], fields[i + 1]) for i in range(0, len(fields) - 1, 2)]


def export_commit(repo: Path, commit: str, dest: Path, references: Iterable[Path]) -> str:
    """Writes ``commit`` of ``repo`` into the empty directory ``dest``; returns how: 'linked to
    <reference>' or 'in full'.  ``references`` are complete earlier exports, best first; the
    first whose commit ``repo`` has (exported from it or from a clone) is linked from.
    The disk must have room for what is written (an InfraError naming the fix otherwise)."""
    sizes = file_sizes(repo, commit)
    for reference in references:
        old = recorded_commit(reference)
        if old is None:
            continue
        try:  # a commit names its tree: any repository that has it can diff against it
            git(repo, "cat-file", "-e", f"{old}^{{commit}}")
        except InfraError:
            continue  # another project, or a commit this repository lost (rebase, gc)
        changes = changed_paths(repo, old, commit)
        written = [path for status, path in changes if status in "AMT"]
        need = sum(sizes.get(path, 0) for path in written)
        require_free(dest, need, f"exporting {commit[:12]} of {repo}")
        try:
            _link_tree(repo, old, reference, dest)
            _apply_difference(repo, commit, dest, changes)
        except InfraError:
            # Linking can fail where a full export does not (a link count limit, another
            # filesystem): start over in full rather than fail the build.
            shutil.rmtree(dest)
            dest.mkdir()
            break
        _write_record(dest, repo, commit)
        return f"linked to {reference.name}"
    require_free(dest, sum(sizes.values()), f"exporting {commit[:12]} of {repo}")
    _extract(repo, commit, dest)
    _write_record(dest, repo, commit)
    return "in full"


def recorded_commit(tree: Path) -> str | None:
    """The commit an export holds, from its record (None: no or a damaged record)."""
    try:
        data = json.loads((tree / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return str(data["commit"]) if isinstance(data, dict) and "commit" in data else None


def _write_record(tree: Path, repo: Path, commit: str) -> None:
    (tree / RECORD).write_text(json.dumps({"repo": str(repo), "commit": commit}) + "\n")


def _link_tree(repo: Path, commit: str, reference: Path, dest: Path) -> None:
    """Hard links into ``dest`` what ``reference`` holds of ``commit``: the commit's top-level
    entries, so its build directories and the cache's markers stay behind."""
    names = git(repo, "ls-tree", "-z", "--name-only", commit, "--").split("\0")
    entries = [str(reference / n) for n in names if n and os.path.lexists(reference / n)]
    if entries:
        proc.run(["cp", "-al", *entries, str(dest)], timeout=900, what="cp -al")


def _apply_difference(repo: Path, new: str, dest: Path, changes: list[tuple[str, str]]) -> None:
    """Unlinks every path that differs, then writes the new commit's version of it."""
    written = [path for status, path in changes if status in "AMT"]
    for status, path in changes:
        if status in "DMT":  # gone or different: the link (or symlink) must not be written
            target = dest / path
            if target.is_symlink() or target.is_file():
                target.unlink()
                _prune_empty_parents(target.parent, dest)
    for start in range(0, len(written), _CHUNK):
        _extract(repo, new, dest, written[start : start + _CHUNK])


def _prune_empty_parents(directory: Path, root: Path) -> None:
    """A directory left empty by deletions goes, as it would be absent from a full export."""
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
