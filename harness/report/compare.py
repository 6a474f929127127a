"""Comparing two runs (`memharness compare OLD.json NEW.json`): what is new since last night.

Per scenario and arch, a failing result is identified by its new splat titles (or, without a
splat, by its outcome and reason).  Categories:

- new: failing in NEW with an identity OLD did not have for that scenario (or OLD passed);
- fixed: failing in OLD, passing in NEW;
- still failing: the same identity in both;
- known: known issues and declared known bugs met in NEW (they never fail a run);
- flaky: a hang or an infrastructure error in either run, which says more about the machine
  than about the kernel; such a result is listed, never counted as new.

Exit 1 only when something is new; files of different catalogues (or not memharness run
JSON at all) are bad input: one line, exit 2.
"""

import json
from pathlib import Path
from typing import Any

from harness.datafile import read_text
from harness.errors import UserError

FAILING = ("failed", "UNEXPECTED PASS")
ENVIRONMENT = ("hang", "infra-error")


def load_run(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path, "run JSON"))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}): pass "
            "`memharness run --json` files"
        ) from None
    if not isinstance(data, dict) or "results" not in data or "catalogue" not in data:
        raise UserError(f"{path} is not a `memharness run --json` file (no results/catalogue)")
    return data


def _identity(row: dict[str, Any]) -> tuple[str, ...]:
    if row.get("new_splats"):
        return tuple(sorted(row["new_splats"]))
    return (f"{row['outcome']}: {row['reason']}",)


def compare(
    old: dict[str, Any], new: dict[str, Any], old_name: str = "OLD", new_name: str = "NEW"
) -> dict[str, list[dict[str, Any]]]:
    """The categories above, each a list of {scenario, arch, what}."""
    a, b = old["catalogue"].get("sha256"), new["catalogue"].get("sha256")
    if a != b:
        raise UserError(
            f"{old_name} and {new_name} come from different catalogues ({str(a)[:12]} vs "
            f"{str(b)[:12]}): compare runs of the same catalogue"
        )
    before = {(r["scenario"], r["arch"]): r for r in old["results"]}
    out: dict[str, list[dict[str, Any]]] = {
        "new": [],
        "fixed": [],
        "still_failing": [],
        "known": [],
        "flaky": [],
    }
    for row in new["results"]:
        key = (row["scenario"], row["arch"])
        prev = before.get(key)
        entry = {"scenario": row["scenario"], "arch": row["arch"]}
        known = list(row.get("known_issues", []))
        if row["verdict"] == "known bug (expected)" and row.get("known_bug"):
            known.append(row["known_bug"])
        out["known"] += [{**entry, "what": title} for title in dict.fromkeys(known)]
        if row["outcome"] in ENVIRONMENT or (prev and prev["outcome"] in ENVIRONMENT):
            if row["verdict"] in FAILING or (prev and prev["verdict"] in FAILING):
                out["flaky"].append({**entry, "what": f"{row['outcome']}: {row['reason']}"})
            continue
        failing = row["verdict"] in FAILING
        was_failing = bool(prev and prev["verdict"] in FAILING)
        if failing and was_failing and prev and _identity(prev) == _identity(row):
            out["still_failing"].append({**entry, "what": " | ".join(_identity(row))})
        elif failing:
            out["new"].append({**entry, "what": " | ".join(_identity(row))})
        elif was_failing and row["verdict"] != "skipped" and prev:
            out["fixed"].append({**entry, "what": " | ".join(_identity(prev))})
    return out


def render(result: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for category in ("new", "fixed", "still_failing", "known", "flaky"):
        items = result[category]
        lines.append(f"{category.replace('_', ' ').upper()} ({len(items)})")
        lines += [f"  {i['scenario']} {i['arch']}: {i['what']}" for i in items]
    return "\n".join(lines)
