"""A planted regression on top of Debian's 6.1 source: the run that meets the known 6.1 bugs
on every debug build goes red for the new title only, and `memharness compare` against the
clean run names exactly that one as new.

The tree is a git repository of the Debian source with one commit that adds a WARN to
memunmap_pages() (a ZONE_DEVICE teardown path every collision scenario takes).  It is built
from an exported commit, so the build runs in a directory inside that tree and ccache hits for
everything but the changed file (a minute or two, not a full build).
"""

import json
import subprocess
from pathlib import Path

import pytest

from harness.arch import get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import debian_source, user_source
from tests.integration.cli import memharness

pytestmark = [pytest.mark.kernel_build, pytest.mark.x86_64]

PLANTED = "mm/memremap.c"
ANCHOR = "\twait_for_completion(&pgmap->done);\n"
WARNING = '\tWARN_ONCE(1, "memharness planted regression\\n");\n'
# Scenarios that meet registered known issues on the debug build, and one that walks through
# memunmap_pages on every mode switch.
SCENARIOS = "legacy-lower-half,poison-then-teardown,hotplug-churn,dimm-soft-offline-unplug"


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


@pytest.fixture(scope="module")
def planted_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's source as commit 1 (hard links: no copy of 1.2 GB), the planted bug as 2."""
    src = debian_source().path
    repo = tmp_path_factory.mktemp("planted") / "linux"
    subprocess.run(["cp", "-al", str(src), str(repo)], check=True, timeout=900)
    for build in repo.glob("mh-build-*"):
        subprocess.run(["rm", "-rf", str(build)], check=True, timeout=900)
    git(repo, "init", "-q")
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", "Debian linux-source-6.1")
    target = repo / PLANTED
    text = target.read_text()
    assert ANCHOR in text, "memunmap_pages changed: update the planted patch"
    target.unlink()  # a hard link: never write through it into the cached source
    target.write_text(text.replace(ANCHOR, ANCHOR + WARNING, 1))
    git(repo, "commit", "-q", "-am", "mm/memremap: planted regression")
    return repo


def test_only_the_planted_title_is_new(planted_repo: Path, tmp_path: Path) -> None:
    arch = get_arch("x86_64")
    clean = build_kernel(arch, debian_source(), list(DEFAULT_FRAGMENTS))
    planted = build_kernel(arch, user_source(planted_repo, "HEAD"), list(DEFAULT_FRAGMENTS))
    reports = {}
    for name, build in (("clean", clean), ("planted", planted)):
        reports[name] = tmp_path / f"{name}.json"
        done = memharness(
            "run",
            "--arch",
            "x86_64",
            "--scenario",
            SCENARIOS,
            "--kernel",
            f"x86_64={build}",
            "--artifacts",
            str(tmp_path / name),
            "--json",
            str(reports[name]),
            timeout=1800,
        )
        data = json.loads(reports[name].read_text())
        if name == "clean":
            assert done.returncode == 0, (data["new_splats"], done.stdout[-2000:])
            assert data["known_issues"], "the debug build meets registered known issues"
        else:
            assert done.returncode == 1, done.stdout[-2000:]
            (title,) = data["new_splats"]
            assert "memunmap_pages" in title or "planted" in title, title
    compared = memharness("compare", str(reports["clean"]), str(reports["planted"]), "--json")
    assert compared.returncode == 1, compared.stderr
    result = json.loads(compared.stdout)
    # every scenario that tears a ZONE_DEVICE mapping down meets it; nothing else is new
    assert {i["what"] for i in result["new"]} == {title}, result
    assert "legacy-lower-half" in {i["scenario"] for i in result["new"]}
    assert result["known"], "known issues stay known, not new"
    # the exported commit is built inside its own tree (relative paths: ccache stays warm)
    assert planted.parent == user_source(planted_repo, "HEAD").path
