"""A finished run: its outcome, why, and everything needed to look at it again.

Writes result.json, splats.json and reproduce.sh into the run's artifacts directory; the same
record feeds the CLI, the pytest plugin and the reports.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.outcome import Outcome, decide
from harness.splat import Splat
from harness.vm.channel import CommandResult
from harness.vm.machine import VM

if TYPE_CHECKING:
    from harness.kernel import Kernel


@dataclass
class RunResult:
    name: str
    outcome: Outcome
    reason: str
    artifacts: Path
    machine: dict[str, Any]
    splats: list[Splat]
    commands: list[CommandResult]
    reproducer: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def boot_seconds(self) -> float | None:
        value = self.machine.get("boot_seconds")
        return float(value) if value is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": str(self.outcome),
            "reason": self.reason,
            "artifacts": str(self.artifacts),
            "seconds": round(self.seconds, 3),
            "machine": self.machine,
            "splats": [s.to_json() for s in self.splats],
            "commands": [command_json(c) for c in self.commands],
            "reproducer": self.reproducer,
            "details": self.details,
        }


def command_json(c: CommandResult) -> dict[str, Any]:
    return {
        "command": c.command,
        "exit_code": c.exit_code,
        "signal": c.signal,
        "seconds": round(c.seconds, 4),
        "timed_out": c.timed_out,
        "stopped_by": c.stopped_by,
        "stdout": c.stdout.decode(errors="replace")[-4000:],
        "stderr": c.stderr.decode(errors="replace")[-4000:],
    }


def finish_run(
    vms: "VM | list[VM]",
    name: str,
    reproducer: str,
    started: float,
    details: dict[str, Any] | None = None,
    override: tuple[Outcome, str] | None = None,
    artifacts: Path | None = None,
) -> RunResult:
    """Decides the outcome of stopped VMs (one run, possibly several boots) and writes the
    artifacts (into ``artifacts``, by default the first VM's directory)."""
    boots = vms if isinstance(vms, list) else [vms]
    first = boots[0]
    outcome, reason = override or decide(first.facts())
    splats = [s for vm in boots for s in vm.splats()]
    machine = first.summary()
    if len(boots) > 1:
        machine["boots"] = [vm.summary() for vm in boots]
    result = RunResult(
        name=name,
        outcome=outcome,
        reason=reason,
        artifacts=artifacts or first.artifacts,
        machine=machine,
        splats=list({s.title: s for s in reversed(splats)}.values())[::-1],
        commands=[c for vm in boots for c in vm.state.commands],
        reproducer=reproducer,
        seconds=time.monotonic() - started,
        details=details or {},
    )
    write_result(result)
    for vm in boots:
        vm.write_splats()
    return result


def write_result(result: RunResult) -> None:
    result.artifacts.mkdir(parents=True, exist_ok=True)
    (result.artifacts / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (result.artifacts / "reproduce.sh").write_text(
        "#!/bin/sh\n# Re-runs exactly this case.\n" + result.reproducer + "\n"
    )


def artifacts_dir(root: Path, name: str, arch: str) -> Path:
    """root/<name>-<arch>-<timestamp>[-N]: one directory per run, never reused."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{arch}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def skipped_result(
    name: str, kernel: "Kernel", reason: str, reproducer: str, artifacts: Path
) -> RunResult:
    """A run that did not start, for a reason the report must show (never a pass)."""
    result = RunResult(
        name=name,
        outcome=Outcome.SKIPPED,
        reason=reason,
        artifacts=artifacts,
        machine={
            "arch": kernel.arch.name,
            "boot_seconds": None,
            "kernel": {"release": kernel.release, "origin": kernel.origin},
        },
        splats=[],
        commands=[],
        reproducer=reproducer,
        seconds=0.0,
        details={"scenario": name, "skipped": [f"scenario: {reason}"]},
    )
    write_result(result)
    return result
