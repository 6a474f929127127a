"""`memharness merge SHARD.json...`: the shards of one run put back together (pure).

Each shard's JSON names its place (``shard``: index, count and the whole selection in
catalogue order).  The merge refuses shards of different catalogues or shard counts, a shard
given twice, and reports a missing shard loudly (its scenarios are listed as not run, and the
exit code cannot be 0).  The merged JSON has the schema of `memharness run --json`, so
`memharness compare` takes it as it takes a whole run; an entry of the registry is possibly
fixed when no shard met it.
"""

from typing import Any

from harness.errors import UserError
from harness.report.summary import (
    EXPECTED,
    FAILED,
    KNOWN_ISSUE,
    PASSED,
    UNEXPECTED_PASS,
    walk_totals_of_rows,
)


def merge(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """``runs``: (file name, loaded JSON) of each shard."""
    if not runs:
        raise UserError("nothing to merge: pass the shards' `run --json` files")
    shards = {}
    for name, data in runs:
        shard = data.get("shard")
        if not shard:
            raise UserError(f"{name} is not a shard (no 'shard' field): run with --shard K/N")
        if shard["index"] in shards:
            raise UserError(f"{name}: shard {shard['index']}/{shard['count']} is given twice")
        shards[shard["index"]] = (name, data)
    first_name, first = next(iter(shards.values()))
    for name, data in shards.values():
        if data["catalogue"].get("sha256") != first["catalogue"].get("sha256"):
            raise UserError(
                f"{name} and {first_name} come from different catalogues: merge shards of one run"
            )
        if (data["shard"]["count"], data["shard"]["scenarios"]) != (
            first["shard"]["count"],
            first["shard"]["scenarios"],
        ):
            raise UserError(
                f"{name} and {first_name} split different selections: merge shards of one run"
            )
    order = first["shard"]["scenarios"]
    count = first["shard"]["count"]
    position = {s: i for i, s in enumerate(order)}
    rows = sorted(
        (r for _, d in shards.values() for r in d["results"]),
        key=lambda r: position.get(f"{r['scenario']} ({r['arch']})", len(order)),
    )
    ran = {f"{r['scenario']} ({r['arch']})" for r in rows}
    missing = sorted(set(range(1, count + 1)) - set(shards))
    not_run = [s for _, d in shards.values() for s in d.get("not_run", [])]
    not_run += [s for s in order if s not in ran and s not in not_run]
    interrupted = next((d["interrupted"] for _, d in shards.values() if d["interrupted"]), None)
    known: dict[str, dict[str, Any]] = {}
    for _, d in shards.values():
        for entry in d.get("known_issues", []):
            slot = known.setdefault(entry["title"], {**entry, "scenarios": []})
            slot["scenarios"] += entry["scenarios"]
    possibly_fixed: list[dict[str, Any]] = []
    if first["shard"].get("full") and not missing and not interrupted:
        unmet = [
            {(p["title"], p["arch"]) for p in d.get("possibly_fixed_candidates", [])}
            for _, d in shards.values()
        ]
        common = set.intersection(*unmet)
        possibly_fixed = [
            p
            for p in first.get("possibly_fixed_candidates", [])
            if (p["title"], p["arch"]) in common
        ]
    verdicts = [r["verdict"] for r in rows]
    counting = [v for v in verdicts if v not in ("skipped", "interrupted")]
    if interrupted:
        code = max(d["exit_code"] for _, d in shards.values())
    elif any(v in (FAILED, UNEXPECTED_PASS) for v in verdicts):
        code = 1
    elif missing or not counting:
        code = 125
    else:
        code = 0
    return {
        "passed": sum(r["outcome"] == "pass" for r in rows),
        "total": len(rows),
        "known_bugs_reproduced": verdicts.count(EXPECTED),
        "known_issue_scenarios": verdicts.count(KNOWN_ISSUE),
        "unexpected_passes": verdicts.count(UNEXPECTED_PASS),
        "new_splats": sorted({t for r in rows for t in r["new_splats"]}),
        "exit_code": code,
        "interrupted": interrupted,
        "not_run": not_run,
        "missing_shards": [f"{k}/{count}" for k in missing],
        "catalogue": {**first["catalogue"], "scenarios": order},
        "kernels": {a: k for _, d in shards.values() for a, k in d["kernels"].items()},
        "walks": walk_totals_of_rows(rows),
        "known_issues": list(known.values()),
        "possibly_fixed": possibly_fixed,
        "merged": sorted(name for name, _ in shards.values()),
        "results": rows,
    }


def render(merged: dict[str, Any]) -> str:
    """A short table of the merged run."""
    lines = [f"{'scenario':<32} {'arch':<7} {'verdict':<22} reason"]
    for r in merged["results"]:
        reason = "" if r["verdict"] == PASSED else r["reason"]
        lines.append(f"{r['scenario']:<32} {r['arch']:<7} {r['verdict']:<22} {reason}")
    if merged["missing_shards"]:
        lines.append(
            f"MISSING SHARDS: {', '.join(merged['missing_shards'])} (not run: "
            f"{', '.join(merged['not_run'])})"
        )
    lines.append(
        f"{merged['passed']} of {merged['total']} passed; new: "
        f"{', '.join(merged['new_splats']) or 'none'}; exit {merged['exit_code']}"
    )
    return "\n".join(lines)
