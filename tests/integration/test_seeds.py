"""Seeds 003 and 004 on Debian's stock 6.1 kernels, through the CLI as users run them.

What each scenario is about must actually happen, not only pass: mh-gup got THPs on the
hot-plugged movable memory, its longterm pin migrated them out of ZONE_MOVABLE, the FOLL_GET
page kept its block from going offline; the kmem cycle ran its rounds; the held-open devdax
disable meets the registered lifetime bug (the scenario's own known bug) on 6.1.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli import memharness, run_json


def helper_checks(row: dict[str, Any], command: str) -> dict[str, Any]:
    """The JSON mh-gup printed for ``command`` in the run's transcript."""
    data = json.loads((Path(row["artifacts"]) / "result.json").read_text())
    (done,) = [c for c in data["commands"] if c["command"] == command]
    assert done["exit_code"] == 0, done
    out: dict[str, Any] = json.loads(done["stdout"])
    return out


def passing_gup_run(
    arch: str, scenario: str, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``scenario`` run through the CLI, passed, and its `mh-gup anon 16` output with every
    check ok: (the output, its checks by name)."""
    done, data = run_json(tmp_path, "--arch", arch, "--scenario", scenario)
    (row,) = data["results"]
    assert done.returncode == 0 and row["outcome"] == "pass", row
    gup = helper_checks(row, "mh-gup anon 16")
    checks = {c["name"]: c for c in gup["checks"]}
    assert all(c["ok"] for c in checks.values()), gup
    return gup, checks


@pytest.mark.parametrize(
    ("arch", "scenario"),
    [("x86_64", "gup-pin-fork-migrate"), ("arm64", "gup-pin-fork-migrate-arm64")],
)
def test_seed_003_pins_survive_fork_mremap_split_and_offline(
    arch: str, scenario: str, tmp_path: Path
) -> None:
    gup, checks = passing_gup_run(arch, scenario, tmp_path)
    assert gup["thps"] > 0, "THP-backed: the seed is about THP split and migration"
    assert gup["pages_on_movable"] > 0, "the helper's memory sits on the hot-plugged block"
    assert "1024 of 1024 pages were on ZONE_MOVABLE" in checks["longterm-pin"]["detail"]
    for name in (
        "longterm-pin-leaves-movable",
        "fork-child-writes-stay-private",
        "fork-parent-write-reaches-pin",
        "mremap-pin-follows",
        "split-pin-coherent",
        "get-pin-coherent",
        "offline-after-release",
    ):
        assert name in checks, name
    assert "skipped" not in checks["offline-with-get-pin"]["detail"]
    assert "EBUSY" in checks["soft-offline-pinned"]["detail"]


@pytest.mark.parametrize(
    ("arch", "scenario"),
    [("x86_64", "gup-pin-numa-migrate"), ("arm64", "gup-pin-numa-migrate-arm64")],
)
def test_seed_003_move_pages_across_numa_nodes(arch: str, scenario: str, tmp_path: Path) -> None:
    _, checks = passing_gup_run(arch, scenario, tmp_path)
    # the guest had two memory nodes and migration really ran: unpinned pages arrived on
    # node 1, longterm-pinned ones did not (and stayed out of ZONE_MOVABLE)
    assert "move-pages" not in checks, checks.get("move-pages")
    unpinned = checks["move-pages-unpinned"]["detail"]
    arrived = int(unpinned.split(" arrived")[0].rsplit(" ", 1)[1])
    assert arrived > 512, unpinned
    assert " 0 arrived, 0 in ZONE_MOVABLE" in checks["move-pages-longterm-pinned"]["detail"]
    assert "move-pages-pin-coherent" in checks
    if arch == "x86_64":
        # the FOLL_GET page, moved to node 1 first, kept its block from going offline (on
        # arm64 node 1 has boot memory too: the page may land there, and the check says so)
        assert "skipped" not in checks["offline-with-get-pin"]["detail"]
        assert "get-pin-coherent" in checks and "offline-after-release" in checks


@pytest.mark.x86_64
def test_seed_004_lifetime_loops_on_debian_6_1(tmp_path: Path) -> None:
    scenarios = (
        "devdax-held-disable,fsdax-held-unbind,fsdax-direct-io-unbind,kmem-system-ram-cycle,"
        "legacy-namespace-cycles"
    )
    done, data = run_json(tmp_path, "--arch", "x86_64", "--scenario", scenarios, "-j", "2")
    results = {r["scenario"]: r for r in data["results"]}
    assert done.returncode == 0, done.stdout[-3000:]
    for held in ("devdax-held-disable", "fsdax-held-unbind", "fsdax-direct-io-unbind"):
        assert results[held]["verdict"] == "known bug (expected)", results[held]
        assert results[held]["known_bug_reproduced"]
        assert results[held]["new_splats"] == []
    # the read was in flight when nd_pmem went, and its completion is what faulted
    direct = Path(results["fsdax-direct-io-unbind"]["artifacts"])
    commands = json.loads((direct / "result.json").read_text())["commands"]
    (hold,) = [c for c in commands if c["command"].startswith("mh-gup hold file")]
    assert '"direct_read": "in flight"' in hold["stdout"], hold["stdout"]
    console = (direct / "console.log").read_text()
    assert "__blkdev_direct_IO_simple" in console.partition("__bio_release_pages")[2]
    kmem = helper_checks(
        results["kmem-system-ram-cycle"],
        "MH_RACE_WALKERS=kpageflags mh-lifetime kmem dax0.0 2 1048576 131072",
    )
    assert kmem == {"rounds": 2}
    cycles = results["legacy-namespace-cycles"]
    assert cycles["outcome"] == "pass", cycles
    steps = json.loads((Path(cycles["artifacts"]) / "result.json").read_text())["details"]["steps"]
    (loop,) = [s for s in steps if s["name"].endswith("cycles x4")]
    assert loop["status"] == "passed" and loop["data"] == {"rounds": 4}
    pinned = [s for s in steps if ": pinned " in s["name"]]
    assert {s["status"] for s in pinned} == {"passed"} and len(pinned) == 8  # 4 modes x 2


def test_every_scenario_says_which_seed_it_covers() -> None:
    done = memharness("scenarios", "--json")
    assert done.returncode == 0, done.stderr
    scenarios = json.loads(done.stdout)
    seeds = {(seed, s["arch"]) for s in scenarios for seed in s["seeds"]}
    for seed in ("000", "001", "003", "004"):
        assert {(seed, "x86_64"), (seed, "arm64")} <= seeds, seed
    assert ("002", "arm64") in seeds
