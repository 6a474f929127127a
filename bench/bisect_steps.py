"""`memharness bisect` against what it is made of, measured the same way in the same run.

    python bench/bisect_steps.py --src TREE --good REV --bad REV --scenario S [--arch A]

(Not bench/bisect.py: a script of that name would shadow the standard library's bisect.)

1. The bisect itself (wall time, and each step's seconds from its --json).
2. The same commits replayed bare, in the same order, in the same worktree and build
   directory: `git checkout`, the same `make` command line, then one `memharness run` of the
   scenario per run the step made (on the build directory as make left it; its installed
   modules are the bisect's, which a one-file mm/ change does not alter).  Per step, the
   ratio bisect / (make + runs) is the bisect's own overhead: git, the configuration check,
   the manifest, module install, the guest image.

Without --src it makes the 7-commit planted tree of the integration tests (Debian's source,
harmless mm/ commits around a planted regression) in a temporary directory.  Targets
(issue 12): per-step ratio <= 1.15; the whole bisect of the 7-commit tree under 2 minutes with a
warm ccache on 2 cores.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.arch import get_arch  # noqa: E402
from harness.kernel.build import ccache_env, check_host  # noqa: E402


def memharness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=7200
    )


def timed(argv: list[str], **kw: object) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=7200, **kw)  # type: ignore[call-overload]
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path)
    ap.add_argument("--good")
    ap.add_argument("--bad", default="HEAD")
    ap.add_argument("--scenario", default="poison-then-teardown")
    ap.add_argument("--arch", default="x86_64")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-bisect-"))
    if args.src is None:
        from tests.integration.kernel_tree import make_planted_tree

        tree = make_planted_tree(work)
        args.src, args.good = tree.path, tree.base
    report = work / "bisect.json"
    start = time.monotonic()
    done = memharness(
        "bisect", "--src", str(args.src), "--good", args.good, "--bad", args.bad,
        "--arch", args.arch, "--scenario", args.scenario,
        "--artifacts", str(work / "runs"), "--json", str(report),
    )  # fmt: skip
    wall = time.monotonic() - start
    if done.returncode not in (0, 1):
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    result = json.loads(report.read_text())
    print(f"bisect: exit {done.returncode}, {wall:.0f} s, culprit {result['culprit']}")
    # Replay bare, in the bisect's own worktree and build directory, in the same order.
    arch = get_arch(args.arch)
    variables = check_host(arch)
    ratios = []
    print(f"{'step':<14} {'commit':<12} {'bisect':>7} {'make':>6} {'runs':>6} {'ratio':>6}")
    for step in result["steps"]:
        build = Path(step["kernel"])
        worktree = build.parent
        subprocess.run(
            ["git", "-C", str(worktree), "checkout", "--quiet", "--detach", "--force",
             step["commit"]["hash"]],
            check=True, timeout=900,
        )  # fmt: skip
        target = Path(arch.kernel_image).name
        make = timed(
            ["make", "-C", str(worktree), f"O={build}", *variables, f"-j{os.cpu_count() or 1}",
             target, "vmlinux", "modules"],
            env=ccache_env(),
        )  # fmt: skip
        runs = sum(_run_seconds(args, build, work / f"bare-{n}") for n in range(step["runs"]))
        bare = make + runs
        ratio = step["seconds"] / bare
        ratios.append(ratio)
        print(
            f"{step['role']:<14} {step['commit']['hash'][:12]:<12} {step['seconds']:>6.1f}s "
            f"{make:>5.1f}s {runs:>5.1f}s {ratio:>6.2f}"
        )
    print(f"per-step ratio: median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
    return 0


def _run_seconds(args: argparse.Namespace, build: Path, artifacts: Path) -> float:
    """One `memharness run` of the scenario on the build (its exit status is the bug's)."""
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "harness", "run", "--arch", args.arch, "--scenario",
         args.scenario, "--kernel", f"{args.arch}={build}", "--artifacts", str(artifacts)],
        capture_output=True, timeout=3600,
    )  # fmt: skip
    return time.monotonic() - start


if __name__ == "__main__":
    sys.exit(main())
