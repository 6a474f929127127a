"""The Debian guest image against the initramfs and bare QEMU, same run, same machine load.

    python bench/debian_image.py [--arch x86_64,arm64] [--rounds 3] [--commands 100]

Per arch:
- image build: the whole rootfs build (unpack, configure, mke2fs, qcow2) with the .debs
  already downloaded (a scratch cache borrows the real cache's apt state and .debs, so the
  figure is the build, not the mirror); then a cached preparation;
- boot to SSH-ready (Debian image: QEMU start to the first login) against boot to the first
  command on the initramfs through memharness and through bare QEMU with the initramfs argv
  (bench/boot.py's bare loop); rounds alternate; target: Debian <= 3x the initramfs;
- command round trip: median `true` (builtin) and `/bin/true` over SSH (target <= 20 ms) and
  over the agent.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from boot import bare_round  # noqa: E402  (bench/boot.py's bare QEMU loop)

from harness.arch import ArchProfile, parse_arches  # noqa: E402
from harness.image.rootfs import build_rootfs  # noqa: E402
from harness.paths import cache_root  # noqa: E402
from harness.session import prepare  # noqa: E402
from harness.vm.machine import VM, VMOptions  # noqa: E402


def image_build_seconds(arch: ArchProfile, scratch: Path) -> tuple[float, float]:
    """(a fresh build with the .debs at hand, a cached one)."""
    real = cache_root()
    build_rootfs(arch)  # the real cache has it (and its lists and .debs) from now on
    scratch.mkdir(parents=True)
    for shared in ("apt", "debs", "helpers"):
        (scratch / shared).symlink_to(real / shared)
    old = os.environ.get("MEMHARNESS_CACHE")
    os.environ["MEMHARNESS_CACHE"] = str(scratch)
    try:
        t = time.monotonic()
        build_rootfs(arch)
        fresh = time.monotonic() - t
        t = time.monotonic()
        build_rootfs(arch)
        cached = time.monotonic() - t
    finally:
        if old is None:
            del os.environ["MEMHARNESS_CACHE"]
        else:
            os.environ["MEMHARNESS_CACHE"] = old
    return fresh, cached


def debian_round(arch: ArchProfile, workdir: Path) -> float:
    kernel, image = prepare(arch, None, None, "debian")
    start = time.monotonic()  # as initramfs_round: the overlay and the port lease count too
    with VM(kernel, image, workdir, VMOptions()) as vm:
        if not vm.ready or vm.ssh_run("true").exit_code != 0:
            raise SystemExit(f"Debian image boot failed: {vm.facts()}")
        return time.monotonic() - start


def initramfs_round(arch: ArchProfile, workdir: Path) -> tuple[float, list[str]]:
    kernel, image = prepare(arch, None)
    start = time.monotonic()
    with VM(kernel, image, workdir, VMOptions()) as vm:
        if not vm.ready or vm.run("true").exit_code != 0:
            raise SystemExit(f"initramfs boot failed: {vm.facts()}")
        return time.monotonic() - start, list(vm.argv)


def round_trips(arch: ArchProfile, workdir: Path, count: int) -> dict[str, float]:
    """Median seconds of a command over SSH and over the agent, in one Debian-image guest:
    the shell builtin `true` (the channel's own cost) and `/bin/true` (plus a fork and exec
    in the guest)."""
    kernel, image = prepare(arch, None, None, "debian")
    samples: dict[str, list[float]] = {}
    with VM(kernel, image, workdir, VMOptions()) as vm:
        vm.ssh_run("true")
        for _ in range(count):
            for command in ("true", "/bin/true"):
                for channel, run in (("ssh", vm.ssh_run), ("agent", vm.run)):
                    t = time.perf_counter()
                    run(command)
                    samples.setdefault(f"{channel} {command}", []).append(time.perf_counter() - t)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64,arm64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commands", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-image-"))
    print(
        f"{'arch':<8} {'build':>7} {'cached':>7} {'debian→ssh':>11} {'initramfs':>10} "
        f"{'bare QEMU':>10} {'deb/init':>9} {'deb/bare':>9}   round trips (ms)"
    )
    for arch in parse_arches(args.arch):
        fresh, cached = image_build_seconds(arch, work / f"cache-{arch.name}")
        deb, init, bare = [], [], []
        for i in range(args.rounds):
            deb.append(debian_round(arch, work / f"{arch.name}-deb-{i}"))
            t, argv = initramfs_round(arch, work / f"{arch.name}-init-{i}")
            init.append(t)
            bare.append(bare_round(argv))
        rtt = round_trips(arch, work / f"{arch.name}-rtt", args.commands)
        d, n, b = (statistics.median(x) for x in (deb, init, bare))
        print(
            f"{arch.name:<8} {fresh:>6.1f}s {cached * 1000:>5.0f}ms {d:>10.2f}s {n:>9.2f}s "
            f"{b:>9.2f}s {d / n:>9.2f} {d / b:>9.2f}   "
            + ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in rtt.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
