"""Exported commits: a linked export must hold exactly what a full `git archive` holds, and
nothing may be written through a link into the tree it was linked from.  Real git, small repo."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

from harness.diskspace import free_bytes, require_free
from harness.errors import InfraError
from harness.kernel.export import RECORD, export_commit


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (permission bits, content or symlink target)} of every file."""
    seen: dict[str, tuple[int, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if rel == RECORD:
                continue
            st = path.lstat()
            body = os.readlink(path) if path.is_symlink() else path.read_text()
            seen[rel] = (stat.S_IMODE(st.st_mode) if not path.is_symlink() else 0, body)
    return seen


def dirs_of(root: Path) -> set[str]:
    return {str(Path(d).relative_to(root)) for d, _, _ in os.walk(root)} - {"."}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """Two commits that differ by every kind of change an export must carry over."""
    r = tmp_path / "repo"
    (r / "mm").mkdir(parents=True)
    (r / "gone").mkdir()
    (r / "Makefile").write_text("VERSION = 6\n")
    (r / "mm" / "same.c").write_text("unchanged\n")
    (r / "mm" / "edit.c").write_text("old\n")
    (r / "mm" / "old-name.c").write_text("renamed\n")
    (r / "gone" / "only.c").write_text("its directory goes with it\n")
    (r / "script.sh").write_text("#!/bin/sh\n")
    (r / "becomes-dir").write_text("a file first\n")
    (r / "link").symlink_to("Makefile")
    (r / "x*.c").write_text("a name that is a glob\n")
    git(r, "init", "-q")
    old = commit_all(r, "old")
    (r / "mm" / "edit.c").write_text("new\n")
    (r / "mm" / "old-name.c").rename(r / "mm" / "new-name.c")
    (r / "gone" / "only.c").unlink()
    (r / "gone").rmdir()
    (r / "script.sh").chmod(0o755)
    (r / "becomes-dir").unlink()
    (r / "becomes-dir").mkdir()
    (r / "becomes-dir" / "inside.c").write_text("now a directory\n")
    (r / "link").unlink()
    (r / "link").symlink_to("mm")
    (r / "x*.c").write_text("changed too\n")
    (r / "added.c").write_text("added\n")
    new = commit_all(r, "new")
    return r, old, new


def full_archive(repo: Path, commit: str, dest: Path) -> Path:
    dest.mkdir()
    tar = subprocess.run(["git", "-C", str(repo), "archive", commit], capture_output=True)
    subprocess.run(["tar", "-xf", "-", "-C", str(dest)], input=tar.stdout, check=True)
    return dest


def test_a_linked_export_equals_a_full_archive_and_leaves_its_reference_alone(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    r, old, new = repo
    first = tmp_path / "first"
    first.mkdir()
    assert export_commit(r, old, first, []) == "in full"
    (first / "mh-build-x86_64-0123").mkdir()  # a build inside the reference: not linked
    (first / "mh-build-x86_64-0123" / "vmlinux").write_text("objects")
    before = snapshot(first)

    second = tmp_path / "second"
    second.mkdir()
    assert export_commit(r, new, second, [first]) == f"linked to {first.name}"

    expected = full_archive(r, new, tmp_path / "expected")
    assert snapshot(second) == snapshot(expected)
    assert dirs_of(second) == dirs_of(expected)  # `gone/` is gone, `becomes-dir/` a directory
    assert snapshot(first) == before  # nothing was written through a link
    assert (second / "mm" / "same.c").stat().st_ino == (first / "mm" / "same.c").stat().st_ino
    for changed in ("mm/edit.c", "script.sh", "x*.c"):
        assert (second / changed).stat().st_ino != (first / changed).stat().st_ino, changed


def test_a_clone_links_from_the_originals_export(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    r, old, new = repo
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(r), str(clone)], check=True)
    first = tmp_path / "first"
    first.mkdir()
    export_commit(r, old, first, [])
    second = tmp_path / "second"
    second.mkdir()
    assert export_commit(clone, new, second, [first]) == f"linked to {first.name}"
    assert snapshot(second) == snapshot(full_archive(r, new, tmp_path / "expected"))


def test_a_reference_of_another_repository_or_a_lost_commit_is_not_used(
    repo: tuple[Path, str, str], tmp_path: Path
) -> None:
    r, _old, new = repo
    other = tmp_path / "other"
    (other / "f").parent.mkdir()
    (other / "f").write_text("x\n")
    git(other, "init", "-q")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    export_commit(other, commit_all(other, "x"), foreign, [])
    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / RECORD).write_text(f'{{"repo": "{r}", "commit": "{"0" * 40}"}}\n')

    dest = tmp_path / "dest"
    dest.mkdir()
    assert export_commit(r, new, dest, [foreign, lost]) == "in full"
    assert snapshot(dest) == snapshot(full_archive(r, new, tmp_path / "expected"))


def test_too_little_disk_is_one_line_naming_how_to_make_room(tmp_path: Path) -> None:
    with pytest.raises(InfraError) as raised:
        require_free(tmp_path / "not" / "yet", free_bytes(tmp_path) + (1 << 40), "a build")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("a build needs about ")
    assert str(tmp_path) in message and "clean --exports" in message
    assert "MEMHARNESS_CACHE" in message
    require_free(tmp_path, 1, "a small write")  # room for it: no error
