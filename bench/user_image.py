"""A user's own image (``--image PATH``, the serial console driven by pexpect) against the
initramfs and bare QEMU, same run, same machine load.

    python bench/user_image.py [--arch x86_64,arm64] [--rounds 3] [--commands 50]

Per arch, with the tests' busybox image (tests/integration/user_image.py: getty, a password):
- boot to console-ready (QEMU start, login, command mode, the first command back) against
  boot to the first command on the initramfs through memharness and through bare QEMU with
  the initramfs argv (bench/boot.py's bare loop); rounds alternate;
- command round trip over the console: median of the builtin `true` and of `/bin/true`
  against the agent's in an initramfs guest.
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
from debian_image import initramfs_round  # noqa: E402

from harness.arch import ArchProfile, parse_arches  # noqa: E402
from harness.image.user import PASSWORD_ENV  # noqa: E402
from harness.session import prepare  # noqa: E402
from harness.vm.machine import VM, VMOptions  # noqa: E402
from tests.integration.user_image import PASSWORD, build_user_image  # noqa: E402


def user_round(arch: ArchProfile, image_path: Path, workdir: Path) -> float:
    kernel, image = prepare(arch, None, None, str(image_path))
    start = time.monotonic()
    with VM(kernel, image, workdir, VMOptions()) as vm:
        if not vm.ready or vm.run("true").exit_code != 0:
            raise SystemExit(f"user image boot failed: {vm.facts()}")
        return time.monotonic() - start


def round_trips(kind: str, arch: ArchProfile, workdir: Path, count: int) -> dict[str, float]:
    kernel, image = prepare(arch, None, None, kind)
    samples: dict[str, list[float]] = {}
    with VM(kernel, image, workdir, VMOptions()) as vm:
        vm.run("true")
        for _ in range(count):
            for command in ("true", "/bin/true"):
                t = time.perf_counter()
                if vm.run(command).exit_code != 0:
                    raise SystemExit(f"{command} failed on {kind}: {vm.facts()}")
                samples.setdefault(command, []).append(time.perf_counter() - t)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64,arm64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--commands", type=int, default=50)
    args = ap.parse_args()
    os.environ[PASSWORD_ENV] = PASSWORD
    work = Path(tempfile.mkdtemp(prefix="mh-bench-user-"))
    print(
        f"{'arch':<8} {'user→ready':>11} {'initramfs':>10} {'bare QEMU':>10} {'user/init':>10} "
        f"{'user/bare':>10}   round trips (ms): console, agent"
    )
    for arch in parse_arches(args.arch):
        image_path = build_user_image(arch).raw
        user, init, bare = [], [], []
        for i in range(args.rounds):
            user.append(user_round(arch, image_path, work / f"{arch.name}-user-{i}"))
            t, argv = initramfs_round(arch, work / f"{arch.name}-init-{i}")
            init.append(t)
            bare.append(bare_round(argv))
        console = round_trips(str(image_path), arch, work / f"{arch.name}-rtt-user", args.commands)
        agent = round_trips("initramfs", arch, work / f"{arch.name}-rtt-init", args.commands)
        u, n, b = (statistics.median(x) for x in (user, init, bare))
        print(
            f"{arch.name:<8} {u:>10.2f}s {n:>9.2f}s {b:>9.2f}s {u / n:>10.2f} {u / b:>10.2f}   "
            + ", ".join(
                f"`{c}` {console[c] * 1000:.1f} / {agent[c] * 1000:.1f}"
                for c in ("true", "/bin/true")
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
