"""Each seed-003/004 scenario catches its bug class: a small patch of ours (tests/planted/)
breaks exactly what the scenario is about, and on a build of it the scenario goes red for that
reason, while the same scenarios on the clean build (same source, same fragments) are green:
that side is test_kernel_build's full catalogue on the debug builds, which runs every one of
them (and asserts each here ran, not skipped), so this module does not boot them again.

- seed003-fork-shares-pinned-pages: fork() shares a longterm-pinned anonymous page (and THP)
  with the child instead of copying it (page_try_dup_anon_rmap's pin check skipped).  The
  parent's next write would copy the page away from the pin (mh-gup's
  `fork-parent-write-reaches-pin` check); on the DEBUG_VM build the kernel's own check of
  pinned pages (sanity_check_pinned_pages) catches it first, as a VM_BUG_ON_PAGE.
- seed004-pgmap-references-not-taken: memremap_pages() no longer takes the pages' references on
  their dev_pagemap, so the first teardown drops references nobody took: the percpu_ref
  underflow WARNING, in percpu_ref_switch_to_atomic_rcu (an RCU callback).

Both break common mm/ code, so each is built for both arches: on arm64 they turn
`gup-pin-fork-migrate-arm64` and `dt-namespace-cycles-arm64` red the same way.

- seed003-migration-ignores-pins (on request: needs the numa fragment): migration takes
  longterm-pinned pages along; `gup-pin-numa-migrate`'s move_pages lands them in
  ZONE_MOVABLE and the pin goes stale, then DEBUG_VM's check at the unpin fires.
- seed004-pgmap-freed-before-memunmap (on request: needs the kasan fragment): nd_pmem frees its
  device (and the dev_pagemap in it) with the disk, before memremap_pages' release runs on it;
  `lifetime-cycles-kasan` goes red with KASAN's use-after-free report.
- seed004-kmem-unbind-leaves-memory (on request: one build with the numa and cxl fragments):
  dax/kmem's unbind claims success without hot-removing the memory; `kmem-system-ram-cycle`
  and `cxl-pmem-region-cycle` fail at their first return to device DAX, named by the helpers'
  /proc/iomem check (the kernel only logs that device DAX could not reserve its range).

Each planted commit is made on top of Debian's source in the shared planted tree and built
inside it (relative paths: ccache hits for everything but the patched files).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.arch import get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import debian_source, user_source
from harness.report.summary import KNOWN_ISSUE
from tests.integration.cli import memharness
from tests.integration.kernel_tree import PLANTED_PATCHES, PlantedTree, commit_patch

pytestmark = pytest.mark.kernel_build

# Another config shares no ccache entries with the default build (autoconf.h changes every
# object), so each extra config costs a full build over CI's budget: planted bugs that need
# one run when EXTRA_BUILDS is set, and CI's summary lists them as skipped.
EXTRA_BUILDS = "MEMHARNESS_PLANTED_EXTRA_BUILDS"


@dataclass(frozen=True)
class Planted:
    """``patch`` built for ``arch`` with ``fragments`` on top of the defaults turns
    ``scenario`` red with ``evidence``: its one new splat title (outcome kernel-splat) or a
    text of its reason (command-failed: a helper's check caught it, the kernel said nothing).
    ``helper`` is (guest command, texts its output must show) when a memharness helper saw
    the bug before the kernel's own check."""

    patch: str
    arch: str
    scenario: str
    evidence: str
    fragments: tuple[str, ...] = ()
    helper: tuple[str, tuple[str, ...]] | None = None
    outcome: str = "kernel-splat"

    @property
    def id(self) -> str:
        return f"{self.patch}-{self.scenario}"


PIN_CHECK = (
    "VM_BUG_ON_PAGE(!PageAnonExclusive(&folio->page) && !PageAnonExclusive(page)) in "
    "sanity_check_pinned_pages"
)
UNDERFLOW = "WARNING in percpu_ref_switch_to_atomic_rcu"
# before the kernel's own check fired at the unpin, mh-gup's checks had seen the bug
MOVE_PAGES = "mh-gup anon 16"
STALE_PIN = '"move-pages-pin-coherent", "ok": false'
# dax/kmem's unbind claims success without hot-removing the memory: its System RAM stays
# (offline) in /proc/iomem, device DAX cannot reserve the range again (EBUSY, said only in
# dmesg), and the helper's check after the unbind names it (guest-scripts/mh-loop-lib)
KMEM_LEFT = "kmem unbind left its System RAM behind in /proc/iomem"

# A patch breaks common mm/ or driver code, so it is built for every arch whose twin scenario
# exists; an arch's default-fragment builds share ccache with CI's clean build of that arch.
PLANTED = [
    # DEBUG_VM's own seed-003 check: the next pin finds the page no longer exclusive, before
    # mh-gup's fork-parent-write-reaches-pin check gets to run
    Planted("seed003-fork-shares-pinned-pages", "x86_64", "gup-pin-fork-migrate", PIN_CHECK),
    Planted("seed003-fork-shares-pinned-pages", "arm64", "gup-pin-fork-migrate-arm64", PIN_CHECK),
    # the first teardown drops references nobody took: percpu_ref's underflow WARNING, from
    # its RCU callback
    Planted("seed004-pgmap-references-not-taken", "x86_64", "legacy-namespace-cycles", UNDERFLOW),
    Planted("seed004-pgmap-references-not-taken", "arm64", "dt-namespace-cycles-arm64", UNDERFLOW),
    # move_pages and every other migration takes longterm-pinned pages along (the pin check
    # of try_to_migrate_one and set_pmd_migration_entry skipped, the refcount check relaxed):
    # mh-gup sees the pinned pages land in ZONE_MOVABLE and the pin go stale, then DEBUG_VM's
    # check at the unpin finds the pinned page no longer exclusive
    Planted(
        "seed003-migration-ignores-pins",
        "x86_64",
        "gup-pin-numa-migrate",
        PIN_CHECK,
        ("numa",),
        (MOVE_PAGES, ('"move-pages-longterm-pinned", "ok": false', STALE_PIN)),
    ),
    # the same on arm64, where node 1 has boot RAM beside its movable virtio-mem: the pinned
    # pages land in ZONE_NORMAL there (so move-pages-longterm-pinned holds), but the pin
    # still goes stale
    Planted(
        "seed003-migration-ignores-pins",
        "arm64",
        "gup-pin-numa-migrate-arm64",
        PIN_CHECK,
        ("numa",),
        (MOVE_PAGES, (STALE_PIN,)),
    ),
    # nd_pmem frees its device, and the dev_pagemap inside it, with the disk, before the
    # memremap_pages release registered earlier runs on it: on the KASAN build the first
    # fsdax teardown of the namespace cycles is a KASAN use-after-free report
    Planted(
        "seed004-pgmap-freed-before-memunmap",
        "x86_64",
        "lifetime-cycles-kasan",
        "KASAN: use-after-free Read in memunmap_pages",
        ("kasan",),
    ),
    # one build (numa and cxl) for both scenarios that give kmem memory back to device DAX
    *(
        Planted(
            "seed004-kmem-unbind-leaves-memory",
            "x86_64",
            scenario,
            KMEM_LEFT,
            ("numa", "cxl"),
            outcome="command-failed",
        )
        for scenario in ("kmem-system-ram-cycle", "cxl-pmem-region-cycle")
    ),
]
# the default-fragment ones' clean side: test_kernel_build's full debug catalogue
PLANTED_SCENARIOS = {p.scenario for p in PLANTED if not p.fragments}
# each extra build, with the scenarios that must be green on its clean twin
ON_REQUEST_BUILDS: dict[tuple[str, tuple[str, ...]], list[str]] = {}
for _planted in PLANTED:
    if _planted.fragments:
        ON_REQUEST_BUILDS.setdefault((_planted.arch, _planted.fragments), []).append(
            _planted.scenario
        )

on_request = pytest.mark.skipif(
    not os.environ.get(EXTRA_BUILDS),
    reason="needs builds with more options ("
    + "; ".join(f"{a}: --fragment {' '.join(f)}" for a, f in ON_REQUEST_BUILDS)
    + f"), a full kernel build each: set {EXTRA_BUILDS}=1 to run them",
)


def run(arch: str, kernel: Path, scenarios: str, out: Path) -> tuple[int, dict[str, Any]]:
    report = out / "report.json"
    done = memharness(
        "run",
        "--arch",
        arch,
        "--scenario",
        scenarios,
        "--kernel",
        f"{arch}={kernel}",
        "--artifacts",
        str(out),
        "--json",
        str(report),
        "-j",
        "1",
        timeout=1800,
    )
    return done.returncode, json.loads(report.read_text())


def planted_row(
    tree: PlantedTree, patch: str, arch: str, scenario: str, fragments: list[str], out: Path
) -> tuple[int, dict[str, Any]]:
    """The exit status and result row of ``scenario`` on an ``arch`` build of ``patch``."""
    commit = commit_patch(tree, PLANTED_PATCHES / f"{patch}.patch")
    source = user_source(tree.path, commit)
    kernel = build_kernel(get_arch(arch), source, fragments)
    assert kernel.parent == source.path  # built inside its own tree: ccache stays warm
    code, data = run(arch, kernel, scenario, out)
    (row,) = data["results"]
    return code, row


@pytest.mark.parametrize(
    "planted",
    [pytest.param(p, id=p.id, marks=[on_request] if p.fragments else []) for p in PLANTED],
)
def test_planted_seed_bug_turns_its_scenario_red(
    planted_tree: PlantedTree, planted: Planted, tmp_path: Path
) -> None:
    fragments = [*DEFAULT_FRAGMENTS, *planted.fragments]
    code, row = planted_row(
        planted_tree, planted.patch, planted.arch, planted.scenario, fragments, tmp_path
    )
    assert code == 1, row
    assert row["outcome"] == planted.outcome, row
    if planted.outcome == "kernel-splat":
        assert row["new_splats"] == [planted.evidence], row  # new: no registered issue claims it
    else:
        assert row["new_splats"] == [] and planted.evidence in row["reason"], row
    if planted.helper is not None:
        command, failed_checks = planted.helper
        steps = json.loads((Path(row["artifacts"]) / "result.json").read_text())
        (ran,) = [c for c in steps["commands"] if c["command"] == command]
        for failed in failed_checks:
            assert failed in ran["stdout"], ran["stdout"][-2000:]


@on_request
@pytest.mark.parametrize(
    ("arch", "fragments"),
    sorted(ON_REQUEST_BUILDS),
    ids=lambda v: "+".join(v) if isinstance(v, tuple) else v,
)
def test_clean_build_with_more_options_is_green(
    arch: str, fragments: tuple[str, ...], tmp_path: Path
) -> None:
    """The clean twin of each on-request build (Debian's source, the same fragments: ccache
    hits for all but the planted files) passes the scenarios its planted builds turn red, or
    meets only registered known issues (the KASAN build meets seed 000's flaky race in most
    runs of lifetime-cycles-kasan): nothing new, so never the planted bug, which no entry
    registers."""
    clean = build_kernel(get_arch(arch), debian_source(), [*DEFAULT_FRAGMENTS, *fragments])
    scenarios = ON_REQUEST_BUILDS[arch, fragments]
    code, data = run(arch, clean, ",".join(dict.fromkeys(scenarios)), tmp_path)
    assert code == 0, data["results"]
    rows = {r["scenario"]: r for r in data["results"]}
    assert set(rows) == set(scenarios), rows
    for r in rows.values():
        assert r["outcome"] == "pass" or (
            r["outcome"] == "kernel-splat" and r["verdict"] == KNOWN_ISSUE and not r["new_splats"]
        ), r
