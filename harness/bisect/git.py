"""The git side of a bisect: the user's repository is only read; all work happens in a worktree
of it in the cache.

``git bisect`` itself chooses the commits (it knows merges, skips and the ancestry graph); it
runs in the worktree, whose bisect state (refs/bisect, BISECT_LOG) is per worktree, so the
user's checkout, HEAD, index and any bisect of their own are never touched.  The worktree
lives as long as the cache: the next bisect of the same tree starts from a warm build.
"""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.cache import digest, locked
from harness.errors import InfraError, UserError
from harness.kernel.source import Source, is_kernel_tree
from harness.paths import cache_root

GIT_TIMEOUT = 900.0
log = logging.getLogger(__name__)


def git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT) -> str:
    """``git -C repo ARGS``; InfraError (with git's last lines) when it fails."""
    return proc.run(
        ["git", "-C", str(repo), *args], timeout=timeout, what=f"git {args[0]}"
    ).stdout.decode(errors="replace")


def _ok(repo: Path, *args: str) -> bool:
    try:
        git(repo, *args, timeout=120)
    except InfraError:
        return False
    return True


@dataclass(frozen=True)
class Commit:
    hash: str
    subject: str
    author: str
    date: str  # ISO 8601, the author date

    def to_json(self) -> dict[str, str]:
        return {
            "hash": self.hash,
            "subject": self.subject,
            "author": self.author,
            "date": self.date,
        }


def describe(repo: Path, rev: str) -> Commit:
    out = git(repo, "log", "-1", "--format=%H%x00%s%x00%an <%ae>%x00%aI", rev, "--")
    hash_, subject, author, date = out.rstrip("\n").split("\x00")
    return Commit(hash_, subject, author, date)


def check_range(tree: Path, good: str, bad: str) -> tuple[Path, str, str]:
    """The tree's top and the two full hashes; one line naming the fix when the tree is not a
    git kernel tree, a revision is unknown, or good is not an ancestor of bad."""
    proc.require_tool("git", "git")
    tree = tree.expanduser().resolve()
    if not tree.is_dir():
        raise UserError(f"{tree} does not exist: pass --src the top of a kernel git tree")
    if not _ok(tree, "rev-parse", "--git-dir"):
        raise UserError(f"{tree} is not a git tree: bisect needs the history (git clone it)")
    top = Path(git(tree, "rev-parse", "--show-toplevel").strip())
    if not is_kernel_tree(top):
        raise UserError(f"{top} is not a Linux source tree: pass --src the top of a kernel tree")
    hashes = []
    for name, rev in (("--good", good), ("--bad", bad)):
        try:
            hashes.append(git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip())
        except InfraError:
            raise UserError(
                f"{name} {rev!r} is not a commit of {top}: pass a commit, tag or branch"
            ) from None
    good_hash, bad_hash = hashes
    if good_hash == bad_hash:
        raise UserError(f"--good and --bad are the same commit ({good_hash[:12]}): pass two")
    if not _ok(top, "merge-base", "--is-ancestor", good_hash, bad_hash):
        raise UserError(
            f"--good {good} is not an ancestor of --bad {bad}: pass an older good commit "
            "(or swap them)"
        )
    return top, good_hash, bad_hash


class Worktree:
    """A detached worktree of the user's repository in the cache, one per repository."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.path = cache_root() / "bisect" / digest(str(repo))[:16] / "linux"

    @contextmanager
    def held(self) -> Iterator["Worktree"]:
        """Exclusive use (a second bisect of the same tree waits), a bisect state of its own,
        always reset on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.parent / "lock"):
            self._ensure()
            self._reset()  # a bisect of ours that a crash left behind
            try:
                yield self
            finally:
                try:
                    self._reset()
                except InfraError as exc:  # never hide the bisect's own result or error
                    log.warning("could not reset the bisect in %s: %s", self.path, exc)

    def _ensure(self) -> None:
        if (self.path / ".git").is_file() and _ok(self.path, "rev-parse", "--is-inside-work-tree"):
            return
        git(self.repo, "worktree", "prune")
        proc.run(["rm", "-rf", str(self.path)], timeout=600)
        git(self.repo, "worktree", "add", "--detach", "--force", str(self.path), "HEAD")

    def _reset(self) -> None:
        if self._bisecting():
            git(self.path, "bisect", "reset", "HEAD")

    def _bisecting(self) -> bool:
        return _ok(self.path, "rev-parse", "--verify", "--quiet", "refs/bisect/bad")

    def source(self, commit: str) -> Source:
        """The worktree checked out at ``commit``, as a tree memharness owns whose build
        directory is the same for every commit (``slot``): each step rebuilds only what the
        checkout changed (git touches only the files that differ)."""
        git(self.path, "checkout", "--quiet", "--detach", "--force", commit)
        return Source(
            self.path,
            f"worktree-git-{commit}",  # not an export's git-{commit}: kbuild adds "+" here
            f"{self.repo} at {commit[:12]}",
            user_tree=False,
            slot=f"bisect-{digest(str(self.repo))[:12]}",
        )

    # -- git bisect in the worktree: git chooses, we judge ---------------------------------

    def start(self, bad: str, good: str) -> str | None:
        out = git(self.path, "bisect", "start", "--no-checkout", bad, good)
        return self._next(out)

    def mark(self, verdict: str) -> str | None:
        """Tells git the current commit's verdict (good, bad or skip); the next commit to test,
        or None when git has finished (see ``result``)."""
        return self._next(git(self.path, "bisect", verdict))

    def _next(self, out: str) -> str | None:
        self.last_output = out
        if "is the first bad commit" in out or "only 'skip'ped commits left" in out:
            return None
        return git(self.path, "rev-parse", "BISECT_HEAD").strip()

    def first_bad(self) -> str | None:
        m = re.search(r"^([0-9a-f]{40}) is the first bad commit", self.last_output, re.M)
        return m.group(1) if m else None

    def remaining(self) -> list[str]:
        """The commits that may still be the first bad one (newest first), bad included."""
        goods = git(self.path, "for-each-ref", "--format=%(objectname)", "refs/bisect/good-*")
        out = git(self.path, "rev-list", "refs/bisect/bad", "--not", *goods.split())
        return out.split()
