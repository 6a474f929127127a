"""Soak: many boots and hotplug scenarios back to back in one memharness process, counting what
leaks.  This is what the pytest plugin's long sessions and nightly CI do to the harness.

    python bench/soak.py [--boots 200] [--scenarios 20] [--arch x86_64] [--kernel PATH]

Reports: failures (a boot that did not pass, a scenario whose verdict is "failed"), leaked
processes (children still registered, QEMUs still running), leaked temp entries (socket
directories of this process, new entries in the temp directory), open-fd growth of this process
between the first and the last run, and per-boot time min / median / max.  Targets: 0, 0, 0, 0.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import proc  # noqa: E402
from harness.arch import get_arch  # noqa: E402
from harness.catalogue.model import load_catalogue  # noqa: E402
from harness.kernel.resolve import spec_for_arch  # noqa: E402
from harness.report.summary import FAILED, verdict  # noqa: E402
from harness.run import check_scenarios, run_scenario  # noqa: E402
from harness.session import prepare  # noqa: E402
from harness.tempdirs import PREFIX  # noqa: E402
from harness.vm.machine import VM, VMOptions  # noqa: E402


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def qemus(marker: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"qemu-system.*{marker}"], capture_output=True, text=True)
    return len(out.stdout.split())


def temp_entries() -> set[str]:
    """memharness's own entries in the temp directory (other processes' are not ours)."""
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(PREFIX)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=200)
    ap.add_argument("--scenarios", type=int, default=20)
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--kernel", action="append", default=[])
    args = ap.parse_args()
    arch = get_arch(args.arch)
    spec = spec_for_arch(args.kernel, arch)
    kernel, image = prepare(arch, spec)
    work = Path(tempfile.mkdtemp(prefix="mh-soak-"))
    me = os.getpid()
    before_tmp = temp_entries()
    failures: list[str] = []
    leaked_procs = 0
    boot_times: list[float] = []
    fds: list[int] = []

    for i in range(args.boots):
        start = time.monotonic()
        with VM(kernel, image, work / f"boot{i}", VMOptions()) as vm:
            ok = vm.ready and vm.run("true").exit_code == 0
        boot_times.append(time.monotonic() - start)
        if not ok:
            failures.append(f"boot {i}: {vm.facts()}")
        leaked_procs += len(proc.live_children()) + qemus(str(work))
        fds.append(open_fds())
        if (i + 1) % 25 == 0:
            print(f"  {i + 1} boots, median {statistics.median(boot_times):.2f} s", flush=True)

    hotplug = [s for s in load_catalogue() if s.arch == arch.name and s.hotplug]
    check_scenarios(hotplug, {arch.name: kernel})
    scenario_times: list[float] = []
    for i in range(args.scenarios):
        scenario = hotplug[i % len(hotplug)] if hotplug else None
        if scenario is None:
            break
        result = run_scenario(scenario, kernel, image, work / "scenarios", kernel_spec=spec)
        scenario_times.append(result.seconds)
        if verdict(result) == FAILED:
            failures.append(f"{scenario.name}: {result.outcome}: {result.reason}")
        leaked_procs += len(proc.live_children()) + qemus(str(work))
        fds.append(open_fds())
        print(f"  scenario {i + 1}: {scenario.name} {result.outcome} {result.seconds:.1f} s")

    ours = [p for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}{me}-*")]
    new_tmp = sorted(temp_entries() - before_tmp - {work.name})
    growth = fds[-1] - fds[0] if fds else 0
    print(
        f"\nsoak on {arch.name} ({kernel.release}): {args.boots} boots, "
        f"{len(scenario_times)} hotplug scenarios"
    )
    print(f"  failures:               {len(failures)}")
    for f in failures[:10]:
        print(f"    {f}")
    print(f"  leaked processes:       {leaked_procs}")
    print(f"  leaked temp entries:    {len(ours) + len(new_tmp)} {[*map(str, ours), *new_tmp][:5]}")
    print(
        f"  open-fd growth:         {growth} (first {fds[0] if fds else 0}, last "
        f"{fds[-1] if fds else 0}, max {max(fds) if fds else 0})"
    )
    if boot_times:
        print(
            f"  per boot (s):           min {min(boot_times):.2f}  median "
            f"{statistics.median(boot_times):.2f}  max {max(boot_times):.2f}"
        )
    if scenario_times:
        print(
            f"  per scenario (s):       min {min(scenario_times):.1f}  median "
            f"{statistics.median(scenario_times):.1f}  max {max(scenario_times):.1f}"
        )
    bad = failures or leaked_procs or ours or new_tmp or growth > 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
