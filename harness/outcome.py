"""The single outcome of a run, decided from facts in a fixed order (pure).

A kernel splat outranks everything (it is what memharness exists to catch, and a splat often
causes the hang or the failed command that follows it); then a hang; then infrastructure
trouble; then a failed command.  Skips are decided before anything runs.
"""

from dataclasses import dataclass
from enum import StrEnum

from harness.splat.model import Splat


class Outcome(StrEnum):
    PASS = "pass"
    KERNEL_SPLAT = "kernel-splat"
    COMMAND_FAILED = "command-failed"
    HANG = "hang"
    INFRA_ERROR = "infra-error"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # the user (SIGINT) or the system (SIGTERM) stopped the run


# Exit codes for `git bisect run`: 0 good, 1 bad, 125 cannot test this commit.
BISECT_EXIT = {
    Outcome.PASS: 0,
    Outcome.KERNEL_SPLAT: 1,
    Outcome.COMMAND_FAILED: 1,
    Outcome.HANG: 1,
    Outcome.INFRA_ERROR: 125,
    Outcome.SKIPPED: 125,
    Outcome.INTERRUPTED: 125,  # the CLI itself exits 128 + the signal
}


@dataclass(frozen=True)
class Facts:
    """What happened during a run, gathered by the VM."""

    splats: tuple[Splat, ...] = ()
    hang: str | None = None  # why the run was judged hung
    infra: str | None = None  # why the infrastructure failed
    failed_command: str | None = None  # first command with an unexpected exit status


def decide(facts: Facts) -> tuple[Outcome, str]:
    """(outcome, one-line reason)."""
    if facts.splats:
        first = facts.splats[0]
        more = f" (+{len(facts.splats) - 1} more)" if len(facts.splats) > 1 else ""
        return Outcome.KERNEL_SPLAT, f"{first.title}{more}"
    if facts.hang:
        return Outcome.HANG, facts.hang
    if facts.infra:
        return Outcome.INFRA_ERROR, facts.infra
    if facts.failed_command:
        return Outcome.COMMAND_FAILED, facts.failed_command
    return Outcome.PASS, "all steps passed"
