"""Runs one scenario on a booted guest: prove the layout, switch modes, walk, tear down.

Every step is recorded (passed / failed / skipped with the reason) in result.json; walker
output is kept whole under walkers/.  A layout the guest does not show, or a walker answer a
fixed kernel would not give, is a failed check; a splat ends the run as kernel-splat.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.image.builder import GuestImage
from harness.kernel import Kernel
from harness.kernel.kconfig import Requirement
from harness.layout.model import Region
from harness.layout.planner import RAM, Plan, plan, render
from harness.outcome import Facts, decide
from harness.qemu.argv import machine_args
from harness.result import RunResult, artifacts_dir, finish_run, skipped_result
from harness.scenario import probes
from harness.scenario import walkers as walk
from harness.scenario.model import MODES, Mode, Scenario
from harness.session import reproducer
from harness.splat.parser import dedupe
from harness.vm.dtb import dtb_with_nodes
from harness.vm.machine import VM, VMOptions, require_qemu

NAMESPACE = "namespace0.0"
DEVICE_IOMEM_NAMES = ("Persistent Memory", "pmem", "namespace", "dax")  # what claims pmem
PMEM_DRIVERS = ("nd_pmem", "dax_pmem", "device_dax")  # bind namespaces: loaded after seeding
POISON_STRIDE = 4096  # a handful of pages per section is enough to leave poison behind
PROBE_TIMEOUT = 60.0
WALK_TIMEOUT = 180.0


@dataclass
class Step:
    name: str
    status: str  # passed | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


def missing_options(kernel: Kernel, names: tuple[str, ...]) -> list[str]:
    """Options among ``names`` the kernel's .config lacks ([] when there is no .config)."""
    options = kernel.config_options()
    if options is None:
        return []
    return [
        str(r.option) for r in (Requirement.parse(n) for n in names) if not r.satisfied_by(options)
    ]


def prepare(scenario: Scenario, kernel: Kernel, accel: str) -> tuple[Plan, VMOptions]:
    """Plans the layout and checks the kernel before anything starts (UserError on bad input)."""
    arch = kernel.arch
    layout_plan = plan(scenario.layout, arch)
    kernel.check_requirements(list(layout_plan.requirements), f"scenario {scenario.name}")
    layout = scenario.layout
    dtb = None
    if layout_plan.dt_nodes:
        memory = f"{layout.memory >> 20}M"
        dtb = dtb_with_nodes(
            arch, require_qemu(arch), machine_args(arch, memory), layout_plan.dt_nodes
        )
    options = VMOptions(
        memory=layout.memory,
        slots=layout.slots,
        maxmem=layout.maxmem,
        cmdline=layout_plan.cmdline,
        extra_args=layout_plan.qemu_args,
        dtb=dtb,
        accel=accel,
    )
    return layout_plan, options


class ScenarioRun:
    def __init__(
        self,
        scenario: Scenario,
        kernel: Kernel,
        vm: VM,
        layout_plan: Plan,
        seeded: Mode | None = None,
    ) -> None:
        self.seeded = seeded  # configure this mode before any driver binds (one mode per boot)
        self.scenario = scenario
        self.kernel = kernel
        self.vm = vm
        self.plan = layout_plan
        self.steps: list[Step] = []
        self.failures: list[str] = []
        self.walkers: list[str] = []  # the scenario's walkers this kernel can run

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str) -> Iterator[Step]:
        step = Step(name, "passed")
        self.steps.append(step)
        start = time.monotonic()
        try:
            yield step
        finally:
            step.seconds = time.monotonic() - start

    def _fail(self, step: Step, reason: str) -> None:
        step.status = "failed"
        step.reason = step.reason or reason
        self.failures.append(f"{self.scenario.name}: {step.name}: {reason}")

    def _guest(self, step: Step, command: str, timeout: float = PROBE_TIMEOUT) -> str | None:
        result = self.vm.run(command, timeout=timeout, check=False)
        if result.exit_code != 0:
            if self.vm.ready:
                err = result.stderr.decode(errors="replace").strip().splitlines()
                self._fail(
                    step, f"`{command}` exited {result.exit_code}{': ' + err[-1] if err else ''}"
                )
            return None
        return result.text

    @property
    def alive(self) -> bool:
        return self.vm.ready

    # -- steps -------------------------------------------------------------------------------
    def load_modules(self) -> None:
        with self._step("modules") as step:
            self._load_modules(step)

    def _load_modules(self, step: Step) -> None:
        wanted = list(self.plan.modules)
        for mode in self.scenario.modes:
            if not missing_options(self.kernel, MODES[mode].requires):
                wanted += MODES[mode].modules
        for name in self.walkers:
            wanted += walk.WALKERS[name].modules
        wanted += [m for mapping in walk.MAPPINGS.values() for m in mapping.modules]
        if self.seeded is not None:
            wanted = [m for m in wanted if m not in PMEM_DRIVERS]  # loaded once seeded
        loadable = [m for m in dict.fromkeys(wanted) if m in self.vm.image.modules]
        step.data["loaded"] = loadable
        if loadable:
            self._guest(step, "for m in " + " ".join(loadable) + "; do modprobe $m || exit 1; done")
        self._guest(step, f"mh-wait 20 sh -c 'ndctl list -Ni | grep -q {NAMESPACE}'")

    def verify_layout(self) -> None:
        """The guest's iomem and memory blocks must show the planned layout."""
        with self._step("layout") as step:
            self._verify_layout(step)

    def _verify_layout(self, step: Step) -> None:
        sections = " ".join(str(n) for n in self.plan.collisions)
        text = self._guest(
            step,
            "cat /proc/iomem; echo ==; cat "
            "/sys/devices/system/memory/block_size_bytes; for n in "
            f"{sections}; do echo $n $(cat /sys/devices/system/memory/memory$n/"
            "state 2>/dev/null || echo absent); done",
        )
        if text is None:
            return
        iomem_text, _, rest = text.partition("==\n")
        entries = probes.parse_iomem(iomem_text)
        lines = rest.split("\n")
        block = int(lines[0].strip() or "0", 16)
        states = dict(ln.split(maxsplit=1) for ln in lines[1:] if ln.strip())
        step.data = {
            "block_size": block,
            "block_states": states,
            "collision_sections": self.plan.collisions,
        }
        if block != self.plan.section_size:
            self._fail(
                step,
                f"memory block size {block:#x} is not the section size {self.plan.section_size:#x}",
            )
        for n in self.plan.collisions:
            if states.get(str(n)) != "online":
                self._fail(
                    step,
                    f"memory block {n} is {states.get(str(n))!r}, not online: "
                    "its System RAM part did not come up",
                )
        for region in self.plan.device:
            if not probes.covered(region, entries, DEVICE_IOMEM_NAMES):
                self._fail(step, f"/proc/iomem shows no persistent memory at {region}")
        for section in self.plan.sections:
            if not section.collides:
                continue
            for start, count in section.pfns(RAM):
                ram = Region(start * 4096, count * 4096)
                if not probes.covered(ram, entries, ("System RAM",)):
                    self._fail(
                        step, f"/proc/iomem shows no System RAM at {ram} (section {section.number})"
                    )

    def switch(self, mode: Mode) -> bool:
        """Reconfigures the namespace; False when the mode is skipped or failed."""
        with self._step(f"mode {mode.name}") as step:
            return self._switch(step, mode)

    def _switch(self, step: Step, mode: Mode) -> bool:
        absent = missing_options(self.kernel, mode.requires)
        if absent:
            step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
            return False
        command = f"ndctl create-namespace -f -e {NAMESPACE} {mode.ndctl}"
        out = self._guest(step, self._racing(command))
        if out is None:
            return False
        step.data["ndctl"] = json.loads(out) if out.strip().startswith("{") else out
        step.data["racing_walks"] = self._race_count(step)
        return self._check_zone(step, mode)

    def _check_zone(self, step: Step, mode: Mode) -> bool:
        """In a ZONE_DEVICE mode, the Device zone must span the layout's pmem."""
        zones = self._guest(step, "cat /proc/zoneinfo")
        if zones is None:
            return False
        zone = probes.device_zone(probes.parse_zoneinfo(zones))
        step.data["device_zone"] = asdict(zone) if zone else None
        device_pages = sum(r.size for r in self.plan.device) // 4096
        if mode.zone_device and (zone is None or zone.spanned < device_pages):
            self._fail(
                step,
                f"zone Device spans {zone.spanned if zone else 0} pages, the "
                f"layout has {device_pages} pages of pmem: no ZONE_DEVICE mapping",
            )
        return step.status == "passed"

    def seed(self, mode: Mode) -> bool:
        """Gives the namespace its mode through the region's pfn or dax seed, then loads the
        drivers: the pages are mapped once, in that mode, with nothing torn down first."""
        with self._step(f"mode {mode.name} (seeded)") as step:
            absent = missing_options(self.kernel, mode.requires)
            if absent:
                step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
                return False
            kind = "dax" if mode.mapping == "devdax" else "pfn"
            drivers = " ".join(
                m
                for m in (("dax_pmem", "device_dax") if kind == "dax" else ("nd_pmem",))
                if m in self.vm.image.modules
            )
            device = "/dev/dax0.0" if kind == "dax" else "/dev/pmem0"
            script = (
                f"cd /sys/bus/nd/devices && seed=$(cat region0/{kind}_seed) && "
                "cat /proc/sys/kernel/random/uuid > $seed/uuid && "
                f"echo {'pmem' if 'map=dev' in mode.ndctl else 'ram'} > $seed/mode && "
                f"echo {NAMESPACE} > $seed/namespace && "
                f"for m in {drivers}; do modprobe $m || exit 1; done && "
                f"mh-wait 20 test -e {device} && ndctl list -N"
            )
            out = self._guest(step, script)
            if out is None:
                return False
            step.data["ndctl"] = json.loads(out) if out.strip().startswith("[") else out
            return self._check_zone(step, mode)

    def walk_all(self, label: str) -> None:
        for name in self.walkers:
            with self._step(f"{label}: {name}") as step:
                self._walk(step, walk.WALKERS[name])

    def _walk(self, step: Step, walker: walk.Walker) -> None:
        for section in self.plan.sections:
            if not section.collides or not self.alive:
                continue
            start = section.start // 4096
            count = self.plan.section_size // 4096
            out = self._guest(step, walker.command(start, count), timeout=WALK_TIMEOUT)
            if out is None:
                continue
            result = json.loads(out)
            self._save(f"{step.name}-section{section.number}.json", out)
            step.data[f"section {section.number}"] = walk.summary(result, section)
            for failure in walk.check(walker.name, result, section):
                self._fail(step, failure)

    def madvise_all(self, mode: Mode) -> None:
        """madvise(MADV_SOFT_OFFLINE) on anonymous and file memory, and on the namespace's own
        pages through the mapping this mode offers (an fsdax file or the devdax device)."""
        if "soft-offline" not in self.walkers:
            return
        for name in ("anon", "file", *([mode.mapping] if mode.mapping else [])):
            mapping = walk.MAPPINGS[name]
            with self._step(f"{mode.name}: madvise {name}") as step:
                absent = missing_options(self.kernel, mapping.requires)
                if absent:
                    step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
                    continue
                if mapping.setup and self._guest(step, mapping.setup) is None:
                    continue
                out = self._guest(step, mapping.walk)
                if mapping.cleanup:
                    self._guest(step, mapping.cleanup)
                if out is None:
                    continue
                result = json.loads(out)
                step.data = result
                if result.get("result") != mapping.expect:
                    self._fail(
                        step,
                        f"madvise(MADV_SOFT_OFFLINE) on a {name} mapping gave "
                        f"{result.get('result', result)}, expected {mapping.expect}",
                    )

    def _save(self, name: str, text: str) -> None:
        folder = self.vm.artifacts / "walkers"
        folder.mkdir(exist_ok=True)
        (folder / name.replace(" ", "_")).write_text(text)

    def run_seeded(self, mode: Mode) -> None:
        # The layout is verified once the namespace is bound: some regions (of_pmem) only show
        # in /proc/iomem when their driver claims them.
        if self.alive and self.seed(mode) and self.alive:
            self.verify_layout()
        if self.alive and not any(st.status == "failed" for st in self.steps):
            self.walk_all(mode.name)
            self.madvise_all(mode)
        if self.scenario.poison and self.alive:
            self.poison()
        if self.scenario.teardown and self.alive and self.teardown():
            self.walk_all("after teardown")

    def teardown(self) -> bool:
        """Disables the namespace: its pages are unmapped (memunmap_pages), the section's
        memmap is cleaned up, and the walkers get to visit what is left."""
        with self._step("teardown") as step:
            ok = self._guest(step, self._racing(f"ndctl disable-namespace {NAMESPACE}"))
            step.data["racing_walks"] = self._race_count(step)
            return ok is not None

    def poison(self) -> None:
        """hwpoisons a few free RAM pages of each shared section and leaves them poisoned, so
        the teardown that follows runs with num_poisoned_pages > 0."""
        with self._step("poison") as step:
            for section in self.plan.sections:
                if section.collides and self.alive:
                    start, count = section.start // 4096, self.plan.section_size // 4096
                    out = self._guest(
                        step, f"mh-walk hwpoison {start} {count} {POISON_STRIDE} keep"
                    )
                    if out is not None:
                        step.data[f"section {section.number}"] = walk.summary(
                            json.loads(out), section
                        )

    def _racing(self, command: str) -> str:
        """``command`` with walkers looping over the first shared section while it runs."""
        section = next((s for s in self.plan.sections if s.collides), None)
        if section is None or not {"kpageflags", "soft-offline"} <= set(self.walkers):
            return command
        return f"mh-race {section.start // 4096} {self.plan.section_size // 4096} {command}"

    def _race_count(self, step: Step) -> int | None:
        out = self._guest(step, "cat /tmp/mh-race.json 2>/dev/null || echo '{}'")
        return json.loads(out).get("walks") if out else None

    def skip_unsupported_walkers(self) -> None:
        """One skipped step per walker the kernel cannot run (not one per mode)."""
        for name in self.scenario.walkers:
            absent = missing_options(self.kernel, walk.WALKERS[name].requires)
            if absent:
                with self._step(f"walker {name}") as step:
                    step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
            else:
                self.walkers.append(name)

    def run(self) -> None:
        self.skip_unsupported_walkers()
        self.load_modules()
        if self.seeded is not None:
            self.run_seeded(self.seeded)
            return
        if self.alive:
            self.verify_layout()
        if self.alive:
            self.walk_all("as booted")
        for name in self.scenario.modes:
            if not self.alive:
                return
            if self.switch(MODES[name]):
                self.walk_all(name)
                self.madvise_all(MODES[name])
        if self.scenario.poison and self.alive:
            self.poison()
        if self.scenario.teardown and self.alive and self.teardown():
            self.walk_all("after teardown")

    def details(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "summary": self.scenario.summary,
            "collision_sections": self.plan.collisions,
            "layout": render(self.plan),
            "steps": [asdict(s) for s in self.steps],
            "skipped": [f"{s.name}: {s.reason}" for s in self.steps if s.status == "skipped"],
            "failures": self.failures,
        }


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
    absent = missing_options(kernel, scenario.requires)
    if absent:
        reason = (
            f"kernel {kernel.release} lacks {', '.join(absent)}: build one with "
            "`memharness kernel build` and pass it with --kernel"
        )
        return skipped_result(scenario.name, kernel, reason, repro, artifacts)
    layout_plan, options = prepare(scenario, kernel, accel)
    options.reproducer = repro
    started = time.monotonic()
    (artifacts / "layout.txt").write_text(render(layout_plan) + "\n")
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
    vms: list[VM] = []
    runs: list[ScenarioRun] = []
    for seeded in boots:
        folder = artifacts if seeded is None else artifacts / f"boot-{seeded.name}"
        with VM(kernel, image, folder, options) as vm:
            run = ScenarioRun(scenario, kernel, vm, layout_plan, seeded)
            if vm.ready:
                run.run()
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
    if not vms:
        return skipped_result(
            scenario.name,
            kernel,
            "; ".join(f"{st.name}: {st.reason}" for st in skipped),
            repro,
            artifacts,
        )
    return finish_run(vms, scenario.name, repro, started, details, override=decide(merged),
                      artifacts=artifacts)


def combine_details(
    scenario: Scenario, runs: list[ScenarioRun], skipped: list[Step]
) -> dict[str, Any]:
    """One report for all of a scenario's boots (steps are prefixed with their boot)."""
    if len(runs) == 1 and not skipped:
        return runs[0].details()
    steps = [asdict(s) for s in skipped]
    failures: list[str] = []
    for run in runs:
        label = f"[{run.seeded.name}] " if run.seeded else ""
        for step in run.steps:
            steps.append({**asdict(step), "name": label + step.name})
        failures += run.failures
    base: dict[str, Any] = runs[0].details() if runs else {"scenario": scenario.name}
    base["steps"] = steps
    base["skipped"] = [f"{s['name']}: {s['reason']}" for s in steps if s["status"] == "skipped"]
    base["failures"] = failures
    return base


def check_scenarios(scenarios: list[Scenario], kernels: dict[str, Kernel]) -> None:
    """All input checks of a run, before the first QEMU starts."""
    for scenario in scenarios:
        kernel = kernels.get(scenario.arch)
        if kernel is None:
            raise UserError(f"no kernel for {scenario.arch}")
        layout_plan = plan(scenario.layout, kernel.arch)
        kernel.check_requirements(list(layout_plan.requirements), f"scenario {scenario.name}")
