"""`memharness selftests`: the kernel's mm selftests in a memharness guest, one result each.

The guest is the Debian image booted with a scenario's layout (by default the selftests
layout: ZONE_DEVICE sharing a section with System RAM and a movable hot-plugged block), its
steps played first; the binaries go over SFTP and each run (a test with one of its argument
lists) goes over SSH with a timeout.  A run's status comes from its KTAP lines and exit status
(harness/selftests/ktap.py); a splat the console shows while it runs fails that run with the
splat's title.  A failing subtest or splat the known-issues registry has for this kernel is
"known": listed with its entry, not failing the command.  The VM's record (console, result.json)
is written like any run's, with the per-run results in its details.
"""

import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.arch import ArchProfile
from harness.artifacts import artifacts_dir
from harness.errors import InfraError
from harness.guest.record import GuestSteps
from harness.kernel.build import build_command
from harness.kernel.model import Kernel
from harness.kernel.source import Source, debian_source, is_kernel_tree, user_source
from harness.known.registry import REGISTRY, Registry, load_registry
from harness.result import RunResult, finish_run, record_interruption
from harness.selftests import ktap
from harness.selftests.build import build_selftests
from harness.selftests.catalogue import Selftest, check_present, choose
from harness.session import prepare, reproducer
from harness.vm.machine import VM

GUEST_DIR = "/root/selftests"
RUN_TIMEOUT = 600.0  # one run (cow takes ~1 min under TCG)
DEFAULT_SCENARIO = {"x86_64": "selftests-layout", "arm64": "selftests-layout-arm64"}


@dataclass(frozen=True)
class SelftestsRequest:
    arch: ArchProfile
    kernel_spec: str | None
    modules: str | None
    artifacts: Path
    src: str | None = None  # a tree, or debian:SERIES; None: the kernel's own source
    tests: str | None = None  # comma-separated names; None: the table's default
    scenario: str | None = None  # None: DEFAULT_SCENARIO of the arch
    accel: str = "tcg"
    catalogue: Path | None = None
    registry: Path = REGISTRY
    run_timeout: float = RUN_TIMEOUT


@dataclass
class RunRecord:
    """One selftest run: a binary with one argument list."""

    test: str
    name: str  # "gup_test -u"
    status: str  # pass | fail | skip | known | not-run
    reason: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    subtests: list[dict[str, Any]] = field(default_factory=list)
    splats: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # registry entries that explain failures
    output_tail: str = ""


@dataclass
class SelftestsReport:
    arch: str
    kernel: str
    source: str
    scenario: str
    runs: list[RunRecord]
    record: RunResult | None  # the VM's run (None when nothing booted)

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status in ("fail", "not-run")]

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "kernel": self.kernel,
            "source": self.source,
            "scenario": self.scenario,
            "runs": [asdict(r) for r in self.runs],
            "vm": None
            if self.record is None
            else {
                "outcome": str(self.record.outcome),
                "reason": self.record.reason,
                "artifacts": str(self.record.artifacts),
                "splats": [s.title for s in self.record.splats],
            },
        }


def resolve_source(src: str | None, kernel: Kernel) -> Source:
    """--src, or the tree the kernel was built from, or Debian's source of its series."""
    if src:
        if src.startswith("debian:"):
            return debian_source(src.removeprefix("debian:"))
        return user_source(Path(src))
    if kernel.build_dir is not None and is_kernel_tree(kernel.build_dir.parent):
        return user_source(kernel.build_dir.parent)
    series = ".".join(kernel.release.split(".")[:2])
    return debian_source(series)


def judge_run(
    test: Selftest,
    args: tuple[str, ...],
    exit_code: int | None,
    output: str,
    splat_titles: list[str],
    known_splats: dict[str, str],
    registry: Registry,
    kernel: Kernel,
) -> RunRecord:
    """A run's record from what it printed and what the console showed meanwhile (pure).

    A run's failures are its failing subtests, or, when it failed without one (a bail out, a
    crash, fewer results than planned), its last message: each is looked up in the registry
    for this selftest, and a run whose every failure is registered is "known", not failed.
    ``known_splats`` maps a splat title to the registry entry that knows it on this kernel."""
    parsed = ktap.parse(output)
    status = ktap.verdict(exit_code, parsed)
    record = RunRecord(test.name, test.run_name(args), status, exit_code=exit_code)
    record.subtests = [asdict(s) for s in parsed.subtests]
    failing = [s for s in parsed.subtests if s.status in ("fail", "xpass")]
    failures = [s.description for s in failing]
    labels = [s.label for s in failing]
    if status == "fail" and not failures:
        failures = labels = [ktap.last_message(output) or f"exit status {exit_code}"]
    entries = [registry.known_selftest(test.name, f, kernel) for f in failures]
    explained = [e.id for e in entries if e is not None]
    record.splats = list(splat_titles)
    new_splats = [t for t in splat_titles if t not in known_splats]
    record.known = sorted(
        {*explained, *(known_splats[t] for t in splat_titles if t in known_splats)}
    )
    if new_splats:
        record.status = "fail"
        record.reason = f"splat during the run: {new_splats[0]}"
    elif status == "fail" and all(entries):
        record.status = "known"
        record.reason = f"known failure ({', '.join(record.known)}): {labels[0]}"
    elif status == "fail":
        first = next(label for label, e in zip(labels, entries, strict=True) if e is None)
        counted = len(failing)
        record.reason = f"{counted} failing subtest(s), first: {first}" if counted else first
    elif splat_titles:
        record.status = "known" if status == "pass" else status
        record.reason = f"known splat: {', '.join(record.known)}"
    elif status == "skip":
        reasons = {s.reason for s in parsed.subtests if s.reason}
        record.reason = "; ".join(sorted(reasons))[:300] or "skipped (exit status 4)"
    return record


def run_selftests(request: SelftestsRequest) -> SelftestsReport:
    """Builds, boots, plays the layout's steps, runs every chosen test; never raises for what a
    test or the guest does (that is in the report), only for bad input or a failed build."""
    from harness.run import first_boot_runner, one_scenario, plan_scenario, vm_options

    tests = choose(request.tests)
    registry = load_registry(request.registry)
    scenario_name = request.scenario or DEFAULT_SCENARIO[request.arch.name]
    scenario = one_scenario(scenario_name, request.arch, request.catalogue)
    kernel, image = prepare(request.arch, request.kernel_spec, request.modules, "debian")
    source = resolve_source(request.src, kernel)
    check_present(source.path, tests, source.origin)
    planned = plan_scenario(scenario, kernel)
    runs: list[RunRecord] = []
    runnable = []
    for test in tests:
        absent = kernel.missing_options(test.requires)
        if absent:
            reason = (
                f"kernel {kernel.release} lacks {', '.join(absent)}: build one with "
                f"`{build_command(absent, kernel.arch)}`"
            )
            runs += [RunRecord(test.name, test.run_name(a), "skip", reason) for a in test.runs]
        else:
            runnable.append(test)
    binaries = build_selftests(source, request.arch, runnable) if runnable else {}
    options = vm_options(scenario, planned, request.accel)
    flags = ["--scenario", scenario.name, "--tests", ",".join(t.name for t in tests)]
    if request.src:
        flags += ["--src", request.src]
    options.reproducer = reproducer("selftests", request.arch, request.kernel_spec, *flags)
    artifacts = artifacts_dir(request.artifacts, "selftests", request.arch.name)
    started = time.monotonic()
    vm = VM(kernel, image, artifacts, options)
    layout = first_boot_runner(scenario, kernel, vm, planned)
    try:
        with vm:
            setup = _setup(vm, layout, binaries)
            for test in runnable:
                for args in test.runs:
                    if setup is not None or not vm.ready:
                        why = setup or f"the guest stopped: {vm.abort_reason() or vm.state.hang}"
                        runs.append(RunRecord(test.name, test.run_name(args), "not-run", why))
                        continue
                    runs.append(_run_one(vm, test, args, registry, kernel, request.run_timeout))
    except KeyboardInterrupt as exc:  # QEMU is stopped; the runs so far are the record
        raise record_interruption(
            exc,
            lambda override: finish_run(
                vm, "selftests", options.reproducer, started, _details(layout, runs), override
            ),
        ) from None
    details = _details(layout, runs)
    record = finish_run(vm, "selftests", options.reproducer, started, details)
    order = {t.name: i for i, t in enumerate(tests)}
    runs.sort(key=lambda r: order[r.test])
    return SelftestsReport(
        request.arch.name, kernel.release, source.origin, scenario.name, runs, record
    )


def _details(layout: GuestSteps, runs: list[RunRecord]) -> dict[str, Any]:
    return {
        "steps": [asdict(st) for st in layout.steps],
        "selftests": [asdict(r) for r in runs],
    }


def _setup(vm: VM, runner: GuestSteps, binaries: dict[str, Path]) -> str | None:
    """Plays the layout's steps and uploads the binaries; why the runs cannot start, or None."""
    if not vm.ready:
        return f"the guest did not boot: {vm.state.hang or vm.state.infra or 'see console.log'}"
    runner.run()
    if runner.failures:
        return f"the layout's steps failed: {runner.failures[0]}"
    try:
        vm.ssh.run(f"mkdir -p {GUEST_DIR}", 30.0, vm.abort_reason)
        for name, path in binaries.items():
            vm.ssh.upload(path, f"{GUEST_DIR}/{name}")
    except InfraError as exc:
        vm.state.infra = vm.state.infra or str(exc)
        return f"cannot reach the guest over SSH: {exc}"
    return None


def _run_one(
    vm: VM, test: Selftest, args: tuple[str, ...], registry: Registry, kernel: Kernel, limit: float
) -> RunRecord:
    before = len(vm.splats())
    command = f"cd {GUEST_DIR} && ./{shlex.join([test.name, *args])}"
    result = vm.ssh_run(command, timeout=limit, check=False)
    splats = vm.splats()[before:]
    known = {}
    for splat in splats:
        entry = registry.known(splat, kernel)
        if entry is not None:
            known[splat.title] = entry.id
    output = result.stdout.decode(errors="replace")
    record = judge_run(
        test, args, result.exit_code, output, [s.title for s in splats], known, registry, kernel
    )
    record.seconds = round(result.seconds, 2)
    errors = result.stderr.decode(errors="replace")
    record.output_tail = "\n".join((output + errors).splitlines()[-20:])
    logs = vm.artifacts / "selftests"
    logs.mkdir(exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", record.name)
    (logs / f"{slug}.log").write_text(f"$ {command}\n{output}{errors}[exit {result.exit_code}]\n")
    if result.timed_out:
        record.status, record.reason = "fail", f"timed out after {limit:.0f} s"
    elif result.stopped_by and record.status != "fail":
        record.status, record.reason = "fail", f"did not finish: {result.stopped_by}"
    return record
