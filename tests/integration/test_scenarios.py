"""Every built-in layout boots on its arch with the default kernel, the guest shows the planned
map, and the walkers give a fixed kernel's answers; a layout that did not happen fails."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ArchProfile, get_arch
from harness.catalogue.model import Scenario, load_catalogue
from harness.collision.runner import CollisionRun
from harness.image.builder import GuestImage
from harness.kernel.model import Kernel
from harness.layout.model import Layout, Region
from harness.layout.planner import plan
from harness.outcome import Outcome
from harness.pytest_plugin import selected_arches
from harness.run import plan_scenario, run_scenario, vm_options
from harness.vm.machine import VM

Prepared = Callable[[ArchProfile], tuple[Kernel, GuestImage]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        arches = {a.name for a in selected_arches(metafunc.config)}
        chosen = [s for s in load_catalogue() if s.arch in arches and not s.hotplug]
        metafunc.parametrize("scenario", chosen, ids=[f"{s.name}-{s.arch}" for s in chosen])


def step(result_details: dict[str, Any], name: str) -> dict[str, Any]:
    """The first step called ``name`` in any boot of the scenario ("[boot] name")."""
    return next(s for s in result_details["steps"] if s["name"].split("] ")[-1] == name)


def test_scenario_on_the_default_kernel(
    scenario: Scenario, prepared: Prepared, tmp_path: Path
) -> None:
    arch = get_arch(scenario.arch)
    kernel, image = prepared(arch)
    result = run_scenario(scenario, kernel, image, tmp_path)
    if kernel.missing_options(scenario.requires):
        # Needs a built kernel: skipped, and the reason says how to get one.
        assert result.outcome == Outcome.SKIPPED
        assert "memharness kernel build" in result.reason
        assert json.loads((result.artifacts / "result.json").read_text())["outcome"] == "skipped"
        return
    assert result.outcome == Outcome.PASS, (result.reason, result.artifacts)
    expected = plan(scenario.layout, arch).collisions
    assert result.details["collision_sections"] == expected
    layout = step(result.details, "layout")
    assert layout["status"] == "passed"
    assert layout["data"]["block_states"] == {str(n): "online" for n in expected}
    for n in expected:
        walked = step(result.details, "as booted: kpageflags")["data"][f"section {n}"]
        assert set(walked["device"]) == {"names=NOPAGE"}
        assert walked["ram"] and not any("NOPAGE" in k for k in walked["ram"])
        if "soft-offline" in scenario.walkers:
            soft = step(result.details, "as booted: soft-offline")["data"][f"section {n}"]
            assert set(soft["device"]) == {"result=EIO"}
    options = kernel.config_options() or {}
    if options and options.get("CONFIG_ZONE_DEVICE") != "y" and scenario.modes:
        assert "kernel lacks CONFIG_ZONE_DEVICE" in step(result.details, "mode fsdax-mem")["reason"]
    assert (result.artifacts / "walkers").is_dir() and (result.artifacts / "layout.txt").is_file()


@pytest.mark.x86_64
def test_a_layout_that_did_not_happen_fails(prepared: Prepared, tmp_path: Path) -> None:
    """The guest boots with pmem in the lower half; the plan claims the upper half."""
    arch = get_arch("x86_64")
    kernel, image = prepared(arch)
    booted = Scenario(
        "mismatch",
        "x86_64",
        "pmem in the lower half",
        Layout.from_data(
            {"kind": "legacy", "memory": "2G", "pmem": [{"start": "0x40000000", "size": "64M"}]}
        ),
        modes=(),
        walkers=("kpageflags",),
        teardown=False,
    )
    claimed = plan(Layout("legacy", 2 << 30, pmem=(Region(0x44000000, 64 << 20),)), arch)
    options = vm_options(booted, plan_scenario(booted, kernel), "tcg")
    with VM(kernel, image, tmp_path, options) as vm:
        run = CollisionRun(booted, kernel, vm, claimed)
        run.run()
    assert any("no persistent memory at 64M@0x44000000" in f for f in run.failures)
    assert any("ZONE_DEVICE pfns must read KPF_NOPAGE" in f for f in run.failures)
    assert any("System RAM pfns of the section must be online" in f for f in run.failures)
