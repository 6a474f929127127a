"""A real kernel git tree for the planted-regression and bisect tests: Debian's linux-source-6.1
as the first commit, three harmless mm/ commits, one planted regression of ours in a
ZONE_DEVICE teardown path (a WARN in memunmap_pages(), which every namespace teardown takes),
then three more harmless commits.  Every commit of it, the good ones included, splats with the
known 6.1 DEBUG_VM bug in the `poison-then-teardown` scenario.

The tree hard-links Debian's cached source (no copy of 1.2 GB); a file a commit changes is
unlinked first, so nothing is ever written through a link into the cache.
"""

import os
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from harness.kernel.source import debian_source

PLANTED_FILE = "mm/memremap.c"
ANCHOR = "\twait_for_completion(&pgmap->done);\n"
WARNING = '\tWARN_ONCE(1, "memharness planted regression\\n");\n'
# (file, a line it has, a comment added after it): compiled into every memharness build.
HARMLESS = [
    ("mm/sparse.c", "#include <linux/mm.h>\n", "mm/sparse: a comment"),
    ("mm/memory_hotplug.c", "#include <linux/stddef.h>\n", "mm/memory_hotplug: a comment"),
    ("mm/page_alloc.c", "#include <linux/stddef.h>\n", "mm/page_alloc: a comment"),
    ("mm/memory-failure.c", "#include <linux/kernel.h>\n", "mm/memory-failure: a comment"),
    ("mm/memremap.c", "#include <linux/device.h>\n", "mm/memremap: a comment"),
    ("mm/vmscan.c", "#include <linux/mm.h>\n", "mm/vmscan: a comment"),
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=memharness",
            "-c",
            "user.email=mh@invalid",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout


def _edit(repo: Path, name: str, old: str, new: str) -> None:
    target = repo / name
    text = target.read_text()
    assert old in text, f"{name} changed: update tests/integration/kernel_tree.py"
    target.unlink()  # a hard link into the cache: never write through it
    target.write_text(text.replace(old, new, 1))


@dataclass(frozen=True)
class PlantedTree:
    path: Path
    base: str  # Debian's source: good
    planted: str  # the first bad commit
    head: str  # three harmless commits after it: bad
    commits: tuple[str, ...]  # every commit after base, oldest first


def make_planted_tree(where: Path) -> PlantedTree:
    src = debian_source().path
    repo = where / "linux"
    subprocess.run(["cp", "-al", str(src), str(repo)], check=True, timeout=900)
    for build in repo.glob("mh-build-*"):
        subprocess.run(["rm", "-rf", str(build)], check=True, timeout=900)
    git(repo, "init", "-q")
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", "Debian linux-source-6.1")
    commits = []

    def harmless(n: int) -> None:
        name, line, subject = HARMLESS[n]
        _edit(repo, name, line, f"{line}/* memharness: harmless change {n} */\n")
        git(repo, "commit", "-q", "-am", subject)
        commits.append(git(repo, "rev-parse", "HEAD").strip())

    for n in range(3):
        harmless(n)
    _edit(repo, PLANTED_FILE, ANCHOR, ANCHOR + WARNING)
    git(repo, "commit", "-q", "-am", "mm/memremap: planted regression")
    commits.append(git(repo, "rev-parse", "HEAD").strip())
    planted = commits[-1]
    for n in range(3, 6):
        harmless(n)
    base = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    return PlantedTree(repo, base, planted, commits[-1], tuple(commits))


PLANTED_PATCHES = Path(__file__).parents[1] / "planted"


def commit_patch(tree: PlantedTree, patch: Path) -> str:
    """A commit on top of ``tree.base`` that applies ``patch`` (one of tests/planted/), made in
    a scratch index: the working tree, shared with the other tests, is not touched."""
    env_index = tree.path / ".git" / f"index-{patch.stem}"
    env = {**os.environ, "GIT_INDEX_FILE": str(env_index)}
    run = partial(subprocess.run, check=True, capture_output=True, text=True, timeout=900, env=env)
    repo = ["git", "-C", str(tree.path), "-c", "user.name=mh", "-c", "user.email=mh@invalid"]
    run([*repo, "read-tree", tree.base])
    run([*repo, "apply", "--cached", str(patch)])
    written = run([*repo, "write-tree"]).stdout.strip()
    subject = f"planted: {patch.stem}"
    commit = run([*repo, "commit-tree", written, "-p", tree.base, "-m", subject]).stdout.strip()
    env_index.unlink()
    return commit
