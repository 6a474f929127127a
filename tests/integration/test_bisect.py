"""`memharness bisect` on a real kernel git tree (tests/integration/kernel_tree.py): Debian's
6.1 source, harmless mm/ commits and one planted regression, where every commit, the good ones
included, splats with the known 6.1 DEBUG_VM bug in the chosen scenario.  The bisect must name
the planted commit; the old any-splat judgement (`run --bisect`) is shown to call the good
endpoint bad, which is why `git bisect run` with it names the first harmless commit."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.arch import get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import user_source
from tests.integration.cli import memharness
from tests.integration.kernel_tree import PlantedTree, git

pytestmark = [pytest.mark.kernel_build, pytest.mark.x86_64]

SCENARIO = "poison-then-teardown"  # its own known bug fires on every commit of the tree
KNOWN = "VM_BUG_ON_PAGE(PagePoisoned(page)) in clear_hwpoisoned_pages"


def test_bisect_names_the_planted_commit(planted_tree: PlantedTree, tmp_path: Path) -> None:
    head_before = git(planted_tree.path, "rev-parse", "HEAD")
    status_before = git(planted_tree.path, "status", "--porcelain")
    report = tmp_path / "bisect.json"
    page = tmp_path / "bisect.html"
    done = memharness(
        "bisect",
        "--src", str(planted_tree.path),
        "--good", planted_tree.base,
        "--bad", "HEAD",
        "--arch", "x86_64",
        "--scenario", SCENARIO,
        "--artifacts", str(tmp_path / "artifacts"),
        "--json", str(report),
        "--html", str(page),
        timeout=3600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    result = json.loads(report.read_text())
    assert result["culprit"]["hash"] == planted_tree.planted, done.stdout
    assert result["culprit"]["subject"] == "mm/memremap: planted regression"
    # the default target: the title at bad that good does not show, not the known bug
    assert "memunmap_pages" in result["title"], result["title"]
    assert result["rate"] == {"reproduced": 3, "runs": 3}
    assert result["runs_per_step"] == 1
    steps = result["steps"]
    assert [s["role"] for s in steps[:2]] == ["bad endpoint", "good endpoint"]
    # the known bug was seen on good commits and did not make them bad
    goods = [s for s in steps if s["verdict"] == "good"]
    assert goods and all(KNOWN in s["titles"] for s in goods), steps
    assert all(s["build_seconds"] is not None and s["artifacts"] for s in steps)
    assert len(steps) <= 2 + 3, "7 commits: three steps at most"
    assert result["confidence"] == 1.0
    assert planted_tree.planted in result["reproducer"]
    assert "first bad commit: " + planted_tree.planted in done.stdout
    assert "<table>" in page.read_text()
    # a progress line per step on stderr
    assert done.stderr.count("step ") >= len(steps) - 2
    # the user's checkout is untouched
    assert git(planted_tree.path, "rev-parse", "HEAD") == head_before
    assert git(planted_tree.path, "status", "--porcelain") == status_before


def test_the_any_splat_judgement_calls_the_good_endpoint_bad(
    planted_tree: PlantedTree, tmp_path: Path
) -> None:
    """The README's old recipe (`run --bisect`) on the known-good commit: exit 1 (bad), so
    `git bisect run` with it marks every commit bad and names the first harmless one; the title
    form calls the same kernel good."""
    arch = get_arch("x86_64")
    good = build_kernel(
        arch, user_source(planted_tree.path, planted_tree.base), list(DEFAULT_FRAGMENTS)
    )
    common = ["run", "--arch", "x86_64", "--scenario", SCENARIO, "--kernel", f"x86_64={good}"]
    old = memharness(*common, "--bisect", "--artifacts", str(tmp_path / "old"), timeout=900)
    assert old.returncode == 1, old.stdout[-2000:]
    assert KNOWN in old.stdout
    titled = memharness(
        *common,
        "--bisect-title",
        "WARNING in memunmap_pages",
        "--artifacts",
        str(tmp_path / "new"),
        timeout=900,
    )
    assert titled.returncode == 0, titled.stdout[-2000:]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--src", "/nonexistent"], "does not exist"),
        (["--src", "{plain}"], "not a git tree"),
        (["--good", "no-such-rev"], "--good 'no-such-rev' is not a commit"),
        (["--good", "HEAD", "--bad", "{base}"], "not an ancestor"),
        (["--good", "HEAD", "--bad", "HEAD"], "the same commit"),
        (["--scenario", "no-such-scenario"], "no-such-scenario"),
        (["--fragment", "no-such-fragment"], "no-such-fragment"),
        (["--title", " "], "--title is empty"),
    ],
)
def test_bad_input_is_one_line_and_builds_nothing(
    planted_tree: PlantedTree, tmp_path: Path, args: list[str], needle: str
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    given = {
        "--src": str(planted_tree.path),
        "--good": planted_tree.base,
        "--bad": "HEAD",
        "--scenario": SCENARIO,
    }
    extra: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        value = value.format(plain=plain, base=planted_tree.base)
        if flag in given:
            given[flag] = value
        else:
            extra += [flag, value]
    argv = [x for kv in given.items() for x in kv]
    env_cache = tmp_path / "cache"
    done = memharness(
        "bisect",
        *argv,
        *extra,
        "--artifacts",
        str(tmp_path / "a"),
        env={**os.environ, "MEMHARNESS_CACHE": str(env_cache)},
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not env_cache.exists() or not any(env_cache.rglob("kernel.json")), "nothing built"
    assert not (tmp_path / "a").exists()


def test_not_a_kernel_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    done = memharness(
        "bisect", "--src", str(repo), "--good", "a", "--bad", "b", "--scenario", SCENARIO
    )
    assert done.returncode == 2
    assert "not a Linux source tree" in done.stderr
