"""What `memharness run` prints and writes (pure: results in, text out)."""

import json
from typing import TYPE_CHECKING, Any

from harness.outcome import Outcome
from harness.result import RunResult

if TYPE_CHECKING:
    from harness.run import RunReport

# How a result counts for the run as a whole (pytest's xfail semantics for known bugs).
PASSED, EXPECTED, KNOWN_ISSUE, UNEXPECTED_PASS, FAILED, SKIPPED, INTERRUPTED = (
    "passed",
    "known bug (expected)",
    "known issue",
    "UNEXPECTED PASS",
    "failed",
    "skipped",
    "interrupted",
)


def new_titles(result: RunResult) -> list[str]:
    """Splat titles that are neither the scenario's known bug nor a registered known issue."""
    return [
        c["title"]
        for c in result.details.get("splat_classes", [])
        if not c["known_issue"] and not c["scenario_known_bug"]
    ]


def known_issue_titles(result: RunResult) -> list[str]:
    return [c["title"] for c in result.details.get("splat_classes", []) if c["known_issue"]]


def verdict(result: RunResult) -> str:
    """A scenario that declares a known bug is expected to reproduce it: doing so is not a
    failure of the run, and passing is news (the bug is fixed, or the scenario lost its grip).
    A splat whose every title is a registered known issue (and no check failed) is a known
    issue, not a failure; any new title fails."""
    details = result.details
    known = details.get("known_bug")
    if result.outcome == Outcome.SKIPPED:
        return SKIPPED
    if result.outcome == Outcome.INTERRUPTED:
        return INTERRUPTED
    if result.outcome == Outcome.PASS:
        return UNEXPECTED_PASS if known else PASSED
    if new_titles(result):
        return FAILED
    if known and details.get("known_bug_reproduced"):
        return EXPECTED
    if result.outcome == Outcome.KERNEL_SPLAT and not details.get("failures"):
        return KNOWN_ISSUE
    return FAILED


def exit_code(
    results: list[RunResult], bisect: bool = False, bisect_title: str | None = None
) -> int:
    """0 when every scenario that ran passed, reproduced its known bug or met only known
    issues; 1 when any failed (a new title, a failed check, a hang) or passed unexpectedly;
    125 when none could run.

    For `git bisect run`: ``bisect_title`` is 1 only when that title reproduced, 0 when the run
    is clean or shows only other known splats, 125 (skip this commit) otherwise.  ``bisect``
    (the older form) counts any splat, known ones too, as bad: on a debug kernel whose good
    commits splat with a known bug it names the wrong commit."""
    ran = [r for r in results if r.outcome not in (Outcome.SKIPPED, Outcome.INTERRUPTED)]
    if not ran:
        return 125
    if bisect_title is not None:
        # The judgement `memharness bisect` makes of each run (harness/bisect/judge.py).
        from harness.bisect.judge import EXIT, judge_run

        return EXIT[judge_run(results, bisect_title).verdict]
    if bisect:
        outcomes = {r.outcome for r in ran}
        if outcomes & {Outcome.KERNEL_SPLAT, Outcome.HANG, Outcome.COMMAND_FAILED}:
            return 1
        return 125 if Outcome.INFRA_ERROR in outcomes else 0
    return 1 if any(verdict(r) in (FAILED, UNEXPECTED_PASS) for r in ran) else 0


def row(result: RunResult) -> dict[str, Any]:
    details = result.details
    return {
        "scenario": result.name,
        "arch": result.machine.get("arch"),
        "outcome": str(result.outcome),
        "reason": result.reason,
        "seconds": round(result.seconds, 1),
        "boot_seconds": result.boot_seconds,
        "collision_sections": details.get("collision_sections", []),
        "splats": [s.title for s in result.splats],
        "skipped": details.get("skipped", []),
        "failures": details.get("failures", []),
        "known_bug": details.get("known_bug"),
        "known_bug_reproduced": bool(details.get("known_bug_reproduced")),
        "known_bug_not_expected": details.get("known_bug_not_expected"),
        "new_splats": new_titles(result),
        "known_issues": known_issue_titles(result),
        "walks": details.get("walks", {"planned": 0, "ran": 0, "cut_short": []}),
        "verdict": verdict(result),
        "artifacts": str(result.artifacts),
        "reproducer": result.reproducer,
    }


def table(results: list[RunResult], possibly_fixed: list[dict[str, Any]] | None = None) -> str:
    width = max([len("scenario"), *(len(r.name) for r in results)])
    header = (
        f"{'scenario':<{width}} {'arch':<7} {'outcome':<15} {'time':>6}  {'sections':<9} detail"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        d = row(r)
        sections = ",".join(str(n) for n in d["collision_sections"]) or "-"
        detail = "" if r.outcome in (Outcome.PASS, Outcome.SKIPPED) else r.reason
        if d["verdict"] == EXPECTED:
            detail = f"known bug reproduced (expected): {r.reason}"
        elif d["verdict"] == KNOWN_ISSUE:
            detail = f"known issue: {r.reason}"
        elif d["verdict"] == UNEXPECTED_PASS:
            detail = f"UNEXPECTED PASS: known bug did not reproduce: {d['known_bug']}"
        elif d["new_splats"]:
            detail = f"NEW: {d['new_splats'][0]}"
        elif r.outcome == Outcome.PASS and d["known_bug_not_expected"]:
            detail = "its known bug is not expected on this kernel (registry)"
        elif r.outcome == Outcome.PASS and d["skipped"]:
            detail = f"{len(d['skipped'])} step(s) skipped"
        elif r.outcome == Outcome.SKIPPED:
            detail = "see SKIPPED below"
        lines.append(
            f"{d['scenario']:<{width}} {d['arch']:<7} {d['outcome']:<15} "
            f"{d['seconds']:>5.1f}s  {sections:<9} {detail}"
        )
    skipped = [
        (r.name, r.machine.get("arch"), s) for r in results for s in r.details.get("skipped", [])
    ]
    if skipped:
        lines.append("")
        lines.append(f"SKIPPED ({len(skipped)} did not run; they are not passes):")
        for name, arch, step in skipped:
            lines.append(f"  {name} {arch}: {step}")
    cut = [
        (r.name, r.machine.get("arch"), w) for r in results for w in row(r)["walks"]["cut_short"]
    ]
    if cut:
        lines.append("")
        lines.append(f"CUT SHORT ({len(cut)} walks did not run: the guest was gone; not passes):")
        for name, arch, walk in cut:
            lines.append(f"  {name} {arch}: {walk}")
    met = known_issues_met(results)
    if met:
        lines.append("")
        lines.append(f"KNOWN ISSUES ({len(met)}; they do not fail the run):")
        for entry in met:
            lines.append(f"  {entry['title']}  [{entry['upstream']}]")
            lines.append(f"    in: {', '.join(entry['scenarios'])}")
    if possibly_fixed:
        lines.append("")
        lines.append("POSSIBLY FIXED (registered for this kernel, met by no scenario of this run):")
        for entry in possibly_fixed:
            lines.append(f"  {entry['title']} ({entry['arch']})")
    bad = [r for r in results if verdict(r) in (FAILED, EXPECTED, UNEXPECTED_PASS)]
    if bad:
        lines.append("")
        for r in bad:
            what = f"{r.outcome}: {r.reason}"
            if verdict(r) != FAILED:
                what = f"{verdict(r)}: {r.outcome}: {r.reason}"
            lines.append(f"{r.name} {r.machine.get('arch')}: {what}")
            lines.append(f"  artifacts: {r.artifacts}")
            lines.append(f"  reproduce: {r.reproducer}")
    return "\n".join(lines)


def known_issues_met(results: list[RunResult]) -> list[dict[str, Any]]:
    """Each registered known issue the run met, with its entry and the scenarios it cut (each
    once: one bug can raise several splats in a scenario, e.g. a report and its follow-on)."""
    met: dict[str, dict[str, Any]] = {}
    for r in results:
        for c in r.details.get("splat_classes", []):
            entry = c["known_issue"]
            if entry:
                slot = met.setdefault(entry["title"], {**entry, "scenarios": []})
                where = f"{r.name} ({r.machine.get('arch')})"
                if where not in slot["scenarios"]:
                    slot["scenarios"].append(where)
    return list(met.values())


def walk_totals(results: list[RunResult]) -> dict[str, int]:
    """Walks planned, run and cut short over the run.  Walks a scenario's own declared known
    bug cut short (the walk after a teardown that is the bug) only mean something on a fixed
    kernel: they are counted apart, not as cut short."""
    return walk_totals_of_rows([row(r) for r in results])


def walk_totals_of_rows(rows: list[dict[str, Any]]) -> dict[str, int]:
    """``walk_totals`` from the rows of a run's JSON (what `memharness merge` has)."""
    expected = [len(d["walks"]["cut_short"]) for d in rows if d["verdict"] == EXPECTED]
    return {
        "planned": sum(d["walks"]["planned"] for d in rows),
        "ran": sum(d["walks"]["ran"] for d in rows),
        "cut_short": sum(len(d["walks"]["cut_short"]) for d in rows) - sum(expected),
        "cut_short_by_own_known_bug": sum(expected),
    }


def _shard_fields(report: "RunReport") -> dict[str, Any]:
    return {"shard": report.shard, "possibly_fixed_candidates": report.possibly_fixed_candidates}


def to_json(report: "RunReport", bisect: bool = False, bisect_title: str | None = None) -> str:
    """The run's one JSON schema (``memharness run --json``; see the README).  An interrupted
    run says so and lists what did not run; its exit_code is 128 + the signal."""
    results = report.results
    passed = sum(r.outcome == Outcome.PASS for r in results)
    counts = {
        v: sum(verdict(r) == v for r in results) for v in (EXPECTED, UNEXPECTED_PASS, KNOWN_ISSUE)
    }
    if report.interrupted:
        code = report.interrupted.exit_code
    else:
        code = exit_code(results, bisect, bisect_title)
    return json.dumps(
        {
            "passed": passed,
            "total": len(results),
            "known_bugs_reproduced": counts[EXPECTED],
            "known_issue_scenarios": counts[KNOWN_ISSUE],
            "unexpected_passes": counts[UNEXPECTED_PASS],
            "new_splats": sorted({t for r in results for t in new_titles(r)}),
            "exit_code": code,
            "interrupted": report.interrupted.name if report.interrupted else None,
            "not_run": report.not_run,
            "catalogue": report.catalogue,
            "kernels": report.kernels,
            "walks": walk_totals(results),
            "known_issues": known_issues_met(results),
            "possibly_fixed": report.possibly_fixed,
            **(
                {
                    "shard": report.shard,
                    "possibly_fixed_candidates": report.possibly_fixed_candidates,
                }
                if report.shard
                else {}
            ),
            "results": [row(r) for r in results],
        },
        indent=2,
    )
