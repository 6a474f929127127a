"""Kernels beyond 6.1: a test module that does not build for a kernel skips only the scenarios
that need it, and Debian's 6.12 (picked by its series name) runs the hotplug scenarios whose
states 6.1's defaults used to decide."""

import json
import os
from pathlib import Path

import pytest

from harness.arch import ArchProfile
from tests.integration.cli import run_json

BROKEN = """#include <linux/module.h>
#error "mh_broken is meant not to build"
MODULE_LICENSE("GPL");
"""

CATALOGUE = """
[[scenario]]
name = "needs-broken-module"
arch = "x86_64"
summary = "loads a test module that does not build"
layout = { kind = "hotplug", memory = "1G", slots = 2, maxmem = "2G" }
walkers = ["kpageflags"]
steps = [{ module = "mh_broken" }, { plug = "pc-dimm", id = "d0", size = "128M" }]

[[scenario]]
name = "plain-plug"
arch = "x86_64"
summary = "plugs a dimm and walks it, no test module"
layout = { kind = "hotplug", memory = "1G", slots = 2, maxmem = "2G" }
walkers = ["kpageflags"]
steps = [
  { plug = "pc-dimm", id = "d0", size = "128M" },
  { online = "d0", zone = "movable" },
  { walk = "d0" },
]
"""


@pytest.mark.x86_64
def test_a_module_that_does_not_build_skips_only_its_scenarios(
    arch: ArchProfile, tmp_path: Path
) -> None:
    kmods = tmp_path / "kmod"
    kmods.mkdir()
    (kmods / "mh_broken.c").write_text(BROKEN)
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text(CATALOGUE)
    env = {**os.environ, "MEMHARNESS_KMOD_PATH": str(kmods)}
    done, data = run_json(tmp_path, "--arch", "x86_64", "--catalogue", str(catalogue), env=env)
    assert done.returncode == 0, done.stderr  # a skip is loud, not a failure
    results = {r["scenario"]: r for r in data["results"]}
    skipped = results["needs-broken-module"]
    assert skipped["outcome"] == "skipped"
    assert "mh_broken" in skipped["reason"] and "meant not to build" in skipped["reason"]
    log = skipped["reason"].rsplit("full log: ", 1)[1].rstrip(")")
    assert "#error" in Path(log).read_text()  # the whole compiler output is kept
    assert results["plain-plug"]["outcome"] == "pass", results["plain-plug"]["reason"]
    assert "needs-broken-module" in done.stdout and "meant not to build" in done.stdout


def test_the_catalogue_on_debian_6_12_both_arches(tmp_path: Path) -> None:
    """Debian's 6.12, picked by its series name: no check fails on a version difference
    (hot-added memory onlined by default, blocks with hwpoison refused onlining, seed 002
    fixed), arm64 runs its fsdax/devdax modes with Debian's own kernel, walks and tears them
    down, and the arm64 test module cross-builds against Debian's 6.12 headers."""
    kernels = ("--kernel", "x86_64=debian:6.12", "--kernel", "arm64=debian:6.12")
    done, data = run_json(tmp_path, *kernels, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:]
    assert data["exit_code"] == 0 and data["new_splats"] == []
    assert data["possibly_fixed"] == [], "6.1 entries are not applicable to 6.12"
    assert all(k["release"].startswith("6.12.") for k in data["kernels"].values())
    results = {r["scenario"]: r for r in data["results"]}
    modes = results["dt-modes-at-boot"]
    assert modes["outcome"] == "pass", modes["reason"]
    steps = json.loads((Path(modes["artifacts"]) / "result.json").read_text())["details"]["steps"]
    names = [s["name"] for s in steps if s["status"] == "passed"]
    for mode in ("fsdax-mem", "fsdax-dev", "devdax-mem", "devdax-dev"):
        assert f"[{mode}] {mode}: kpageflags" in names, mode
        assert f"[{mode}] teardown" in names and f"[{mode}] after teardown: kpageflags" in names
    # seed 002 is fixed in 6.12: the scenario that reproduces it on 6.1 passes, as a pass
    assert results["partial-hot-remove-arm64"]["verdict"] == "passed"
    assert results["partial-hot-remove-arm64-rodata"]["outcome"] == "pass"  # mh_hotplug built
    for name in ("dimm-plug-cycle", "nvdimm-hotplug", "hotplug-churn"):
        assert results[name]["outcome"] == "pass", results[name]["reason"]
    argv = (Path(results["dimm-plug-cycle"]["artifacts"]) / "qemu.argv").read_text()
    assert "memhp_default_state=offline" in argv
