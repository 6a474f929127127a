"""The bisect's judgement of a commit by one title (harness/bisect/judge.py), on results shaped
as run.py records them: known splats on a good commit, other splats, hangs, infrastructure
errors, build failures and flaky reproduction rates."""

import math
import random

import pytest

from harness.bisect.judge import (
    MAX_RUNS,
    RunJudgement,
    Verdict,
    confidence,
    judge_run,
    judge_step,
    miss_chance,
    pick_target,
    runs_needed,
)
from harness.outcome import Outcome
from harness.result import RunResult
from tests.unit.test_outcome_pure import BUG, KS, NEW, POISON, result

pytestmark = pytest.mark.unit

OTHER = "WARNING in some_other_function"


@pytest.mark.parametrize(
    ("results", "verdict", "reason"),
    [
        # the debug kernel's known bug on every commit: a good commit, not a bad one
        ([result(KS, None, (POISON,), (POISON,))], Verdict.GOOD, "known splats"),
        # a scenario's own declared known bug reproducing: good too
        ([result(KS, BUG, (BUG,))], Verdict.GOOD, "known splats"),
        ([result(Outcome.PASS)], Verdict.GOOD, "clean"),
        # a scenario whose known bug did not reproduce is no news for this bisect
        ([result(Outcome.PASS, BUG)], Verdict.GOOD, "clean"),
        # the target, alone or next to known and other splats
        ([result(KS, None, (NEW,))], Verdict.BAD, "reproduced"),
        ([result(KS, None, (POISON, NEW), (POISON,))], Verdict.BAD, "reproduced"),
        ([result(KS, None, (OTHER, NEW))], Verdict.BAD, "reproduced"),
        ([result(Outcome.PASS), result(KS, None, (NEW,))], Verdict.BAD, "reproduced"),
        # another new splat may hide the target: skip, never bad
        ([result(KS, None, (OTHER,))], Verdict.SKIP, OTHER),
        ([result(Outcome.HANG)], Verdict.SKIP, "hang"),
        ([result(Outcome.INFRA_ERROR)], Verdict.SKIP, "infra-error"),
        ([result(Outcome.COMMAND_FAILED)], Verdict.SKIP, "command-failed"),
        # a known issue, but the scenario's checks failed: it cannot tell
        ([result(KS, None, (POISON,), (POISON,), ("no pmem",))], Verdict.SKIP, "kernel-splat"),
        ([result(Outcome.SKIPPED)], Verdict.SKIP, "nothing ran"),
        ([result(Outcome.INTERRUPTED)], Verdict.SKIP, "nothing ran"),
        ([], Verdict.SKIP, "nothing ran"),
    ],
)
def test_judge_run(results: list[RunResult], verdict: Verdict, reason: str) -> None:
    judged = judge_run(results, NEW)
    assert judged.verdict == verdict
    assert reason in judged.reason


def j(verdict: Verdict) -> RunJudgement:
    return RunJudgement(verdict, str(verdict), ())


@pytest.mark.parametrize(
    ("runs", "planned", "verdict"),
    [
        ([j(Verdict.GOOD)] * 3, 3, Verdict.GOOD),
        # bad on the first reproduction, even after clean runs
        ([j(Verdict.GOOD), j(Verdict.GOOD), j(Verdict.BAD)], 12, Verdict.BAD),
        ([j(Verdict.SKIP), j(Verdict.BAD)], 3, Verdict.BAD),
        # a run that could not tell leaves the commit open, whatever the clean ones say
        ([j(Verdict.GOOD), j(Verdict.SKIP), j(Verdict.GOOD)], 3, Verdict.SKIP),
        # good only after all planned runs
        ([j(Verdict.GOOD)], 3, Verdict.SKIP),
        ([], 1, Verdict.SKIP),
    ],
)
def test_judge_step(runs: list[RunJudgement], planned: int, verdict: Verdict) -> None:
    assert judge_step(runs, planned).verdict == verdict


def test_runs_for_a_bug_reproduced_one_run_in_three() -> None:
    n = runs_needed(1, 3)
    assert miss_chance(1 / 3, n) < 0.01 <= miss_chance(1 / 3, n - 1)
    assert n == 12
    # simulate: a bad commit reproducing 1 in 3, judged with n runs, is missed < 1% of the time
    rng = random.Random(7)
    trials = 20000
    missed = sum(all(rng.random() >= 1 / 3 for _ in range(n)) for _ in range(trials))
    assert missed / trials < 0.01


@pytest.mark.parametrize(
    ("reproduced", "measured", "runs"),
    [(3, 3, 1), (1, 1, 1), (2, 3, 5), (1, 2, 7), (1, 10, 44), (1, 1000, MAX_RUNS)],
)
def test_runs_needed(reproduced: int, measured: int, runs: int) -> None:
    assert runs_needed(reproduced, measured) == runs


def test_runs_needed_refuses_no_reproduction() -> None:
    with pytest.raises(ValueError):
        runs_needed(0, 3)


def test_confidence() -> None:
    assert confidence(1.0, [1, 1, 1]) == 1.0
    # three good steps of 12 runs at 1/3: each misses (2/3)^12
    assert math.isclose(confidence(1 / 3, [12, 12, 12]), (1 - (2 / 3) ** 12) ** 3)
    assert confidence(0.5, []) == 1.0


@pytest.mark.parametrize(
    ("bad", "good", "new", "target"),
    [
        # the known bug is at both endpoints: the planted title is the one that differs
        ((POISON, NEW), (POISON,), (NEW,), NEW),
        # a flaky known issue met only at bad loses to a new title met later
        (("VM_BUG_ON_PAGE(PagePoisoned(p)) in get_hwpoison_page", NEW), (), (NEW,), NEW),
        # no new title: the first that differs
        ((POISON, OTHER), (POISON,), (), OTHER),
    ],
)
def test_pick_target(
    bad: tuple[str, ...], good: tuple[str, ...], new: tuple[str, ...], target: str
) -> None:
    assert pick_target(bad, good, new) == target


def test_pick_target_needs_a_difference() -> None:
    with pytest.raises(ValueError):
        pick_target((POISON,), (POISON, NEW), ())
