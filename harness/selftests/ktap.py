"""KTAP / TAP output of a kselftest binary → its subtests (pure: unit-tested on real output).

kselftest.h prints "ok N description", "not ok N description", "ok N # SKIP reason" (also
"# XFAIL" / "# XPASS" directives) and "# ..." diagnostics; older selftests (6.1's gup_test)
print no TAP at all and say what they did with their exit status alone: KSFT_PASS 0,
KSFT_FAIL 1, KSFT_XFAIL 2, KSFT_XPASS 3, KSFT_SKIP 4.
"""

import re
from dataclasses import dataclass

RESULT = re.compile(r"^\s*(not ok|ok)\s+(\d+)\s*(?:-\s*)?(.*?)\s*$")
DIRECTIVE = re.compile(r"(?:^|\s)#\s*(SKIP|XFAIL|XPASS|TODO)\b\s*(.*)$", re.IGNORECASE)
PLAN = re.compile(r"^\s*1\.\.(\d+)")
EXIT_STATUS = {0: "pass", 1: "fail", 2: "xfail", 3: "xpass", 4: "skip"}


@dataclass(frozen=True)
class Subtest:
    number: int
    description: str
    status: str  # pass | fail | skip | xfail | xpass
    reason: str = ""  # the directive's text (why skipped)
    context: str = ""  # the diagnostic line just before it (cow: "[RUN] vmsplice() + ...")

    @property
    def label(self) -> str:
        """What a person needs to find it: cow's descriptions ("Leak from parent into child")
        say what went wrong, its "[RUN]" line before them which case it was."""
        return f"{self.context}: {self.description}" if self.context else self.description


@dataclass(frozen=True)
class Parsed:
    subtests: tuple[Subtest, ...]
    planned: int | None  # "1..N", None when the output has no plan
    diagnostics: tuple[str, ...]  # "# ..." lines, for the report


def parse(text: str) -> Parsed:
    subtests: list[Subtest] = []
    planned = None
    diagnostics: list[str] = []
    context = ""
    for line in text.splitlines():
        if m := PLAN.match(line):
            planned = int(m.group(1)) if planned is None else planned
            continue
        if m := RESULT.match(line):
            verdict, number, rest = m.groups()
            status = "pass" if verdict == "ok" else "fail"
            reason = ""
            if d := DIRECTIVE.search(rest):
                kind, reason = d.group(1).upper(), d.group(2).strip()
                rest = rest[: d.start()]
                status = {"SKIP": "skip", "XFAIL": "xfail", "XPASS": "xpass"}.get(kind, status)
            subtests.append(Subtest(int(number), rest.strip(), status, reason, context))
            context = ""
            continue
        if line.startswith("#"):
            diagnostics.append(line[1:].strip())
            context = line[1:].strip()
    return Parsed(tuple(subtests), planned, tuple(diagnostics))


def verdict(exit_code: int | None, parsed: Parsed) -> str:
    """One status for the whole run: its subtests' worst, else what its exit status says.

    A run that exits 0 but reported a failing subtest failed; one that planned N subtests and
    printed fewer (it crashed, or the guest killed it) failed; an unknown exit status failed."""
    if exit_code is None:
        return "fail"
    by_exit = EXIT_STATUS.get(exit_code, "fail")
    statuses = {s.status for s in parsed.subtests}
    if "fail" in statuses or "xpass" in statuses:
        return "fail"
    if parsed.planned is not None and len(parsed.subtests) < parsed.planned:
        return "fail"
    if by_exit == "fail" or by_exit == "xpass":
        return "fail"
    if parsed.subtests and statuses <= {"skip"}:
        return "skip"
    return by_exit if by_exit != "xfail" else "pass"


def last_message(text: str) -> str:
    """The last line that is not a TAP result, plan, version or totals: what a run that
    failed without a failing subtest said last ("Bail out! ...", a test's own message)."""
    for line in reversed(text.splitlines()):
        bare = line.strip().lstrip("#").strip()
        if not bare or RESULT.match(line) or PLAN.match(line):
            continue
        if bare.startswith(("TAP version", "KTAP version", "Totals:")):
            continue
        return bare.removeprefix("Bail out!").strip()
    return ""
