"""A planted regression on top of Debian's 6.1 source: the run that meets the known 6.1 bugs
on every debug build goes red for the new title only, and `memharness compare` against the
clean run names exactly that one as new.

The tree (tests/integration/kernel_tree.py) is a git repository of the Debian source whose
planted commit adds a WARN to memunmap_pages() (a ZONE_DEVICE teardown path every collision
scenario takes).  That commit is built exported, so the build runs in a directory inside that
tree and ccache hits for everything but the changed files (a minute or two, not a full build).
"""

import json
from pathlib import Path

import pytest

from harness.arch import get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import debian_source, user_source
from tests.integration.cli import memharness
from tests.integration.kernel_tree import PlantedTree

pytestmark = [pytest.mark.kernel_build, pytest.mark.x86_64]

# Scenarios that meet registered known issues on the debug build, and one that walks through
# memunmap_pages on every mode switch.
SCENARIOS = "legacy-lower-half,poison-then-teardown,hotplug-churn,dimm-soft-offline-unplug"


def test_only_the_planted_title_is_new(planted_tree: PlantedTree, tmp_path: Path) -> None:
    arch = get_arch("x86_64")
    clean = build_kernel(arch, debian_source(), list(DEFAULT_FRAGMENTS))
    planted_source = user_source(planted_tree.path, planted_tree.planted)
    planted = build_kernel(arch, planted_source, list(DEFAULT_FRAGMENTS))
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
            "-j",
            "1",  # see the full-catalogue test: an unclassified flaky splat at -j 2
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
    assert planted.parent == planted_source.path
