"""The README's scenario x kernel x arch table, from `memharness run --json` reports.

    python scripts/kernel_matrix.py LABEL=REPORT.json [LABEL=REPORT.json ...]

Each report is one run (any arches); LABEL names its kernel column ("Debian 6.12", "built
6.1").  A cell says what that scenario did there: pass, known bug (the scenario's own), known
issue (a registered title), skipped (why, shortened), or the outcome and title of a failure.
Generated from runs, never typed: re-run it after the runs when kernels move.
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

WHY_WIDTH = 48


def cell(result: dict[str, Any]) -> str:
    outcome = result["outcome"]
    if outcome == "pass":
        skipped = result.get("skipped") or []
        return f"pass ({len(skipped)} step(s) skipped)" if skipped else "pass"
    if result.get("known_bug_reproduced"):
        return "known bug"
    if outcome == "skipped":
        why = result.get("reason", "")
        why = why.split(": build one with")[0]  # the advice is the same everywhere
        why = re.sub(r"^kernel \S+ lacks ", "lacks ", why)  # the column names the kernel
        return "skipped: " + (why[: WHY_WIDTH - 1] + "…" if len(why) > WHY_WIDTH else why)
    titles = set(result.get("splats") or [])
    if titles and titles <= set(result.get("known_issues") or []):
        return "known issue"
    return f"**{outcome}**: {result.get('reason', '')[:WHY_WIDTH]}"


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    columns: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    for arg in argv:
        label, _, path = arg.partition("=")
        report = json.loads(Path(path).read_text())
        columns.append(label)
        for result in report["results"]:
            rows.setdefault(f"{result['scenario']} | {result['arch']}", {})[label] = cell(result)
    print("| scenario | arch | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for scenario, cells in rows.items():
        print(f"| {scenario} | " + " | ".join(cells.get(c, "–") for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
