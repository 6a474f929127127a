"""What `memharness run` prints and writes (pure: results in, text out)."""

import html
import json
from typing import TYPE_CHECKING, Any

from harness.outcome import Outcome
from harness.result import RunResult

if TYPE_CHECKING:
    from harness.run import RunReport

# How a result counts for the run as a whole (pytest's xfail semantics for known bugs).
PASSED, EXPECTED, UNEXPECTED_PASS, FAILED, SKIPPED = (
    "passed",
    "known bug (expected)",
    "UNEXPECTED PASS",
    "failed",
    "skipped",
)


def verdict(result: RunResult) -> str:
    """A scenario that declares a known bug is expected to reproduce it: doing so is not a
    failure of the run, and passing is news (the bug is fixed, or the scenario lost its grip)."""
    known = result.details.get("known_bug")
    if result.outcome == Outcome.SKIPPED:
        return SKIPPED
    if result.outcome == Outcome.PASS:
        return UNEXPECTED_PASS if known else PASSED
    if known and result.details.get("known_bug_reproduced"):
        return EXPECTED
    return FAILED


def exit_code(results: list[RunResult], bisect: bool = False) -> int:
    """0 when every scenario that ran passed or reproduced its known bug, 1 when any failed or
    passed unexpectedly, 125 when none could run.  With ``bisect`` (for `git bisect run`)
    known bugs are not special: any splat, hang or failed check is 1, an infrastructure error
    is 125 (this commit cannot be tested), and only clean passes are 0."""
    ran = [r for r in results if r.outcome not in (Outcome.SKIPPED, Outcome.INTERRUPTED)]
    if not ran:
        return 125
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
        "verdict": verdict(result),
        "artifacts": str(result.artifacts),
        "reproducer": result.reproducer,
    }


def table(results: list[RunResult]) -> str:
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
        elif d["verdict"] == UNEXPECTED_PASS:
            detail = f"UNEXPECTED PASS: known bug did not reproduce: {d['known_bug']}"
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


def to_json(report: "RunReport", bisect: bool = False) -> str:
    """The run's one JSON schema (``memharness run --json``; see the README).  An interrupted
    run says so and lists what did not run; its exit_code is 128 + the signal."""
    results = report.results
    passed = sum(r.outcome == Outcome.PASS for r in results)
    counts = {v: sum(verdict(r) == v for r in results) for v in (EXPECTED, UNEXPECTED_PASS)}
    code = report.interrupted.exit_code if report.interrupted else exit_code(results, bisect)
    return json.dumps(
        {
            "passed": passed,
            "total": len(results),
            "known_bugs_reproduced": counts[EXPECTED],
            "unexpected_passes": counts[UNEXPECTED_PASS],
            "exit_code": code,
            "interrupted": report.interrupted.name if report.interrupted else None,
            "not_run": report.not_run,
            "results": [row(r) for r in results],
        },
        indent=2,
    )


def to_html(results: list[RunResult]) -> str:
    """A self-contained page: the table, then each scenario's section map and steps."""
    colour = {PASSED: "#2e7d32", SKIPPED: "#757575", EXPECTED: "#ef6c00"}
    rows, blocks = [], []
    for r in results:
        d = row(r)
        c = colour.get(d["verdict"], "#c62828")
        rows.append(
            f"<tr><td>{html.escape(d['scenario'])}</td><td>{d['arch']}</td>"
            f"<td style='color:{c};font-weight:bold'>{d['outcome']}</td><td>{d['verdict']}</td>"
            f"<td>{d['seconds']}s</td><td>{','.join(map(str, d['collision_sections']))}</td>"
            f"<td>{html.escape(r.reason if r.outcome != Outcome.PASS else '')}</td></tr>"
        )
        steps = "".join(
            f"<tr><td>{html.escape(s['name'])}</td><td>{s['status']}</td>"
            f"<td>{s['seconds']:.2f}s</td><td>{html.escape(s['reason'])}</td></tr>"
            for s in r.details.get("steps", [])
        )
        blocks.append(
            f"<h2>{html.escape(r.name)} ({d['arch']})</h2>"
            f"<p>{html.escape(str(r.details.get('summary', '')))}</p>"
            f"<pre>{html.escape(str(r.details.get('layout', '')))}</pre>"
            f"<table><tr><th>step</th><th>status</th><th>time</th><th>why</th></tr>{steps}"
            f"</table><p>artifacts: <code>{html.escape(d['artifacts'])}</code><br>"
            f"reproduce: <code>{html.escape(d['reproducer'])}</code></p>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}pre{background:#f4f4f4;padding:8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>memharness run</title>"
        f"<style>{style}</style></head><body><h1>memharness run</h1><table><tr>"
        f"<th>scenario</th><th>arch</th><th>outcome</th><th>verdict</th><th>time</th><th>sections</th>"
        f"<th>reason</th></tr>{''.join(rows)}</table>{''.join(blocks)}</body></html>\n"
    )
