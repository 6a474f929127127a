"""`memharness selftests` results for people (a table) and for CI (JSON, JUnit XML)."""

import json
import xml.etree.ElementTree as ET

from harness.selftests.runner import SelftestsReport

MARK = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP", "known": "KNOWN", "not-run": "NOT RUN"}


def table(report: SelftestsReport) -> str:
    width = max([len(r.name) for r in report.runs] + [4])
    lines = [
        f"mm selftests of {report.source} on {report.kernel} ({report.arch}), "
        f"layout {report.scenario}",
        f"{'run':<{width}}  {'result':<7}  {'subtests':>8}  {'time':>7}  why",
    ]
    for r in report.runs:
        counts = f"{sum(s['status'] in ('pass', 'xfail') for s in r.subtests)}/{len(r.subtests)}"
        lines.append(
            f"{r.name:<{width}}  {MARK[r.status]:<7}  {counts if r.subtests else '-':>8}  "
            f"{r.seconds:>6.1f}s  {r.reason}"
        )
    failed = len(report.failed)
    tally = {k: sum(r.status == k for r in report.runs) for k in MARK}
    lines.append(
        f"{len(report.runs)} runs: {tally['pass']} passed, {failed} failed, "
        f"{tally['skip']} skipped, {tally['known']} known"
    )
    if report.record is not None:
        lines.append(f"artifacts: {report.record.artifacts}")
    return "\n".join(lines)


def to_json(report: SelftestsReport) -> str:
    return json.dumps(report.to_json(), indent=2)


def to_junit(report: SelftestsReport) -> str:
    suite = ET.Element(
        "testsuite",
        name=f"memharness.selftests.{report.arch}",
        tests=str(len(report.runs)),
        failures=str(sum(r.status == "fail" for r in report.runs)),
        errors=str(sum(r.status == "not-run" for r in report.runs)),
        skipped=str(sum(r.status in ("skip", "known") for r in report.runs)),
        time=f"{sum(r.seconds for r in report.runs):.1f}",
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("kernel", report.kernel),
        ("source", report.source),
        ("scenario", report.scenario),
    ):
        ET.SubElement(props, "property", name=name, value=value)
    for r in report.runs:
        case = ET.SubElement(
            suite, "testcase", classname=f"selftests.{r.test}", name=r.name, time=f"{r.seconds:.1f}"
        )
        if r.status == "fail":
            ET.SubElement(case, "failure", message=r.reason).text = r.output_tail
        elif r.status == "not-run":
            ET.SubElement(case, "error", message=r.reason)
        elif r.status in ("skip", "known"):
            ET.SubElement(case, "skipped", message=r.reason)
        if r.output_tail:
            ET.SubElement(case, "system-out").text = r.output_tail
    return ET.tostring(suite, encoding="unicode")
