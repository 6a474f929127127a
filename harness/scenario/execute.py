"""One scenario from plan to result: check the inputs, decide what to skip, boot, run, combine.

Everything that can be refused is refused before the first QEMU starts (``check_scenarios``
plans every layout and every hotplug step of a run up front).  What the kernel or the host
cannot do becomes a loud skip with the reason and the fix, never a silent pass.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.arch import get_arch
from harness.errors import InfraError, UserError
from harness.hotplug.plan import HotplugPlan, plan_steps
from harness.hotplug.runner import HotplugRun
from harness.image.builder import GuestImage, with_test_modules
from harness.kernel import Kernel
from harness.kernel.testmod import build_test_module
from harness.layout.planner import Plan, plan, render
from harness.outcome import Facts, decide
from harness.qemu.argv import machine_args
from harness.result import RunResult, artifacts_dir, finish_run, skipped_result
from harness.scenario.model import MODES, Mode, Scenario
from harness.scenario.record import GuestSteps, Step, missing_options
from harness.scenario.runner import ScenarioRun
from harness.session import reproducer
from harness.splat.parser import dedupe
from harness.vm.dtb import dtb_with_nodes
from harness.vm.machine import VM, VMOptions, require_qemu


@dataclass(frozen=True)
class Planned:
    layout: Plan
    hotplug: HotplugPlan | None


def plan_pure(scenario: Scenario) -> Planned:
    """The layout and step plans; UserError on anything impossible (pure: before downloads)."""
    layout_plan = plan(scenario.layout, get_arch(scenario.arch))
    hotplug = None
    if scenario.hotplug:
        try:
            hotplug = plan_steps(layout_plan, scenario.steps)
        except UserError as exc:
            raise UserError(f"scenario {scenario.name}: {exc}") from None
    return Planned(layout_plan, hotplug)


def plan_scenario(scenario: Scenario, kernel: Kernel) -> Planned:
    """``plan_pure`` plus the kernel options the layout cannot do without."""
    planned = plan_pure(scenario)
    kernel.check_requirements(list(planned.layout.requirements), f"scenario {scenario.name}")
    return planned


def vm_options(scenario: Scenario, planned: Planned, accel: str) -> VMOptions:
    """How to boot for ``scenario`` (dumps and edits the DTB on arm64 when the layout says)."""
    arch, layout = planned.layout.arch, scenario.layout
    dtb = None
    if planned.layout.dt_nodes:
        memory = f"{layout.memory >> 20}M"
        dtb = dtb_with_nodes(
            arch, require_qemu(arch), machine_args(arch, memory), planned.layout.dt_nodes
        )
    hotplug = planned.hotplug
    return VMOptions(
        memory=layout.memory,
        slots=layout.slots,
        maxmem=layout.maxmem,
        cmdline=(*planned.layout.cmdline, *scenario.cmdline),
        extra_args=planned.layout.qemu_args,
        dtb=dtb,
        uefi=bool(hotplug and hotplug.uefi),
        ports=hotplug.ports if hotplug else 1,
        accel=accel,
    )


def skip_reason(scenario: Scenario, kernel: Kernel, planned: Planned) -> str | None:
    """Why this kernel or host cannot run ``scenario`` (None: it can)."""
    needed = scenario.requires + (planned.hotplug.requires if planned.hotplug else ())
    absent = missing_options(kernel, tuple(dict.fromkeys(needed)))
    if absent:
        return (
            f"kernel {kernel.release} lacks {', '.join(absent)}: build one with "
            "`memharness kernel build` and pass it with --kernel"
        )
    if planned.hotplug and planned.hotplug.uefi and kernel.arch.firmware() is None:
        return (
            f"no UEFI firmware for {kernel.arch.name} (memory-device hotplug needs ACPI, which "
            "needs a UEFI boot): install qemu-efi-aarch64"
        )
    return None


def run_scenario(
    scenario: Scenario,
    kernel: Kernel,
    image: GuestImage,
    artifacts_root: Path,
    accel: str = "tcg",
    kernel_spec: str | None = None,
) -> RunResult:
    repro = reproducer("run", kernel.arch, kernel_spec, "--scenario", scenario.name)
    artifacts = artifacts_dir(artifacts_root, scenario.name, kernel.arch.name)
    planned = plan_scenario(scenario, kernel)
    reason = skip_reason(scenario, kernel, planned)
    if reason:
        return skipped_result(scenario.name, kernel, reason, repro, artifacts)
    options = vm_options(scenario, planned, accel)
    options.reproducer = repro
    if planned.hotplug:
        image = with_test_modules(image, kernel, planned.hotplug.test_modules)
    started = time.monotonic()
    (artifacts / "layout.txt").write_text(render(planned.layout) + "\n")
    # One boot runs every mode by reconfiguring; seeded modes need a boot each.
    boots: list[Mode | None] = [None]
    skipped: list[Step] = []
    if scenario.seed_modes:
        boots = []
        for name in scenario.modes:
            absent = missing_options(kernel, MODES[name].requires)
            if absent:
                skipped.append(
                    Step(f"mode {name} (seeded)", "skipped", f"kernel lacks {', '.join(absent)}")
                )
            else:
                boots.append(MODES[name])
    if not boots:
        reason = "; ".join(f"{st.name}: {st.reason}" for st in skipped)
        return skipped_result(scenario.name, kernel, reason, repro, artifacts)
    vms: list[VM] = []
    runs: list[GuestSteps] = []
    for seeded in boots:
        folder = artifacts if seeded is None else artifacts / f"boot-{seeded.name}"
        with VM(kernel, image, folder, options) as vm:
            run: GuestSteps
            if planned.hotplug is not None:
                run = HotplugRun(scenario, kernel, vm, planned.layout, planned.hotplug)
            else:
                run = ScenarioRun(scenario, kernel, vm, planned.layout, seeded)
            if vm.ready:
                try:
                    run.run()
                except InfraError as exc:  # this scenario's infrastructure, not the whole run
                    vm.state.infra = vm.state.infra or str(exc)
        vms.append(vm)
        runs.append(run)
    details = combine_details(scenario, runs, skipped)
    splats = [s for vm in vms for s in vm.splats()]
    if scenario.known_bug:
        details["known_bug"] = scenario.known_bug
        details["known_bug_reproduced"] = any(s.title == scenario.known_bug for s in splats)
    facts = [vm.facts() for vm in vms]
    failures = details["failures"]
    merged = Facts(
        splats=tuple(dedupe(splats)),
        hang=next((f.hang for f in facts if f.hang), None),
        infra=next((f.infra for f in facts if f.infra), None),
        failed_command=next((f.failed_command for f in facts if f.failed_command), None)
        or (f"check failed: {failures[0]}" if failures else None),
    )
    return finish_run(
        vms, scenario.name, repro, started, details, override=decide(merged), artifacts=artifacts
    )


def combine_details(
    scenario: Scenario, runs: list[GuestSteps], skipped: list[Step]
) -> dict[str, Any]:
    """One report for all of a scenario's boots (steps are prefixed with their boot)."""
    if len(runs) == 1 and not skipped:
        return runs[0].details()
    steps = [asdict(s) for s in skipped]
    failures: list[str] = []
    for run in runs:
        seeded = getattr(run, "seeded", None)
        label = f"[{seeded.name}] " if seeded else ""
        for step in run.steps:
            steps.append({**asdict(step), "name": label + step.name})
        failures += run.failures
    base: dict[str, Any] = runs[0].details() if runs else {"scenario": scenario.name}
    base["steps"] = steps
    base["skipped"] = [f"{s['name']}: {s['reason']}" for s in steps if s["status"] == "skipped"]
    base["failures"] = failures
    return base


def check_scenarios(scenarios: list[Scenario], kernels: dict[str, Kernel]) -> None:
    """All input checks of a run, before the first QEMU starts; builds the test modules the
    runnable scenarios need (a missing cross compiler is bad input too)."""
    for scenario in scenarios:
        kernel = kernels.get(scenario.arch)
        if kernel is None:
            raise UserError(f"no kernel for {scenario.arch}")
        planned = plan_scenario(scenario, kernel)
        if planned.hotplug and not skip_reason(scenario, kernel, planned):
            for name in planned.hotplug.test_modules:
                build_test_module(kernel, name)
