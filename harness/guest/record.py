"""What every scenario run shares: recorded steps, guest commands that fail a step rather than
the run, and pfn walks over sections checked against what a fixed kernel answers.

Each step is recorded (passed / failed / skipped with the reason, its time and its data) for
result.json; walker output is kept whole under walkers/.
"""

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from harness.guest import walkers as walk
from harness.guest.modules import load_modules
from harness.kernel.model import Kernel
from harness.layout.planner import Section
from harness.vm.machine import VM


class Named(Protocol):
    """What the guest layer needs to know of a scenario: its name, summary and walkers (any
    object with these fields; the catalogue's Scenario is one)."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def walkers(self) -> tuple[str, ...]: ...


CUT_SHORT = "cut short: the guest is gone (an earlier splat or exit ended it)"
PROBE_TIMEOUT = 60.0
WALK_TIMEOUT = 180.0


@dataclass
class StepRecord:
    name: str
    status: str  # passed | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


class ReachedStep(Exception):
    """The step ``GuestSteps.until`` names has finished: `memharness shell` takes over."""


class GuestSteps:
    """StepRecord bookkeeping for one scenario on one booted guest."""

    def __init__(self, scenario: Named, kernel: Kernel, vm: VM) -> None:
        self.scenario = scenario
        self.kernel = kernel
        self.vm = vm
        self.steps: list[StepRecord] = []
        self.failures: list[str] = []
        self.walkers: list[str] = []  # the scenario's walkers this kernel can run
        self.planned_walks: list[str] = []  # walk steps this boot means to run (by name)
        self.until: str | None = None  # stop after the step of this name (ReachedStep)

    @property
    def label(self) -> str:
        """Names this boot among a scenario's boots ('' when there is only one kind)."""
        return ""

    def run(self) -> None:
        """Plays the scenario on the booted guest."""
        raise NotImplementedError

    @contextmanager
    def _step(self, name: str) -> Iterator[StepRecord]:
        step = StepRecord(name, "passed")
        self.steps.append(step)
        start = time.monotonic()
        try:
            yield step
        finally:
            step.seconds = time.monotonic() - start
        if self.until is not None and name == self.until:
            raise ReachedStep(name)

    def _fail(self, step: StepRecord, reason: str) -> None:
        step.status = "failed"
        step.reason = step.reason or reason
        self.failures.append(f"{self.scenario.name}: {step.name}: {reason}")

    def _guest(
        self, step: StepRecord, command: str, timeout: float = PROBE_TIMEOUT, port: int = 0
    ) -> str | None:
        """``command``'s output, or None after failing ``step`` with its exit and stderr."""
        result = self.vm.run(command, timeout=timeout, check=False, port=port)
        if result.exit_code != 0:
            if self.vm.ready:
                err = result.stderr.decode(errors="replace").strip().splitlines()
                self._fail(
                    step, f"`{command}` exited {result.exit_code}{': ' + err[-1] if err else ''}"
                )
            return None
        return result.text

    def modprobe(self, step: StepRecord, wanted: list[str]) -> None:
        """modprobe every module of ``wanted`` the image has (in order, once each); a module
        that does not load fails ``step``."""
        failure = load_modules(self.vm, wanted, step.data)
        if failure:
            self._fail(step, failure)

    @property
    def alive(self) -> bool:
        return self.vm.ready

    def _save(self, name: str, text: str) -> None:
        folder = self.vm.artifacts / "walkers"
        folder.mkdir(exist_ok=True)
        (folder / name.replace(" ", "_")).write_text(text)

    def skip_unsupported_walkers(self) -> None:
        """One skipped step per walker the kernel cannot run (not one per mode)."""
        for name in self.scenario.walkers:
            absent = self.kernel.missing_options(walk.WALKERS[name].requires)
            if absent:
                with self._step(f"walker {name}") as step:
                    step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
            else:
                self.walkers.append(name)

    def walk_names(self, label: str, walkers: Iterable[str] | None = None) -> list[str]:
        """The step names of a walk (one per walker), as ``walk_sections`` records them."""
        return [f"{label}: {name}" for name in (self.walkers if walkers is None else walkers)]

    def walk_sections(
        self, label: str, sections: Iterable[Section], walkers: Iterable[str] | None = None
    ) -> None:
        """Every runnable walker (or those of ``walkers``) over every pfn of each section,
        checked per kind of pfn."""
        chosen = list(sections)
        for name in self.walkers if walkers is None else walkers:
            with self._step(f"{label}: {name}") as step:
                walker = walk.WALKERS[name]
                for section in chosen:
                    if not self.alive:
                        # A walk the guest did not finish is not a pass: it was cut short.
                        if step.status == "passed":
                            step.status, step.reason = "skipped", CUT_SHORT
                        break
                    self._walk(step, walker, section)

    def _walk(self, step: StepRecord, walker: walk.Walker, section: Section) -> None:
        count = self.kernel.arch.section_size // 4096
        out = self._guest(step, walker.command(section.start // 4096, count), WALK_TIMEOUT)
        if out is None:
            return
        result = json.loads(out)
        self._save(f"{step.name}-section{section.number}.json", out)
        step.data[f"section {section.number}"] = walk.summary(result, section)
        for failure in walk.check(walker.name, result, section):
            self._fail(step, failure)

    def walk_counts(self) -> dict[str, Any]:
        """Planned walks, those that ran, and those a dead guest cut short (by name)."""
        ran = {s.name for s in self.steps if s.status in ("passed", "failed")}
        cut = [n for n in self.planned_walks if n not in ran]
        return {
            "planned": len(self.planned_walks),
            "ran": len(self.planned_walks) - len(cut),
            "cut_short": cut,
        }

    def details(self) -> dict[str, Any]:
        return {
            "walks": self.walk_counts(),
            "scenario": self.scenario.name,
            "summary": self.scenario.summary,
            "steps": [asdict(s) for s in self.steps],
            "skipped": [
                f"{s.name}: {s.reason}"
                for s in self.steps
                if s.status == "skipped" and s.reason != CUT_SHORT
            ],
            "failures": self.failures,
        }
