"""`memharness bisect`: the run flow once per commit, judged by one splat title.

Endpoints first: the bad commit must reproduce the target title (its rate over a few runs
decides how many runs a step needs), the good commit must not show it.  Then ``git bisect`` in
a worktree of the user's tree picks commits; each is built incrementally in the one build
directory of the bisect, run, and judged (``judge``): bad on the first reproduction, good only
when every run was clean or met only known splats, skip for anything that leaves the question
open.  Too many skips in a row stop the bisect with the range that is left.
"""

import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.arch import ArchProfile
from harness.bisect.git import Commit, Worktree, check_range, describe
from harness.bisect.judge import (
    RunJudgement,
    StepJudgement,
    Verdict,
    confidence,
    judge_run,
    judge_step,
    miss_chance,
    pick_target,
    runs_needed,
    titles_of,
)
from harness.catalogue.model import CATALOGUE
from harness.errors import InfraError, UserError
from harness.kernel.build import build_kernel, check_host, fragment_files
from harness.known.registry import REGISTRY
from harness.proc import Interrupted
from harness.report.summary import new_titles
from harness.result import RunResult
from harness.run import RunRequest, prepare_selection, run_selection, select_scenarios

log = logging.getLogger(__name__)
MEASURE_RUNS = 3  # runs at the bad endpoint that measure the reproduction rate


@dataclass(frozen=True)
class BisectRequest:
    tree: Path
    good: str
    bad: str
    arch: ArchProfile
    scenarios: str  # comma-separated
    fragments: tuple[str, ...]
    artifacts: Path
    title: str | None = None
    runs: int | None = None  # runs per step (and at the bad endpoint); None: from the rate
    max_skips: int = 3  # skips in a row before the bisect stops with a range
    accel: str = "tcg"
    catalogue: Path = CATALOGUE
    registry: Path = REGISTRY


@dataclass
class Step:
    """One tested commit: an endpoint or a step git chose."""

    role: str  # "bad endpoint", "good endpoint", "step N"
    commit: Commit
    verdict: Verdict
    reason: str
    runs: int
    build_seconds: float | None
    seconds: float
    titles: list[str]
    artifacts: str
    kernel: str = ""  # the build directory the step booted (the bisect's one, rebuilt per step)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "commit": self.commit.to_json(),
            "verdict": str(self.verdict),
            "reason": self.reason,
            "runs": self.runs,
            "build_seconds": round(self.build_seconds, 1) if self.build_seconds else None,
            "seconds": round(self.seconds, 1),
            "titles": self.titles,
            "artifacts": self.artifacts,
            "kernel": self.kernel,
        }


@dataclass
class BisectResult:
    request: BisectRequest
    title: str
    reproduced: int  # at the bad endpoint, of ``measured`` runs
    measured: int
    runs_per_step: int
    steps: list[Step] = field(default_factory=list)
    culprit: Commit | None = None
    candidates: list[Commit] = field(default_factory=list)  # when only a range is known
    stopped: str = ""  # why the bisect ended without one commit

    @property
    def rate(self) -> float:
        return self.reproduced / self.measured

    @property
    def confidence(self) -> float:
        goods = [s.runs for s in self.steps if s.verdict == Verdict.GOOD]
        return confidence(self.rate, goods)

    @property
    def exit_code(self) -> int:
        return 0 if self.culprit else 1

    def reproducer(self) -> str:
        """One line that rebuilds the culprit (or the first candidate) and runs the scenarios
        judged by the title, as `git bisect run` would."""
        req = self.request
        commit = self.culprit or (self.candidates[0] if self.candidates else None)
        if commit is None:
            return ""
        build = [
            "memharness", "kernel", "build", "--arch", req.arch.name,
            "--src", str(req.tree), "--commit", commit.hash,
        ]  # fmt: skip
        for f in req.fragments:
            build += ["--fragment", f]
        run = [
            "memharness", "run", "--arch", req.arch.name, "--scenario", req.scenarios,
            "--bisect-title", self.title,
        ]  # fmt: skip
        return f'{shlex.join(run)} --kernel "{req.arch.name}=$({shlex.join(build)})"'

    def to_json(self) -> dict[str, Any]:
        req = self.request
        return {
            "tree": str(req.tree),
            "good": req.good,
            "bad": req.bad,
            "arch": req.arch.name,
            "scenarios": req.scenarios.split(","),
            "fragments": list(req.fragments),
            "title": self.title,
            "rate": {"reproduced": self.reproduced, "runs": self.measured},
            "runs_per_step": self.runs_per_step,
            "miss_chance_per_step": round(miss_chance(self.rate, self.runs_per_step), 6),
            "culprit": self.culprit.to_json() if self.culprit else None,
            "candidates": [c.to_json() for c in self.candidates],
            "stopped": self.stopped,
            "confidence": round(self.confidence, 6),
            "steps": [s.to_json() for s in self.steps],
            "reproducer": self.reproducer(),
            "exit_code": self.exit_code,
        }


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class _Tested:
    """What one commit gave before it is judged: every run's results."""

    commit: Commit
    build_seconds: float | None
    artifacts: Path
    runs: list[list[RunResult]] = field(default_factory=list)
    build_error: str | None = None
    kernel: Path | None = None  # the build directory, once built
    busy: float = 0.0  # seconds spent building and running this commit (endpoints interleave)

    def judgements(self, title: str) -> list[RunJudgement]:
        return [judge_run(results, title) for results in self.runs]


class Bisect:
    """One bisect: checks the input, then tests commits in the worktree."""

    def __init__(self, request: BisectRequest, progress: Progress = _quiet) -> None:
        self.request = request
        self.progress = progress
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.tested = 0

    def check(self) -> tuple[Path, str, str]:
        """Every input check, before anything is built: tree, revisions, scenarios, host
        tools, fragments (one line naming the fix each)."""
        req = self.request
        if req.title is not None and not req.title.strip():
            raise UserError("--title is empty: pass the splat title to follow, or leave it out")
        run_request = self._run_request(req.artifacts)
        select_scenarios(run_request)
        check_host(req.arch)
        fragment_files(list(req.fragments), req.arch)
        return check_range(req.tree, req.good, req.bad)

    def _run_request(self, artifacts: Path, kernel: Path | None = None) -> RunRequest:
        req = self.request
        return RunRequest(
            arches=(req.arch,),
            scenarios=req.scenarios,
            kernels=(f"{req.arch.name}={kernel}",) if kernel else (),
            artifacts=artifacts,
            accel=req.accel,
            catalogue=req.catalogue,
            registry=req.registry,
        )

    def run(self) -> BisectResult:
        top, good, bad = self.check()
        req = self.request
        worktree = Worktree(top)
        with worktree.held():
            return self._bisect(worktree, top, good, bad, req)

    def _bisect(
        self, worktree: Worktree, top: Path, good: str, bad: str, req: BisectRequest
    ) -> BisectResult:
        # The bad endpoint: the title must reproduce; its rate sets the runs per step.
        measure = req.runs or MEASURE_RUNS
        at_bad = self._test(worktree, top, bad, "bad endpoint", measure, stop_title=None)
        if at_bad.build_error:
            raise UserError(f"--bad {req.bad}: {at_bad.build_error}: pass a commit that builds")
        bad_titles = titles_of(r for results in at_bad.runs for r in results)
        at_good = self._test(worktree, top, good, "good endpoint", 1, stop_title=None)
        if at_good.build_error:
            raise UserError(f"--good {req.good}: {at_good.build_error}: pass a commit that builds")
        title = req.title
        if title is None:
            good_titles = titles_of(r for results in at_good.runs for r in results)
            fresh = [t for results in at_bad.runs for r in results for t in new_titles(r)]
            try:
                title = pick_target(bad_titles, good_titles, fresh)
            except ValueError:
                shown = "; ".join(bad_titles) or "no splat"
                raise UserError(
                    f"the endpoints do not differ: --bad {req.bad} shows {shown}, all of it "
                    "at --good too: pass --title, other scenarios or other endpoints"
                ) from None
            self.progress(f"target title (first at --bad, not at --good): {title}")
        reproduced = sum(j.verdict == Verdict.BAD for j in at_bad.judgements(title))
        if not reproduced:
            seen = "; ".join(bad_titles) or "no splat"
            raise UserError(
                f"--bad {req.bad} does not reproduce {title!r} in {measure} run(s) (it shows "
                f"{seen}): pass the title it shows with --title, or a later bad commit"
            )
        per_step = req.runs or runs_needed(reproduced, measure)
        result = BisectResult(req, title, reproduced, measure, per_step)
        result.steps.append(self._judged(at_bad, title, measure, "bad endpoint"))
        self.progress(
            f"bad endpoint {bad[:12]}: reproduced {reproduced} of {measure} run(s); "
            f"{per_step} run(s) per step"
        )
        # The good endpoint: all its runs must be free of the title (one run is made already).
        self._more_runs(at_good, per_step, title)
        good_step = self._judged(at_good, title, per_step, "good endpoint")
        result.steps.append(good_step)
        if good_step.verdict == Verdict.BAD:
            raise UserError(
                f"--good {req.good} reproduces {title!r} too: pass an older good commit"
            )
        if good_step.verdict == Verdict.SKIP:
            raise UserError(
                f"--good {req.good} cannot be judged ({good_step.reason}): pass another good "
                "commit, or scenarios that run on it"
            )
        self.progress(f"good endpoint {good[:12]}: {good_step.reason}")
        return self._steps(worktree, top, good, bad, result)

    def _steps(
        self, worktree: Worktree, top: Path, good: str, bad: str, result: BisectResult
    ) -> BisectResult:
        req = self.request
        commit = worktree.start(bad, good)
        skips = 0
        n = 0
        while commit is not None:
            n += 1
            tested = self._test(
                worktree, top, commit, f"step {n}", result.runs_per_step, result.title
            )
            step = self._judged(tested, result.title, result.runs_per_step, f"step {n}")
            result.steps.append(step)
            commit = worktree.mark(str(step.verdict))
            left = worktree.remaining()
            self.progress(
                f"step {n} {step.commit.hash[:12]} {step.commit.subject[:48]!r}: {step.verdict} "
                f"({step.reason}); build {step.build_seconds or 0:.0f} s, {step.runs} run(s), "
                f"{step.seconds:.0f} s; {len(left)} candidate(s) left"
            )
            skips = skips + 1 if step.verdict == Verdict.SKIP else 0
            if commit is not None and skips >= req.max_skips:
                result.stopped = f"{skips} skips in a row"
                break
        first = worktree.first_bad()
        if first and not result.stopped:
            result.culprit = describe(top, first)
        else:
            result.stopped = result.stopped or "only skipped commits are left"
            result.candidates = [describe(top, c) for c in worktree.remaining()]
        return result

    def _test(
        self,
        worktree: Worktree,
        top: Path,
        commit: str,
        role: str,
        runs: int,
        stop_title: str | None,
    ) -> _Tested:
        """Builds ``commit`` in the worktree and runs the scenarios up to ``runs`` times
        (stopping at the first reproduction of ``stop_title``)."""
        req = self.request
        self.tested += 1
        folder = req.artifacts / f"bisect-{self.stamp}" / f"{self.tested:02d}-{commit[:12]}"
        tested = _Tested(describe(top, commit), None, folder)
        self.progress(f"{role}: building {commit[:12]} {tested.commit.subject[:60]!r}")
        built = time.monotonic()
        try:
            kernel = build_kernel(req.arch, worktree.source(commit), list(req.fragments))
        except (InfraError, UserError) as exc:
            tested.build_error = f"build failed: {exc}"
            return tested
        finally:
            tested.build_seconds = time.monotonic() - built
            tested.busy += tested.build_seconds
        tested.kernel = kernel
        self._more_runs(tested, runs, stop_title)
        return tested

    def _more_runs(self, tested: _Tested, runs: int, stop_title: str | None) -> None:
        """Adds runs until there are ``runs`` of them or ``stop_title`` reproduced."""
        if len(tested.runs) >= runs:
            return
        started = time.monotonic()
        try:
            self._run_until(tested, runs, stop_title)
        finally:
            tested.busy += time.monotonic() - started

    def _run_until(self, tested: _Tested, runs: int, stop_title: str | None) -> None:
        request = self._run_request(tested.artifacts, tested.kernel)
        selection = prepare_selection(request, select_scenarios(request))
        while len(tested.runs) < runs:
            folder = tested.artifacts / f"run-{len(tested.runs) + 1}"
            selection.request = replace(request, artifacts=folder)
            report = run_selection(selection)
            if report.interrupted:
                raise Interrupted(report.interrupted.signum)
            tested.runs.append(report.results)
            if stop_title and judge_run(report.results, stop_title).verdict == Verdict.BAD:
                break

    def _judged(self, tested: _Tested, title: str, planned: int, role: str) -> Step:
        if tested.build_error:
            judged = StepJudgement(Verdict.SKIP, tested.build_error, 0)
        else:
            judged = judge_step(tested.judgements(title), planned)
        return Step(
            role=role,
            commit=tested.commit,
            verdict=judged.verdict,
            reason=judged.reason,
            runs=judged.runs,
            build_seconds=tested.build_seconds,
            seconds=tested.busy,
            titles=list(titles_of(r for results in tested.runs for r in results)),
            artifacts=str(tested.artifacts),
            kernel=str(tested.kernel or ""),
        )
