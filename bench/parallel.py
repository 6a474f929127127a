"""The default catalogue run with -j 1..4, as 2 shards merged, and as pytest items with
`pytest --scenarios -n 2` (pytest-xdist), in the same session.

    python bench/parallel.py [--jobs 1,2,3,4] [--kernel ARCH=PATH ...]

Prints each run's wall time and its ratio to -j 1, and whether every run's per-scenario
results (scenario, arch, outcome, verdict, splat titles) are identical to -j 1's.  Targets
(issue 16): -j 2 on 2 cores <= 0.6 x the -j 1 wall time; past the core count the curve should
flatten, not degrade; results identical.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def memharness(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=7200
    )
    return time.monotonic() - start, done


def identity(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (r["scenario"], r["arch"], r["outcome"], r["verdict"], tuple(r["splats"]))
        for r in data["results"]
    ]


# How `run`'s verdicts appear as pytest outcomes in JUnit (xfail is written as skipped).
PYTEST_OUTCOME = {
    "passed": "passed",
    "known bug (expected)": "skipped",
    "known issue": "skipped",
    "skipped": "skipped",
    "failed": "failure",
    "UNEXPECTED PASS": "failure",
}


def junit_outcomes(path: Path) -> dict[tuple[str, str], str]:
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name, _, arch = str(case.get("name")).rstrip("]").partition("[")
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out[(name, arch)] = kinds[0] if kinds else "passed"
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", default="1,2,3,4")
    ap.add_argument("--kernel", action="append", default=[])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-parallel-"))
    kernels = [x for k in args.kernel for x in ("--kernel", k)]
    common = ["run", *kernels, "--artifacts", str(work / "runs"), "-q"]
    results: dict[str, tuple[float, dict[str, Any]]] = {}
    for jobs in args.jobs.split(","):
        out = work / f"j{jobs}.json"
        seconds, done = memharness(*common, "-j", jobs, "--json", str(out))
        results[f"-j {jobs}"] = (seconds, json.loads(out.read_text()))
        print(f"-j {jobs}: {seconds:.1f} s, exit {done.returncode}", flush=True)
    # Two shards, one after the other (as two CI machines would run them), then merged.
    shard_seconds = []
    for k in (1, 2):
        seconds, _ = memharness(
            *common, "-j", "2", "--shard", f"{k}/2", "--json", str(work / f"s{k}.json")
        )
        shard_seconds.append(seconds)
    merged = work / "merged.json"
    memharness("merge", str(work / "s1.json"), str(work / "s2.json"), "--json", str(merged))
    results["2 shards merged"] = (max(shard_seconds), json.loads(merged.read_text()))
    # The same catalogue as pytest items on two xdist workers, from an empty directory.
    empty = work / "pytest"
    empty.mkdir()
    junit = work / "pytest.xml"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--scenarios",
         "-n", "2", "--arch", "x86_64,arm64", *kernels, "--artifacts", str(work / "runs"),
         f"--junitxml={junit}"],
        cwd=empty, capture_output=True, text=True, timeout=7200,
    )  # fmt: skip
    pytest_seconds = time.monotonic() - start
    base_seconds, base = results["-j 1"] if "-j 1" in results else next(iter(results.values()))
    expected = {(r["scenario"], r["arch"]): PYTEST_OUTCOME[r["verdict"]] for r in base["results"]}
    print(
        f"pytest --scenarios -n 2: {pytest_seconds:.1f} s ({pytest_seconds / base_seconds:.2f}"
        f" of -j 1), outcomes as the run's verdicts: {junit_outcomes(junit) == expected}"
    )
    print(f"{'run':<16} {'wall':>7} {'ratio':>6}  identical results")
    for name, (seconds, data) in results.items():
        same = identity(data) == identity(base)
        print(f"{name:<16} {seconds:>6.1f}s {seconds / base_seconds:>6.2f}  {same}")
    print(f"(shards: {shard_seconds[0]:.1f} s and {shard_seconds[1]:.1f} s; the slower counts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
