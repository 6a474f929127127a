"""A finished run: its outcome, why, and everything needed to look at it again.

Writes result.json, splats.json and reproduce.sh into the run's artifacts directory; the same
record feeds the CLI, the pytest plugin and the reports.
"""

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import proc
from harness.errors import InfraError
from harness.outcome import Outcome, decide
from harness.splat import Splat
from harness.vm.channel import CommandResult
from harness.vm.machine import VM

if TYPE_CHECKING:
    from harness.kernel.model import Kernel


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


OUTPUT_TAIL = 4000  # bytes of each command's output kept in result.json (transcript: more)


def command_json(c: CommandResult, tail: int | None = OUTPUT_TAIL) -> dict[str, Any]:
    """A command's record; its output lossless (see ``bytes_json``), cut to the last ``tail``
    bytes (None: whole)."""
    return {
        "command": c.command,
        "exit_code": c.exit_code,
        "signal": c.signal,
        "seconds": round(c.seconds, 4),
        "timed_out": c.timed_out,
        "stopped_by": c.stopped_by,
        **bytes_json("stdout", c.stdout, tail),
        **bytes_json("stderr", c.stderr, tail),
    }


def bytes_json(name: str, data: bytes, tail: int | None = None) -> dict[str, Any]:
    """Guest output for JSON without losing a byte: ``name`` is the text when the bytes are
    UTF-8; otherwise it is a readable rendering (U+FFFD for bad bytes) and ``name_b64`` holds
    the exact bytes.  ``name_encoding`` says which ("utf-8" or "base64")."""
    cut = len(data) - tail if tail is not None and len(data) > tail else 0
    data = data[cut:]
    out: dict[str, Any] = {}
    try:
        out[name] = data.decode("utf-8")
        out[f"{name}_encoding"] = "utf-8"
    except UnicodeDecodeError:
        out[name] = data.decode("utf-8", errors="replace")
        out[f"{name}_encoding"] = "base64"
        out[f"{name}_b64"] = base64.b64encode(data).decode("ascii")
    if cut:
        out[f"{name}_truncated_bytes"] = cut
    return out


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
    """result.json and reproduce.sh; a full or read-only disk is an InfraError naming the
    file (never a traceback, never a half-written JSON mistaken for a record)."""
    try:
        result.artifacts.mkdir(parents=True, exist_ok=True)
        _write_atomic(
            result.artifacts / "result.json", json.dumps(result.to_json(), indent=2) + "\n"
        )
        repro = result.artifacts / "reproduce.sh"
        _write_atomic(repro, "#!/bin/sh\n# Re-runs exactly this case.\n" + result.reproducer + "\n")
        repro.chmod(0o755)
    except OSError as exc:
        raise InfraError(
            f"cannot write the run record in {result.artifacts}: {exc.strerror}"
        ) from None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def unstarted_result(
    name: str, kernel: "Kernel", outcome: Outcome, reason: str, reproducer: str, artifacts: Path
) -> RunResult:
    """A run that never booted (skipped, or interrupted before its VM started), for a reason
    the report must show (never a pass)."""
    result = RunResult(
        name=name,
        outcome=outcome,
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
        details={
            "scenario": name,
            "skipped": [f"scenario: {reason}"] if outcome == Outcome.SKIPPED else [],
            "failures": [],
            "steps": [],
        },
    )
    write_result(result)
    return result


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped a run; ``result`` is its record (outcome ``interrupted``), already
    written to its artifacts directory."""

    def __init__(self, result: RunResult, signal: proc.Interrupted) -> None:
        super().__init__(str(signal))
        self.result = result
        self.signal = signal


def record_interruption(
    exc: KeyboardInterrupt, write: Callable[[tuple[Outcome, str]], RunResult]
) -> RunInterrupted:
    """Writes the interrupted run's record (``write`` gets the outcome override) with further
    signals held until it is on disk; returns what the caller raises."""
    signal = proc.as_interrupted(exc)
    with proc.shielded():
        result = write((Outcome.INTERRUPTED, f"interrupted by {signal.name}"))
    return RunInterrupted(result, signal)
