"""Outcome decisions, QEMU exit explanations and accelerator plans (pure)."""

from pathlib import Path

import pytest

from harness.arch import ARM64, X86_64
from harness.errors import UserError
from harness.outcome import BISECT_EXIT, Facts, Outcome, decide
from harness.report import summary
from harness.result import RunResult
from harness.splat.model import Splat
from harness.vm import accel
from harness.vm.machine import explain_exit

SPLAT = Splat("WARNING in foo", "WARNING", "foo", "WARNING: ...")


@pytest.mark.parametrize(
    ("facts", "outcome"),
    [
        (Facts(), Outcome.PASS),
        (Facts(failed_command="`x` exited 1"), Outcome.COMMAND_FAILED),
        (Facts(infra="QEMU exited", failed_command="x"), Outcome.INFRA_ERROR),
        (Facts(hang="timeout", infra="x", failed_command="x"), Outcome.HANG),
        (Facts(splats=(SPLAT,), hang="timeout", infra="x"), Outcome.KERNEL_SPLAT),
    ],
)
def test_decide_order(facts: Facts, outcome: Outcome) -> None:
    assert decide(facts)[0] == outcome


def test_reason_names_the_first_splat_and_counts_the_rest() -> None:
    other = Splat("BUG: Bad page state in bar", "BAD_PAGE", "bar", "BUG: ...")
    assert decide(Facts(splats=(SPLAT, other)))[1] == "WARNING in foo (+1 more)"


def test_bisect_exit_codes() -> None:
    assert BISECT_EXIT[Outcome.PASS] == 0 and BISECT_EXIT[Outcome.KERNEL_SPLAT] == 1
    assert BISECT_EXIT[Outcome.INFRA_ERROR] == 125 and BISECT_EXIT[Outcome.SKIPPED] == 125


@pytest.mark.parametrize(
    ("code", "stderr", "needle"),
    [
        (-9, "", "killed by signal 9"),
        (
            0,
            "qemu-system-x86_64: terminating on signal 15 from pid 4242 (bash)\n",
            "stopped from outside: terminating on signal 15 from pid 4242",
        ),
        (0, "", "powered off or rebooted"),
        (
            1,
            "qemu-system-x86_64: -device foo: 'foo' is not a valid device model name\n",
            "status 1: qemu-system-x86_64: -device foo",
        ),
    ],
)
def test_explain_exit(code: int, stderr: str, needle: str) -> None:
    assert needle in explain_exit(code, stderr, "why")


def test_accel_plans(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("MEMHARNESS_CACHE", str(tmp_path))
    assert accel.plan("tcg", X86_64) == accel.AccelPlan("tcg", None, "")
    with pytest.raises(UserError, match="unknown accelerator"):
        accel.plan("hvf", X86_64)
    monkeypatch.setattr(accel, "kvm_usable", lambda arch: "no /dev/kvm")
    assert accel.plan("auto", X86_64).first == "tcg"
    with pytest.raises(UserError, match="--accel kvm: no /dev/kvm"):
        accel.plan("kvm", ARM64)
    monkeypatch.setattr(accel, "kvm_usable", lambda arch: None)
    assert accel.plan("auto", X86_64) == accel.AccelPlan("kvm", "tcg", "KVM probe")
    accel.record_verdict(X86_64, False, "guest hung")
    plan = accel.plan("auto", X86_64)
    assert plan.first == "tcg" and "guest hung" in plan.note


def result(outcome: Outcome, known: str | None = None, reproduced: bool = False) -> RunResult:
    details = {"known_bug": known, "known_bug_reproduced": reproduced} if known else {}
    return RunResult("s", outcome, "why", Path("/a"), {"arch": "x86_64"}, [], [], "", 1.0, details)


BUG = "BUG: unable to handle kernel paging request in clear_page"


@pytest.mark.parametrize(
    ("results", "run_code", "bisect_code"),
    [
        ([result(Outcome.PASS)], 0, 0),
        ([result(Outcome.PASS), result(Outcome.SKIPPED)], 0, 0),
        ([result(Outcome.SKIPPED)], 125, 125),
        # a known bug reproducing is expected in a run, but it is the bug for bisect
        ([result(Outcome.PASS), result(Outcome.KERNEL_SPLAT, BUG, True)], 0, 1),
        # a known-bug scenario that splats with something else has failed
        ([result(Outcome.KERNEL_SPLAT, BUG, False)], 1, 1),
        # the known bug did not reproduce: news in a run, a good commit for bisect
        ([result(Outcome.PASS, BUG)], 1, 0),
        ([result(Outcome.HANG)], 1, 1),
        ([result(Outcome.INFRA_ERROR)], 1, 125),
        ([result(Outcome.INFRA_ERROR), result(Outcome.COMMAND_FAILED)], 1, 1),
    ],
)
def test_run_exit_codes(results: list[RunResult], run_code: int, bisect_code: int) -> None:
    assert summary.exit_code(results) == run_code
    assert summary.exit_code(results, bisect=True) == bisect_code


def test_table_says_expected_and_unexpected() -> None:
    text = summary.table([result(Outcome.KERNEL_SPLAT, BUG, True), result(Outcome.PASS, BUG)])
    assert "known bug reproduced (expected)" in text
    assert f"UNEXPECTED PASS: known bug did not reproduce: {BUG}" in text
