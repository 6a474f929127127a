"""How a bisect judges a commit by one splat title (pure: recorded results in, verdicts out).

A commit is *bad* only when the target title reproduces.  On a debug kernel every commit of a
series may splat with known bugs, so a known splat (a registered known issue, a scenario's own
declared known bug) is no evidence either way: such a run is *good*.  Anything that leaves the
question open (another new splat that may hide the target, a hang, an infrastructure error, a
failed check, nothing able to run) is *skip*, never bad: calling those bad is how a bisect
names an innocent commit.  The same judgement serves ``memharness run --bisect-title``.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from harness.outcome import Outcome
from harness.report.summary import EXPECTED, KNOWN_ISSUE, PASSED, UNEXPECTED_PASS, verdict
from harness.result import RunResult

MISS_BUDGET = 0.01  # the chance a step may call a bad commit good because a flaky bug hid
MAX_RUNS = 50  # runs per step at most, whatever the measured rate says


class Verdict(StrEnum):
    BAD = "bad"
    GOOD = "good"
    SKIP = "skip"


# `git bisect run` exit codes.
EXIT = {Verdict.GOOD: 0, Verdict.BAD: 1, Verdict.SKIP: 125}
CLEAN = (PASSED, EXPECTED, KNOWN_ISSUE, UNEXPECTED_PASS)


@dataclass(frozen=True)
class RunJudgement:
    """One run of the chosen scenarios on one commit."""

    verdict: Verdict
    reason: str
    titles: tuple[str, ...]  # every splat title the run met, in order, once each


def titles_of(results: Iterable[RunResult]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.title for r in results for s in r.splats))


def judge_run(results: Sequence[RunResult], title: str) -> RunJudgement:
    """bad when ``title`` reproduced in any scenario; good when every scenario that ran was
    clean or met only known splats; skip otherwise, with the first reason."""
    seen = titles_of(results)
    ran = [r for r in results if r.outcome not in (Outcome.SKIPPED, Outcome.INTERRUPTED)]
    hit = [r.name for r in ran if any(s.title == title for s in r.splats)]
    if hit:
        return RunJudgement(Verdict.BAD, f"reproduced in {', '.join(hit)}", seen)
    if not ran:
        why = "; ".join(f"{r.name}: {r.reason}" for r in results) or "no scenario"
        return RunJudgement(Verdict.SKIP, f"nothing ran ({why})", seen)
    for r in ran:
        if verdict(r) in CLEAN:
            continue
        new = [
            c["title"]
            for c in r.details.get("splat_classes", [])
            if not c["known_issue"] and not c["scenario_known_bug"]
        ]
        if new:
            return RunJudgement(Verdict.SKIP, f"another new splat in {r.name}: {new[0]}", seen)
        return RunJudgement(Verdict.SKIP, f"{r.outcome} in {r.name}: {r.reason}", seen)
    known = [t for t in seen if t != title]
    why = f"clean but for known splats ({'; '.join(known)})" if known else "clean"
    return RunJudgement(Verdict.GOOD, why, seen)


@dataclass(frozen=True)
class StepJudgement:
    verdict: Verdict
    reason: str
    runs: int  # runs made


def judge_step(runs: Sequence[RunJudgement], planned: int) -> StepJudgement:
    """Bad on the first reproduction; good only when all ``planned`` runs were good; skip when
    a run could not tell (a clean run after it does not prove the target absent)."""
    for j in runs:
        if j.verdict == Verdict.BAD:
            return StepJudgement(Verdict.BAD, j.reason, len(runs))
    for j in runs:
        if j.verdict == Verdict.SKIP:
            return StepJudgement(Verdict.SKIP, j.reason, len(runs))
    if len(runs) < planned:
        return StepJudgement(Verdict.SKIP, f"only {len(runs)} of {planned} runs made", len(runs))
    reason = runs[-1].reason if runs else "no run"
    return StepJudgement(Verdict.GOOD, f"{len(runs)} run(s): {reason}", len(runs))


def runs_needed(reproduced: int, measured: int, budget: float = MISS_BUDGET) -> int:
    """Runs per step so that a bad commit shows the title with probability ≥ 1 - budget, at
    the rate measured at the bad endpoint (``reproduced`` of ``measured`` runs)."""
    if measured <= 0 or reproduced <= 0:
        raise ValueError("the rate needs at least one reproduction")
    rate = min(reproduced / measured, 1.0)
    if rate >= 1.0:
        return 1
    return min(MAX_RUNS, max(1, math.ceil(math.log(budget) / math.log(1.0 - rate))))


def miss_chance(rate: float, runs: int) -> float:
    """The chance that ``runs`` runs of a bad commit all miss a bug reproduced at ``rate``."""
    return (1.0 - rate) ** runs


def confidence(rate: float, good_steps_runs: Iterable[int]) -> float:
    """The chance that no commit judged good was in fact bad (each good step's runs all
    missing), at the measured rate; bad verdicts are certain (the title was seen)."""
    p = 1.0
    for runs in good_steps_runs:
        p *= 1.0 - miss_chance(rate, runs)
    return p


def pick_target(bad_titles: Sequence[str], good_titles: Iterable[str], new: Iterable[str]) -> str:
    """The default target: the first title at the bad endpoint that the good endpoint did not
    show, preferring titles that are new (a registered known issue is not a regression)."""
    at_good = set(good_titles)
    fresh = set(new)
    candidates = [t for t in bad_titles if t not in at_good]
    for t in candidates:
        if t in fresh:
            return t
    if candidates:
        return candidates[0]
    raise ValueError("no title at the bad endpoint that the good one does not show")
