"""Each seed-003/004 scenario catches its bug class: a small patch of ours (tests/planted/)
breaks exactly what the scenario is about, and on a build of it the scenario goes red for that
reason, while the same scenarios on the clean build (same source, same fragments) are green.

- seed003-fork-shares-pinned-pages: fork() shares a longterm-pinned anonymous page (and THP)
  with the child instead of copying it (page_try_dup_anon_rmap's pin check skipped).  The
  parent's next write would copy the page away from the pin (mh-gup's
  `fork-parent-write-reaches-pin` check); on the DEBUG_VM build the kernel's own check of
  pinned pages (sanity_check_pinned_pages) catches it first, as a VM_BUG_ON_PAGE.
- seed004-pgmap-references-not-taken: memremap_pages() no longer takes the pages' references on
  their dev_pagemap, so the first teardown drops references nobody took: the percpu_ref
  underflow WARNING, in percpu_ref_switch_to_atomic_rcu (an RCU callback).

- seed003-migration-ignores-pins (on request: needs the numa fragment): migration takes
  longterm-pinned pages along; `gup-pin-numa-migrate`'s move_pages lands them in
  ZONE_MOVABLE and the pin goes stale, then DEBUG_VM's check at the unpin fires.
- seed004-pgmap-freed-before-memunmap (on request: needs the kasan fragment): nd_pmem frees its
  device (and the dev_pagemap in it) with the disk, before memremap_pages' release runs on it;
  `lifetime-cycles-kasan` goes red with KASAN's use-after-free report.

Each planted commit is made on top of Debian's source in the shared planted tree and built
inside it (relative paths: ccache hits for everything but the patched files).
"""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.arch import get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import debian_source, user_source
from harness.known.registry import load_registry
from tests.integration.cli import memharness
from tests.integration.kernel_tree import PLANTED_PATCHES, PlantedTree, commit_patch

pytestmark = [pytest.mark.kernel_build, pytest.mark.x86_64]

# patch → (scenario, outcome on the planted build, text its reason or splat title must show)
PLANTED = {
    # DEBUG_VM's own seed-003 check: the next pin finds the page no longer exclusive, before
    # mh-gup's fork-parent-write-reaches-pin check gets to run
    "seed003-fork-shares-pinned-pages": (
        "gup-pin-fork-migrate",
        "kernel-splat",
        "VM_BUG_ON_PAGE(!PageAnonExclusive(&folio->page) && !PageAnonExclusive(page)) in "
        "sanity_check_pinned_pages",
    ),
    "seed004-pgmap-references-not-taken": (
        "legacy-namespace-cycles",
        "kernel-splat",
        "WARNING in percpu_ref_switch_to_atomic_rcu",
    ),
}


def run(kernel: Path, scenarios: str, out: Path) -> tuple[int, dict[str, Any]]:
    report = out / "report.json"
    done = memharness(
        "run",
        "--arch",
        "x86_64",
        "--scenario",
        scenarios,
        "--kernel",
        f"x86_64={kernel}",
        "--artifacts",
        str(out),
        "--json",
        str(report),
        "-j",
        "1",
        timeout=1800,
    )
    return done.returncode, json.loads(report.read_text())


def test_clean_build_is_green_for_the_seed_scenarios(tmp_path: Path) -> None:
    clean = build_kernel(get_arch("x86_64"), debian_source(), list(DEFAULT_FRAGMENTS))
    code, data = run(clean, ",".join(s for s, _, _ in PLANTED.values()), tmp_path)
    rows = {r["scenario"]: r for r in data["results"]}
    assert code == 0, data["results"]
    # green: every scenario passes, or meets only a registered race (the namespace cycles race
    # kpageflags against mapping and unmapping, seed 000's flaky stable_page_flags window)
    flaky = [i for i in load_registry().issues if i.flaky]
    for row in rows.values():
        assert row["new_splats"] == [], row
        if row["outcome"] != "pass":
            assert row["verdict"] == "known issue", row
            assert all(any(i.matches_title(t) for i in flaky) for t in row["splats"]), row


def planted_row(
    tree: PlantedTree, patch: str, scenario: str, fragments: list[str], out: Path
) -> tuple[int, dict[str, Any]]:
    """The exit status and result row of ``scenario`` on a build of ``patch``."""
    commit = commit_patch(tree, PLANTED_PATCHES / f"{patch}.patch")
    source = user_source(tree.path, commit)
    kernel = build_kernel(get_arch("x86_64"), source, fragments)
    assert kernel.parent == source.path  # built inside its own tree: ccache stays warm
    code, data = run(kernel, scenario, out)
    (row,) = data["results"]
    return code, row


@pytest.mark.parametrize("patch", sorted(PLANTED))
def test_planted_seed_bug_turns_its_scenario_red(
    planted_tree: PlantedTree, patch: str, tmp_path: Path
) -> None:
    scenario, outcome, evidence = PLANTED[patch]
    code, row = planted_row(planted_tree, patch, scenario, list(DEFAULT_FRAGMENTS), tmp_path)
    assert code == 1, row
    assert row["outcome"] == outcome, row
    assert row["new_splats"] == [evidence], row  # new: no registered issue claims it


# Planted bugs whose scenario needs an option the default build lacks.  Another config shares
# no ccache entries (autoconf.h changes every object), so each costs a full build over CI's
# budget: they run when EXTRA_BUILDS is set, and CI's summary lists them as skipped.
EXTRA_BUILDS = "MEMHARNESS_PLANTED_EXTRA_BUILDS"
ON_REQUEST: dict[str, tuple[str, tuple[str, ...], str, tuple[str, tuple[str, ...]] | None]] = {
    # move_pages and every other migration takes longterm-pinned pages along (the pin check
    # of try_to_migrate_one and set_pmd_migration_entry skipped, the refcount check relaxed):
    # mh-gup sees the pinned pages land in ZONE_MOVABLE and the pin go stale, then DEBUG_VM's
    # check at the unpin finds the pinned page no longer exclusive
    "seed003-migration-ignores-pins": (
        "gup-pin-numa-migrate",
        ("numa",),
        "VM_BUG_ON_PAGE(!PageAnonExclusive(&folio->page) && !PageAnonExclusive(page)) in "
        "sanity_check_pinned_pages",
        # before the kernel's own check fired at the unpin, mh-gup's checks had seen the bug
        (
            "mh-gup anon 16",
            (
                '"move-pages-longterm-pinned", "ok": false',
                '"move-pages-pin-coherent", "ok": false',
            ),
        ),
    ),
    # nd_pmem frees its device, and the dev_pagemap inside it, with the disk, before the
    # memremap_pages release registered earlier runs on it: on the KASAN build the first
    # fsdax teardown of the namespace cycles is a KASAN use-after-free report
    "seed004-pgmap-freed-before-memunmap": (
        "lifetime-cycles-kasan",
        ("kasan",),
        "KASAN: use-after-free Read in memunmap_pages",
        None,
    ),
}


@pytest.mark.skipif(
    not os.environ.get(EXTRA_BUILDS),
    reason="needs a build with more options ("
    + "; ".join(f"{p}: --fragment {' '.join(f)}" for p, (_, f, _, _) in ON_REQUEST.items())
    + f"), a full kernel build of its own: set {EXTRA_BUILDS}=1 to run it",
)
@pytest.mark.parametrize("patch", sorted(ON_REQUEST))
def test_planted_seed_bug_on_a_build_with_more_options(
    planted_tree: PlantedTree, patch: str, tmp_path: Path
) -> None:
    scenario, fragments, evidence, helper = ON_REQUEST[patch]
    code, row = planted_row(
        planted_tree, patch, scenario, [*DEFAULT_FRAGMENTS, *fragments], tmp_path
    )
    assert code == 1, row
    assert row["outcome"] == "kernel-splat", row
    assert row["new_splats"] == [evidence], row
    if helper is not None:
        command, failed_checks = helper
        steps = json.loads((Path(row["artifacts"]) / "result.json").read_text())
        (ran,) = [c for c in steps["commands"] if c["command"] == command]
        for failed in failed_checks:
            assert failed in ran["stdout"], ran["stdout"][-2000:]
