"""The run orchestrator: a selection of scenarios from inputs to results.

``prepare_selection`` refuses everything that can be refused before the first QEMU starts
(unknown scenarios, impossible layouts and hotplug steps, kernels without a needed option, a
missing cross compiler) and prepares every kernel and guest image once; ``run_selection`` runs
the scenarios in catalogue order and returns what finished, also when a signal stops it.  The
CLI, the pytest plugin and bisect call these; the collision and hotplug runners below them know
nothing of each other or of this module.
"""

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import proc
from harness.arch import ArchProfile, get_arch
from harness.artifacts import artifacts_dir
from harness.cache import file_digest
from harness.catalogue.model import CATALOGUE, Scenario, load_catalogue, select
from harness.collision.modes import MODES, Mode
from harness.collision.runner import CollisionRun, Phase
from harness.errors import InfraError, MemharnessError, UserError
from harness.guest.record import CUT_SHORT, GuestSteps, StepRecord
from harness.guest.walkers import WALKERS
from harness.hotplug.plan import HotplugPlan, plan_steps
from harness.hotplug.runner import HotplugRun
from harness.image.builder import GuestImage, with_test_modules
from harness.kernel.behaviour import behaves
from harness.kernel.build import build_command
from harness.kernel.model import Kernel
from harness.kernel.resolve import spec_for_arch
from harness.kernel.testmod import build_failure
from harness.known.registry import REGISTRY, Registry, load_registry
from harness.layout.planner import Plan, plan, render
from harness.outcome import Facts, Outcome, decide
from harness.qemu.argv import machine_args
from harness.result import (
    RunInterrupted,
    RunResult,
    finish_run,
    record_interruption,
    unstarted_result,
    write_result,
)
from harness.session import image_flags, prepare, reproducer
from harness.shard import Shard, load_durations, longest_first, select_shard
from harness.splat import Splat
from harness.splat.parser import dedupe
from harness.vm.dtb import dtb_with_nodes
from harness.vm.machine import VM, VMOptions, require_qemu
from harness.vm.snapshot import SetupSnapshot


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


def first_boot_runner(scenario: Scenario, kernel: Kernel, vm: VM, planned: Planned) -> GuestSteps:
    """What plays ``scenario`` on one guest that stays up afterwards (`memharness shell`,
    `memharness selftests`): the hotplug steps, or a collision scenario's main boot."""
    if planned.hotplug is not None:
        return HotplugRun(scenario, kernel, vm, planned.layout, planned.hotplug)
    phase = boots_for(scenario, kernel)[0][0]
    return CollisionRun(scenario, kernel, vm, planned.layout, phase, None)


def skip_reason(scenario: Scenario, kernel: Kernel, planned: Planned) -> str | None:
    """Why this kernel or host cannot run ``scenario`` (None: it can)."""
    needed = scenario.requires + (planned.hotplug.requires if planned.hotplug else ())
    absent = kernel.missing_options(dict.fromkeys(needed))
    if absent:
        return (
            f"kernel {kernel.release} lacks {', '.join(absent)}: build one with "
            f"`{build_command(absent, kernel.arch)}` and pass it with --kernel"
        )
    if scenario.layout.cxl and behaves(kernel, "cxl_pci_needs_event_interrupts"):
        return (
            f"kernel {kernel.release}'s cxl_pci needs event-log interrupts, which QEMU 7.2's "
            "cxl-type3 does not provide (the memdev never probes): run it on a 6.1 kernel"
        )
    if planned.hotplug and planned.hotplug.uefi and kernel.arch.firmware() is None:
        return (
            f"no UEFI firmware for {kernel.arch.name} (memory-device hotplug needs ACPI, which "
            "needs a UEFI boot): install qemu-efi-aarch64"
        )
    for name in planned.hotplug.test_modules if planned.hotplug else ():
        why = build_failure(kernel, name)  # builds it (cached); a failure skips only this
        if why:
            return f"needs test module {name}, which did not build for {kernel.release}: {why}"
    return None


def run_scenario(
    scenario: Scenario,
    kernel: Kernel,
    image: GuestImage,
    artifacts_root: Path,
    accel: str = "tcg",
    kernel_spec: str | None = None,
    registry: Registry | None = None,
    snapshots: bool = True,
) -> RunResult:
    """One scenario on one kernel: skip it loudly, or boot (once per phase, see
    ``boots_for``), play it and decide one outcome; every splat is classified against the
    known-issues registry (default: the built-in one).  A signal ends it as ``interrupted``
    with its record written (``RunInterrupted``).  With ``snapshots`` the poison phases start
    from the main boot's saved setup instead of booting (harness/vm/snapshot.py)."""
    flags = image_flags(image.name)
    repro = reproducer("run", kernel.arch, kernel_spec, *flags, "--scenario", scenario.name)
    artifacts = artifacts_dir(artifacts_root, scenario.name, kernel.arch.name)
    started = time.monotonic()
    vms: list[VM] = []
    runs: list[GuestSteps] = []
    skipped: list[StepRecord] = []
    try:
        planned = plan_scenario(scenario, kernel)
        reason = skip_reason(scenario, kernel, planned)
        boots, skipped = boots_for(scenario, kernel)
        if not reason and not boots:
            reason = "; ".join(f"{st.name}: {st.reason}" for st in skipped)
        if reason:
            return unstarted_result(
                scenario.name, kernel, Outcome.SKIPPED, reason, repro, artifacts
            )
        options = vm_options(scenario, planned, accel)
        options.reproducer = repro
        if planned.hotplug:
            image = with_test_modules(image, kernel, planned.hotplug.test_modules)
        (artifacts / "layout.txt").write_text(render(planned.layout) + "\n")
        # A saved state holds no disk: a guest with a root disk always boots.
        with SetupSnapshot(enabled=snapshots and image.disk is None) as saved:
            for n, phase in enumerate(boots):
                if proc.stopping.is_set() and vms:
                    break  # a parallel run is stopping: the boots so far are the record
                label = phase.label.replace(" ", "-")
                folder = artifacts if n == 0 else artifacts / f"boot-{label}"
                # Poison phases start from the main boot's saved setup (harness/vm/snapshot.py)
                restore = phase.kind == "poison" and phase.seeded is None
                vm = VM(kernel, image, folder, saved.options(options) if restore else options)
                vms.append(vm)
                run: GuestSteps
                if planned.hotplug is not None:
                    run = HotplugRun(scenario, kernel, vm, planned.layout, planned.hotplug)
                else:
                    save = saved.save if phase.kind == "main" and phase.seeded is None else None
                    run = CollisionRun(scenario, kernel, vm, planned.layout, phase, save)
                runs.append(run)
                try:
                    with vm:
                        if vm.ready:
                            try:
                                run.run()
                            except InfraError as exc:  # this scenario's infrastructure only
                                vm.state.infra = vm.state.infra or str(exc)
                except InfraError:
                    if not proc.stopping.is_set():
                        raise
                    break  # stopping refused this boot its QEMU: recorded as interrupted
    except KeyboardInterrupt as exc:

        def write(override: tuple[Outcome, str]) -> RunResult:
            if not vms:
                return unstarted_result(scenario.name, kernel, *override, repro, artifacts)
            details = combine_details(scenario, runs, skipped)
            return finish_run(vms, scenario.name, repro, started, details, override, artifacts)

        raise record_interruption(exc, write) from None
    known = registry if registry is not None else load_registry()
    return _decide_scenario(scenario, kernel, known, vms, runs, skipped, repro, started, artifacts)


def boots_for(scenario: Scenario, kernel: Kernel) -> tuple[list[Phase], list[StepRecord]]:
    """The boots of a scenario (see ``collision.runner.Phase``): hotplug scenarios and those
    that exist to reproduce one bug boot once; other collision scenarios walk every mode and the
    teardown in a main boot and run their poisoning walkers in a boot per mode.  Seeded modes
    need a boot each; a mode the kernel cannot do is a skipped step."""
    modes: list[Mode] = []
    skipped: list[StepRecord] = []
    for name in scenario.modes:
        absent = kernel.missing_options(MODES[name].requires)
        if absent and scenario.seed_modes:
            reason = f"kernel lacks {', '.join(absent)}"
            skipped.append(StepRecord(f"mode {name} (seeded)", "skipped", reason))
        elif not absent:
            modes.append(MODES[name])
    poisoning = [w for w in scenario.walkers if WALKERS[w].poisons]
    as_written = scenario.hotplug or scenario.known_bug or scenario.poison or not poisoning
    if scenario.seed_modes:
        if as_written:
            return [Phase("all", seeded=m) for m in modes], skipped
        return [
            p for m in modes for p in (Phase("main", seeded=m), Phase("poison", seeded=m))
        ], skipped
    if as_written:
        return [Phase("all")], skipped
    return [Phase("main"), Phase("poison"), *(Phase("poison", mode=m) for m in modes)], skipped


def _decide_scenario(
    scenario: Scenario,
    kernel: Kernel,
    registry: Registry,
    vms: list[VM],
    runs: list[GuestSteps],
    skipped: list[StepRecord],
    repro: str,
    started: float,
    artifacts: Path,
) -> RunResult:
    """One outcome for all of a scenario's boots: splats first, then hangs, infrastructure,
    failed commands and failed checks."""
    details = combine_details(scenario, runs, skipped)
    splats = [s for vm in vms for s in vm.splats()]
    own_bug = scenario.known_bug or ""
    if own_bug:
        not_here = registry.not_on(own_bug, kernel)
        if not_here:  # fixed there, by the registry: a pass is a pass, a splat is new
            details["known_bug_not_expected"] = f"{own_bug}: {not_here}"
            own_bug = ""
        else:
            details["known_bug"] = own_bug
            details["known_bug_reproduced"] = any(
                registry.same_bug(own_bug, s, kernel) for s in splats
            )
    unique = dedupe(splats)
    details["splat_classes"] = classify(unique, own_bug, kernel, registry)
    facts = [vm.facts() for vm in vms]
    failures = details["failures"]
    merged = Facts(
        splats=tuple(unique),
        hang=next((f.hang for f in facts if f.hang), None),
        infra=next((f.infra for f in facts if f.infra), None),
        failed_command=next((f.failed_command for f in facts if f.failed_command), None)
        or (f"check failed: {failures[0]}" if failures else None),
    )
    return finish_run(
        vms, scenario.name, repro, started, details, override=decide(merged), artifacts=artifacts
    )


def classify(
    splats: list[Splat], own_bug: str, kernel: Kernel, registry: Registry
) -> list[dict[str, Any]]:
    """Each splat title: the scenario's own known bug (where it is expected), a registered
    known issue (with its entry), or new."""
    out = []
    for splat in splats:
        entry = registry.known(splat, kernel)
        out.append(
            {
                "title": splat.title,
                "scenario_known_bug": bool(own_bug) and registry.same_bug(own_bug, splat, kernel),
                "known_issue": entry.to_json() if entry else None,
            }
        )
    return out


def combine_details(
    scenario: Scenario, runs: list[GuestSteps], skipped: list[StepRecord]
) -> dict[str, Any]:
    """One report for all of a scenario's boots (steps are prefixed with their boot)."""
    if len(runs) == 1 and not skipped:
        return runs[0].details()
    steps = [asdict(s) for s in skipped]
    failures: list[str] = []
    walks: dict[str, Any] = {"planned": 0, "ran": 0, "cut_short": []}
    for run in runs:
        label = f"[{run.label}] " if run.label else ""
        for step in run.steps:
            steps.append({**asdict(step), "name": label + step.name})
        failures += run.failures
        counts = run.walk_counts()
        walks["planned"] += counts["planned"]
        walks["ran"] += counts["ran"]
        walks["cut_short"] += [label + n for n in counts["cut_short"]]
    base: dict[str, Any] = runs[0].details() if runs else {"scenario": scenario.name}
    base["steps"] = steps
    # A walker the kernel cannot run is skipped in every boot of the scenario: say it once.
    said: set[tuple[str, str]] = set()
    base["skipped"] = []
    for s in steps:
        key = (s["name"].split("] ")[-1], s["reason"])
        if s["status"] == "skipped" and s["reason"] != CUT_SHORT and key not in said:
            said.add(key)
            base["skipped"].append(f"{s['name']}: {s['reason']}")
    base["failures"] = failures
    base["walks"] = walks
    return base


def check_scenarios(scenarios: list[Scenario], kernels: dict[str, Kernel]) -> None:
    """All input checks of a run, before the first QEMU starts; builds the test modules the
    runnable scenarios need (a missing cross compiler is bad input too; a module that does not
    build for this kernel skips the scenarios that need it, see ``skip_reason``)."""
    for scenario in scenarios:
        kernel = kernels.get(scenario.arch)
        if kernel is None:
            raise UserError(f"no kernel for {scenario.arch}")
        skip_reason(scenario, kernel, plan_scenario(scenario, kernel))


# -- a selection: what `memharness run`, the pytest plugin and bisect drive -------------------


@dataclass(frozen=True)
class RunRequest:
    """What to run: parsed and typed by the CLI (or built by the plugin or bisect)."""

    arches: tuple[ArchProfile, ...]
    scenarios: str | None = None  # comma-separated names; None: the whole catalogue
    kernels: tuple[str, ...] = ()  # --kernel values ([ARCH=]PATH)
    modules: str | None = None
    artifacts: Path = Path("memharness-artifacts")
    accel: str = "tcg"
    catalogue: Path = CATALOGUE
    registry: Path = REGISTRY
    jobs: int = 1  # scenarios run at once (each boots its own VMs)
    shard: Shard | None = None  # run only this shard of the selection (harness/shard.py)
    durations: Path | None = None  # what balances the shards (default: the built-in table)
    snapshots: bool = True  # poison phases restore the main boot's setup (False: --fresh-boots)
    image: str = "initramfs"  # guest userspace (harness/image/builder.py IMAGE_KINDS)


@dataclass
class Selection:
    """Checked scenarios and their prepared kernels and images: ready to boot."""

    request: RunRequest
    scenarios: list[Scenario]
    prepared: dict[str, tuple[Kernel, GuestImage]]
    registry: Registry = field(default_factory=lambda: Registry(()))


@dataclass
class RunReport:
    """What a run produced: every finished (or interrupted) result, in catalogue order, and
    what did not run because a signal stopped the run."""

    results: list[RunResult] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # "name (arch)"
    interrupted: proc.Interrupted | None = None
    catalogue: dict[str, Any] = field(default_factory=dict)  # path, sha256, scenarios
    kernels: dict[str, dict[str, str]] = field(default_factory=dict)  # arch → release, origin
    possibly_fixed: list[dict[str, Any]] = field(default_factory=list)
    # A shard of a full run: which one, the whole selection (catalogue order), and the entries
    # this shard did not meet (`memharness merge` keeps those no shard met: possibly fixed).
    shard: dict[str, Any] | None = None
    possibly_fixed_candidates: list[dict[str, Any]] = field(default_factory=list)


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def select_scenarios(request: RunRequest) -> list[Scenario]:
    """The scenarios asked for, each planned (pure): UserError for unknown names, impossible
    layouts or steps, before any download."""
    arch_names = [a.name for a in request.arches]
    scenarios = select(load_catalogue(request.catalogue), request.scenarios, list(request.arches))
    if not scenarios:
        raise UserError(
            f"no scenario runs on {','.join(arch_names)}: `memharness scenarios` lists them"
        )
    for scenario in scenarios:
        plan_pure(scenario)
    load_registry(request.registry)  # a malformed registry is bad input too: refuse it now
    if request.shard is not None:
        return select_shard(scenarios, request.shard, load_durations(request.durations))
    return scenarios


def one_scenario(name: str, arch: ArchProfile, catalogue: Path | None = None) -> Scenario:
    """The catalogue's scenario ``name`` for ``arch`` (what `shell` and `selftests` boot), or
    a one-line error."""
    request = RunRequest(arches=(arch,), scenarios=name, catalogue=catalogue or CATALOGUE)
    found = select_scenarios(request)
    if len(found) != 1:
        raise UserError(f"--scenario takes one scenario of {arch.name}, not {len(found)}")
    return found[0]


def shard_record(request: RunRequest) -> dict[str, Any] | None:
    """What a shard's report carries for `memharness merge` (None when not a shard)."""
    if request.shard is None:
        return None
    whole = select(load_catalogue(request.catalogue), request.scenarios, list(request.arches))
    return {
        "index": request.shard.index,
        "count": request.shard.count,
        "scenarios": names(whole),
        "full": request.scenarios is None,
    }


def prepare_selection(
    request: RunRequest, scenarios: list[Scenario], progress: Progress = _quiet
) -> Selection:
    """Prepares every kernel and image and checks each scenario against its kernel; raises
    UserError (bad input) or InfraError before any scenario boots."""
    prepared: dict[str, tuple[Kernel, GuestImage]] = {}
    for name in sorted({s.arch for s in scenarios}, reverse=True):
        arch = get_arch(name)
        progress(f"preparing {name} kernel and guest image")
        spec = spec_for_arch(list(request.kernels), arch)
        prepared[name] = prepare(arch, spec, request.modules, request.image)
    check_scenarios(scenarios, {a: k for a, (k, _) in prepared.items()})
    return Selection(request, scenarios, prepared, load_registry(request.registry))


def names(scenarios: list[Scenario]) -> list[str]:
    return [f"{s.name} ({s.arch})" for s in scenarios]


def run_selection(
    selection: Selection,
    on_start: Callable[[int, int, Scenario, Kernel], None] | None = None,
    on_finish: Callable[[RunResult], None] | None = None,
) -> RunReport:
    """Runs the selection, ``request.jobs`` scenarios at a time; results (and the callbacks)
    come in catalogue order whatever order the scenarios finish in.  A signal ends the run: the
    scenarios it interrupted are recorded as ``interrupted``, the ones after them are listed as
    not run, and the report is returned (never raised) so that every report can still be
    written."""
    request = selection.request
    report = RunReport(
        catalogue=catalogue_identity(request.catalogue, selection.scenarios),
        kernels={
            a: {"release": k.release, "origin": k.origin}
            for a, (k, _) in selection.prepared.items()
        },
    )
    if request.jobs > 1 and len(selection.scenarios) > 1:
        _run_parallel(selection, report, on_start, on_finish)
    else:
        _run_in_order(selection, report, on_start, on_finish)
    report.shard = shard_record(request)
    if request.scenarios is None and report.interrupted is None:
        seen = [(r.machine["arch"], s) for r in report.results for s in r.splats]
        kernels = [k for k, _ in selection.prepared.values()]
        unmet = [
            {**issue.to_json(), "arch": arch}
            for issue, arch in selection.registry.possibly_fixed(kernels, seen)
        ]
        if request.shard is None:
            report.possibly_fixed = unmet
        else:
            report.possibly_fixed_candidates = unmet
    return report


def _run_one(selection: Selection, scenario: Scenario) -> RunResult:
    request = selection.request
    kernel, image = selection.prepared[scenario.arch]
    return run_scenario(
        scenario,
        kernel,
        image,
        request.artifacts,
        request.accel,
        spec_for_arch(list(request.kernels), kernel.arch),
        selection.registry,
        request.snapshots,
    )


def _run_in_order(
    selection: Selection,
    report: RunReport,
    on_start: Callable[[int, int, Scenario, Kernel], None] | None,
    on_finish: Callable[[RunResult], None] | None,
) -> None:
    total = len(selection.scenarios)
    for i, scenario in enumerate(selection.scenarios, 1):
        kernel, _ = selection.prepared[scenario.arch]
        try:
            if on_start:
                on_start(i, total, scenario, kernel)
            result = _run_one(selection, scenario)
        except RunInterrupted as stop:
            report.results.append(stop.result)
            report.interrupted = stop.signal
        except KeyboardInterrupt as exc:  # between scenarios
            report.interrupted = proc.as_interrupted(exc)
        else:
            report.results.append(result)
            if on_finish:
                on_finish(result)
            continue
        if on_finish and report.results and report.results[-1].name == scenario.name:
            on_finish(report.results[-1])
        report.not_run = names(selection.scenarios[i:])
        break


def _run_parallel(
    selection: Selection,
    report: RunReport,
    on_start: Callable[[int, int, Scenario, Kernel], None] | None,
    on_finish: Callable[[RunResult], None] | None,
) -> None:
    """Worker threads run the scenarios (each waits on its own QEMU, sockets and channels);
    the main thread takes results in catalogue order and alone receives signals.  On a signal
    it stops handing out scenarios, kills every QEMU so the running ones end at once, and
    records those as interrupted."""
    scenarios = selection.scenarios
    stopping = threading.Event()
    finished_at: dict[int, float] = {}

    def work(n: int) -> RunResult | None:
        if stopping.is_set():
            return None
        try:
            return _run_one(selection, scenarios[n])
        finally:
            finished_at[n] = time.monotonic()

    pool = ThreadPoolExecutor(max_workers=selection.request.jobs, thread_name_prefix="mh-run")
    # Started longest first (the lanes stay evenly loaded to the end), reported in catalogue order.
    started: dict[int, Future[RunResult | None]] = {}
    for n in longest_first(scenarios, load_durations(selection.request.durations)):
        started[n] = pool.submit(work, n)
    futures = [started[n] for n in range(len(scenarios))]
    try:
        for n, future in enumerate(futures):
            result = future.result()
            assert result is not None  # only a stopped run hands out nothing
            kernel, _ = selection.prepared[scenarios[n].arch]
            if on_start:
                on_start(n + 1, len(scenarios), scenarios[n], kernel)
            report.results.append(result)
            if on_finish:
                on_finish(result)
    except KeyboardInterrupt as exc:
        report.interrupted = proc.as_interrupted(exc)
        at = time.monotonic()
        with proc.shielded():
            _stop(pool, futures, stopping)
            for n in range(len(report.results), len(scenarios)):
                result = _stopped_result(selection, scenarios[n], futures[n], report.interrupted)
                if result is None:
                    report.not_run.append(names([scenarios[n]])[0])
                    continue
                if finished_at.get(n, at) >= at:  # it was running when the signal came
                    result = replace(
                        result,
                        outcome=Outcome.INTERRUPTED,
                        reason=f"interrupted by {report.interrupted.name}",
                    )
                    write_result(result)
                report.results.append(result)
                if on_finish:
                    on_finish(result)
    except BaseException:
        _stop(pool, futures, stopping)
        raise
    else:
        pool.shutdown(wait=True)


def _stop(
    pool: ThreadPoolExecutor, futures: list["Future[RunResult | None]"], stopping: threading.Event
) -> None:
    stopping.set()
    for future in futures:
        future.cancel()
    proc.stopping.set()  # workers start no new QEMU or builder from here on
    try:
        proc.kill_all()  # the running scenarios' QEMUs: their waits end now
        pool.shutdown(wait=True)
    finally:
        proc.stopping.clear()


def _stopped_result(
    selection: Selection,
    scenario: Scenario,
    future: "Future[RunResult | None]",
    signal: proc.Interrupted,
) -> RunResult | None:
    """What a scenario left when the run stopped: its result, None when it never started, or an
    interrupted record when stopping cut it off before it could write one."""
    if future.cancelled():
        return None
    try:
        return future.result()
    except MemharnessError:
        kernel, _ = selection.prepared[scenario.arch]
        folder = artifacts_dir(selection.request.artifacts, scenario.name, scenario.arch)
        why = f"interrupted by {signal.name}"
        return unstarted_result(scenario.name, kernel, Outcome.INTERRUPTED, why, "", folder)


def catalogue_identity(path: Path, scenarios: list[Scenario]) -> dict[str, Any]:
    """What `memharness compare` checks before comparing two runs: the same catalogue file
    (by content) and the scenarios each run selected."""
    return {
        "path": str(path),
        "sha256": file_digest(path),
        "scenarios": names(scenarios),
    }
