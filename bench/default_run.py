"""The default `memharness run` (what `make run` runs) against bare QEMU boots, same session.

    python bench/default_run.py [--rounds 3] [--runs 1]

The 3-minute target for the default run is a wall time, and this project's machines run the
same code 1.3-1.9x apart.  A figure that can be compared across machines needs a yardstick
measured beside it: bare QEMU booting the same Debian kernel and image with the same argv to
its first command (bench/boot.py's bare loop), once per arch before and once after each run,
so both see the same machine.  Prints each run's wall time, its exit code, the sum of its
scenarios' seconds, the median bare boot per arch, and the run as a multiple of the mean bare
boot ("boots"); the caches are warmed first (a cold run would measure downloads and builds).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from boot import bare_round, memharness_round  # noqa: E402  (bench/boot.py's loops)

from harness.arch import parse_arches  # noqa: E402

TARGET_SECONDS = 180.0  # issue 15: the default run from a warm cache


def bare_boots(arches: list[str], rounds: int, work: Path) -> dict[str, list[float]]:
    """Bare QEMU boot-to-first-command times per arch (argv taken from a memharness boot)."""
    times: dict[str, list[float]] = {}
    for arch in arches:
        _, argv = memharness_round(arch, work / f"{arch}-argv")
        times[arch] = [bare_round(argv) for _ in range(rounds)]
    return times


def default_run(work: Path) -> tuple[float, int, float, int]:
    """One `memharness run` as `make run` calls it (both reports written): wall s, exit code,
    summed scenario s and the number of scenario results."""
    report = work / "report.json"
    html = ["--html", str(work / "report.html")]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", *html, "--json", str(report), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=3600,
        check=False,
    )
    wall = time.monotonic() - start
    if not report.exists():
        raise SystemExit(f"memharness run wrote no report (exit {done.returncode}): {done.stderr}")
    results = json.loads(report.read_text())["results"]
    return wall, done.returncode, sum(r.get("seconds") or 0.0 for r in results), len(results)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="bare boots per arch, before and after")
    ap.add_argument("--runs", type=int, default=1, help="default runs to time")
    args = ap.parse_args()
    arches = [a.name for a in parse_arches("x86_64,arm64")]
    with tempfile.TemporaryDirectory(prefix="mh-bench-run-") as tmp:
        measure(arches, args.rounds, args.runs, Path(tmp))
    return 0


def measure(arches: list[str], rounds: int, runs: int, work: Path) -> None:
    """Prints the table: one row per default run, with the bare boots beside it."""
    bare_boots(arches, 1, work / "warm")  # kernels and images into the cache, untimed
    print(
        f"{'run':<4} {'wall':>8} {'exit':>5} {'results':>8} {'scen. sum':>10} "
        + " ".join(f"{'bare ' + a:>13}" for a in arches)
        + f" {'boots':>6} {'target':>8}"
    )
    for i in range(runs):
        before = bare_boots(arches, rounds, work / f"before-{i}")
        wall, code, summed, count = default_run(work / f"run-{i}")
        after = bare_boots(arches, rounds, work / f"after-{i}")
        medians = {a: statistics.median(before[a] + after[a]) for a in arches}
        boot = statistics.mean(medians.values())
        print(
            f"{i:<4} {wall:>7.1f}s {code:>5} {count:>8} {summed:>9.1f}s "
            + " ".join(f"{medians[a]:>12.2f}s" for a in arches)
            + f" {wall / boot:>6.1f} {'met' if wall <= TARGET_SECONDS else 'missed':>8}"
        )


if __name__ == "__main__":
    sys.exit(main())
