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


BUG = "BUG: unable to handle kernel paging request in clear_page"
POISON = "VM_BUG_ON_PAGE(PagePoisoned(page)) in clear_hwpoisoned_pages"
NEW = "BUG: KASAN: use-after-free in memunmap_pages"
ENTRY = {
    "title": POISON,
    "upstream": "not reported",
    "why": "x",
    "arches": [],
    "versions": "",
    "config": [],
}


def result(
    outcome: Outcome,
    known: str | None = None,
    titles: tuple[str, ...] = (),
    registered: tuple[str, ...] = (),
    failures: tuple[str, ...] = (),
) -> RunResult:
    """A recorded result as run.py makes it: its splats, each classified."""
    splats = [Splat(t, "BUG", None, t) for t in titles]
    details: dict[str, object] = {
        "failures": list(failures),
        "splat_classes": [
            {
                "title": t,
                "scenario_known_bug": t == known,
                "known_issue": {**ENTRY, "title": t} if t in registered else None,
            }
            for t in titles
        ],
    }
    if known:
        details.update(known_bug=known, known_bug_reproduced=known in titles)
    return RunResult(
        "s", outcome, "why", Path("/a"), {"arch": "x86_64"}, splats, [], "", 1.0, details
    )


KS = Outcome.KERNEL_SPLAT


@pytest.mark.parametrize(
    ("results", "run_code", "bisect_code", "title_code"),
    [
        ([result(Outcome.PASS)], 0, 0, 0),
        ([result(Outcome.PASS), result(Outcome.SKIPPED)], 0, 0, 0),
        ([result(Outcome.SKIPPED)], 125, 125, 125),
        # a known bug reproducing is expected in a run, but it is the bug for bisect
        ([result(Outcome.PASS), result(KS, BUG, (BUG,))], 0, 1, 0),
        # a known-bug scenario that splats with something else has failed
        ([result(KS, BUG, (NEW,))], 1, 1, 1),
        # the known bug did not reproduce: news in a run, a good commit for bisect
        ([result(Outcome.PASS, BUG)], 1, 0, 0),
        ([result(Outcome.HANG)], 1, 1, 125),
        ([result(Outcome.INFRA_ERROR)], 1, 125, 125),
        ([result(Outcome.INFRA_ERROR), result(Outcome.COMMAND_FAILED)], 1, 1, 125),
        # a registered known issue does not fail a run; --bisect calls it bad anyway, and
        # --bisect-title NEW calls the commit good (it shows only known splats)
        ([result(KS, None, (POISON,), (POISON,))], 0, 1, 0),
        # a new title next to a known one fails; it is the target, so bad for --bisect-title
        ([result(KS, None, (POISON, NEW), (POISON,))], 1, 1, 1),
        # a known issue that cut a scenario whose checks had already failed: failed
        ([result(KS, None, (POISON,), (POISON,), ("layout: no pmem",))], 1, 1, 125),
        # another new splat than the target: not this regression, skip the commit
        ([result(KS, None, ("WARNING in other_function",))], 1, 1, 125),
        # interrupted: nothing ran to the end
        ([result(Outcome.INTERRUPTED)], 125, 125, 125),
    ],
)
def test_run_exit_codes(
    results: list[RunResult], run_code: int, bisect_code: int, title_code: int
) -> None:
    assert summary.exit_code(results) == run_code
    assert summary.exit_code(results, bisect=True) == bisect_code
    assert summary.exit_code(results, bisect_title=NEW) == title_code


def test_verdicts() -> None:
    assert summary.verdict(result(KS, None, (POISON,), (POISON,))) == summary.KNOWN_ISSUE
    assert summary.verdict(result(KS, BUG, (BUG,))) == summary.EXPECTED
    assert summary.verdict(result(KS, BUG, (BUG, NEW))) == summary.FAILED
    assert summary.verdict(result(Outcome.INTERRUPTED)) == summary.INTERRUPTED


def test_table_says_expected_and_unexpected() -> None:
    text = summary.table([result(KS, BUG, (BUG,)), result(Outcome.PASS, BUG)])
    assert "known bug reproduced (expected)" in text
    assert f"UNEXPECTED PASS: known bug did not reproduce: {BUG}" in text


def test_a_known_issue_lists_each_scenario_once_however_many_splats_it_raised() -> None:
    """The KASAN build meets seed 000's race as two splats (KASAN's report, then the fault
    inside it), both one registered issue: the summary names the scenario once, not twice."""
    report, fault = "KASAN: out-of-bounds Read in f", "general protection fault in f"
    twice = result(KS, None, (report, fault), (report, fault))
    for c in twice.details["splat_classes"]:
        c["known_issue"] = {**ENTRY, "title": "the race"}
    (met,) = summary.known_issues_met([twice])
    assert met["scenarios"] == ["s (x86_64)"]
    text = summary.table([twice])
    assert "in: s (x86_64)\n" in text + "\n"
    assert "s (x86_64), s (x86_64)" not in text
