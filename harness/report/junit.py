"""JUnit XML for CI systems (GitLab, GitHub Actions, Jenkins): one testcase per scenario and
arch, so a CI shows which scenario failed and why without opening an artifact.

- a failure (new splat, failed check, hang, unexpected pass): <failure> whose message is the
  splat title (or the reason) and whose text is the report's first lines;
- a known issue or a scenario's declared known bug: <skipped> with the registry entry, so it
  is visible but does not fail the pipeline; a scenario that could not run: <skipped> with why;
- an infrastructure error: <error>;
- the console tail as <system-out>, the kernel and commit as <properties>.
"""

import xml.etree.ElementTree as ET
from typing import Any

from harness.outcome import Outcome
from harness.report import summary
from harness.result import RunResult

FIRST_LINES = 30


def to_junit(report: Any, name: str = "memharness") -> str:
    results: list[RunResult] = report.results
    verdicts = [summary.verdict(r) for r in results]
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(results)),
        failures=str(
            sum(
                v in (summary.FAILED, summary.UNEXPECTED_PASS) and r.outcome != Outcome.INFRA_ERROR
                for r, v in zip(results, verdicts, strict=True)
            )
        ),
        errors=str(sum(r.outcome == Outcome.INFRA_ERROR for r in results)),
        skipped=str(
            sum(
                v not in (summary.PASSED, summary.FAILED, summary.UNEXPECTED_PASS) for v in verdicts
            )
        ),
        time=f"{sum(r.seconds for r in results):.1f}",
    )
    props = ET.SubElement(suite, "properties")
    for arch, kernel in sorted(report.kernels.items()):
        ET.SubElement(props, "property", name=f"kernel.{arch}", value=kernel["release"])
        ET.SubElement(props, "property", name=f"kernel.{arch}.origin", value=kernel["origin"])
    if report.catalogue:
        ET.SubElement(props, "property", name="catalogue.sha256", value=report.catalogue["sha256"])
    if report.interrupted:
        ET.SubElement(props, "property", name="interrupted", value=report.interrupted.name)
    for result, verdict in zip(results, verdicts, strict=True):
        arch = str(result.machine.get("arch"))
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"memharness.{arch}",
            name=result.name,
            time=f"{result.seconds:.1f}",
        )
        case_props = ET.SubElement(case, "properties")
        kernel = result.machine.get("kernel", {})
        ET.SubElement(case_props, "property", name="kernel", value=str(kernel.get("release")))
        ET.SubElement(case_props, "property", name="artifacts", value=str(result.artifacts))
        ET.SubElement(case_props, "property", name="reproducer", value=result.reproducer)
        _outcome(case, result, verdict)
        tail = str(result.machine.get("console_tail") or "")
        if tail:
            ET.SubElement(case, "system-out").text = _clean(tail)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")


def _outcome(case: ET.Element, result: RunResult, verdict: str) -> None:
    first = result.splats[0] if result.splats else None
    text = "\n".join(first.text.splitlines()[:FIRST_LINES]) if first else result.reason
    if result.outcome == Outcome.INFRA_ERROR:
        ET.SubElement(case, "error", message=_clean(result.reason)).text = _clean(text)
    elif verdict == summary.FAILED:
        new = summary.new_titles(result)
        message = new[0] if new else result.reason
        ET.SubElement(
            case, "failure", message=_clean(message), type=str(result.outcome)
        ).text = _clean(text)
    elif verdict == summary.UNEXPECTED_PASS:
        ET.SubElement(
            case,
            "failure",
            message=f"UNEXPECTED PASS: known bug did not reproduce: {result.details['known_bug']}",
            type="unexpected-pass",
        )
    elif verdict in (summary.KNOWN_ISSUE, summary.EXPECTED):
        entries = [c["known_issue"] for c in result.details.get("splat_classes", [])]
        why = "; ".join(f"{e['title']} [{e['upstream']}]" for e in entries if e)
        ET.SubElement(case, "skipped", message=_clean(f"{verdict}: {why or result.reason}"))
    elif verdict in (summary.SKIPPED, summary.INTERRUPTED):
        ET.SubElement(case, "skipped", message=_clean(f"{verdict}: {result.reason}"))


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters: console logs can."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 0x20 else "\ufffd" for c in text)
