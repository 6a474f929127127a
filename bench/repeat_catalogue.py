"""Repeat the full catalogue on the same kernels and count what is new: a nightly CI is only
as good as its false alarms.

    python bench/repeat_catalogue.py [--runs 5] [--kernel x86_64=BUILD --kernel arm64=BUILD]

Without --kernel it uses memharness's default debug builds (building them if needed).  Each
run is `memharness run --json`; the report gives per run the exit code, the new titles, the
known issues met and the walks cut short, then the titles (new or known) that appeared in
some runs but not all (flaky).  Target: 0 new titles in every run.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.arch import ARCHES  # noqa: E402
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel  # noqa: E402
from harness.kernel.source import debian_source  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kernel", action="append", default=[])
    args = ap.parse_args()
    kernels = args.kernel or [
        f"{a}={build_kernel(p, debian_source(), list(DEFAULT_FRAGMENTS))}"
        for a, p in ARCHES.items()
    ]
    work = Path(tempfile.mkdtemp(prefix="mh-repeat-"))
    seen: Counter[str] = Counter()
    new_total = 0
    for i in range(1, args.runs + 1):
        report = work / f"run{i}.json"
        start = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "run",
                "-q",
                "--artifacts",
                str(work / f"art{i}"),
                "--json",
                str(report),
                *(x for k in kernels for x in ("--kernel", k)),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        data = json.loads(report.read_text())
        titles = {t for r in data["results"] for t in r["splats"]}
        seen.update(titles)
        new_total += len(data["new_splats"])
        print(
            f"run {i}: exit {done.returncode} in {time.monotonic() - start:.0f} s, "
            f"new {data['new_splats']}, known {[k['title'] for k in data['known_issues']]}, "
            f"walks ran {data['walks']['ran']} cut short {data['walks']['cut_short']}",
            flush=True,
        )
    flaky = sorted(t for t, n in seen.items() if n < args.runs)
    print(
        f"\n{args.runs} runs: new titles {new_total}; flaky titles (not in every run): "
        f"{flaky or 'none'}"
    )
    return 1 if new_total else 0


if __name__ == "__main__":
    sys.exit(main())
