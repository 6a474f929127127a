"""Hotplug step times through memharness vs bare QMP, in the same guest, same run.

    python bench/hotplug.py [--arch x86_64,arm64] [--rounds 5]

x86_64 (Debian kernel): a 128 MiB pc-dimm, plug + online and offline + unplug.  Both arches:
a virtio-mem device, +128 MiB and -128 MiB.  memharness runs planned HotplugRun steps (QMP via
qemu.qmp, event waits, the checks of QEMU's and the guest's view after each step); the bare
path sends the same commands as raw JSON on a second QMP monitor of the same QEMU and writes
the same sysfs files through the same guest agent, checking nothing.  Rounds alternate; the
report gives medians, the ratio memharness / bare, and the issue's target (<= 5 s per 128 MiB
block for plug + online and for offline + unplug under TCG).
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.arch import ArchProfile, parse_arches  # noqa: E402
from harness.catalogue.model import Scenario  # noqa: E402
from harness.hotplug.plan import plan_steps  # noqa: E402
from harness.hotplug.runner import HotplugRun  # noqa: E402
from harness.hotplug.steps import Action  # noqa: E402
from harness.layout.model import Layout  # noqa: E402
from harness.layout.planner import plan  # noqa: E402
from harness.session import prepare  # noqa: E402
from harness.vm.machine import VM, VMOptions  # noqa: E402

MiB = 1 << 20
BLOCK = 128 * MiB
TARGET = 5.0


class RawQMP:
    """Bare QMP: JSON lines on a socket, events read until the one wanted arrives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.sock.settimeout(60)
        self.sent = 0.0
        self.pending: list[dict[str, Any]] = []
        self.file = self.sock.makefile("rw")
        self.file.readline()  # greeting
        self.execute("qmp_capabilities")

    def execute(self, name: str, **arguments: Any) -> Any:
        self.sent = time.time()
        self.file.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply or "error" in reply:
                return reply
            self.pending.append(reply)  # an event that came before the reply

    def wait(self, event: str, **match: Any) -> None:
        """The first ``event`` matching, sent after the last command (memharness's own steps
        leave events on this monitor too)."""
        while True:
            msg = self.pending.pop(0) if self.pending else json.loads(self.file.readline())
            data, stamp = msg.get("data", {}), msg.get("timestamp", {})
            when = stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6
            if (
                msg.get("event") == event
                and when >= self.sent - 0.001
                and all(data.get(k) == v for k, v in match.items())
            ):
                return


def scenario(arch: ArchProfile, layout: Layout, steps: list[dict[str, Any]]) -> Scenario:
    return Scenario(
        "bench", arch.name, "bench", layout, walkers=(), steps=tuple(map(Action.from_data, steps))
    )


def timed_steps(vm: VM, arch: ArchProfile, sc: Scenario) -> list[float]:
    """Seconds of each of ``sc``'s steps, played by HotplugRun on the running guest."""
    layout_plan = plan(sc.layout, arch)
    run = HotplugRun(sc, vm.kernel, vm, layout_plan, plan_steps(layout_plan, sc.steps))
    run.run()
    if run.failures:
        raise SystemExit(f"memharness steps failed: {run.failures}")
    return [s.seconds for s in run.steps[1:]]  # steps[0] loads modules


@contextmanager
def guest_with_bare_monitor(arch: ArchProfile, layout: Layout) -> Iterator[tuple[VM, RawQMP]]:
    """A guest booted for ``layout`` with a second QMP monitor for the bare path."""
    kernel, image = prepare(arch, None)
    layout_plan = plan(layout, arch)
    sockdir = Path(tempfile.mkdtemp(prefix="mhh-"))
    bare = ("-chardev", f"socket,id=bare,path={sockdir}/bare.sock,server=on,wait=off")
    options = VMOptions(
        memory=layout.memory,
        slots=layout.slots,
        maxmem=layout.maxmem,
        extra_args=(*layout_plan.qemu_args, *bare, "-mon", "chardev=bare,mode=control"),
        cmdline=layout_plan.cmdline,
    )
    with VM(kernel, image, Path(tempfile.mkdtemp(prefix="mhh-art-")), options) as vm:
        yield vm, RawQMP(sockdir / "bare.sock")


def new_results() -> dict[str, list[float]]:
    return {"mh-plug": [], "mh-unplug": [], "bare-plug": [], "bare-unplug": []}


def dimm_bench(arch: ArchProfile, rounds: int) -> None:
    layout = Layout.from_data({"kind": "hotplug", "memory": "1G", "slots": 4, "maxmem": "4G"})
    results = new_results()
    with guest_with_bare_monitor(arch, layout) as (vm, raw):
        for i in range(rounds):
            steps = [
                {"plug": "pc-dimm", "id": f"d{i}", "size": "128M"},
                {"online": f"d{i}", "zone": "movable"},
                {"offline": f"d{i}"},
                {"unplug": f"d{i}"},
            ]
            plug, online, offline, unplug = timed_steps(vm, arch, scenario(arch, layout, steps))
            results["mh-plug"].append(plug + online)
            results["mh-unplug"].append(offline + unplug)
            # bare: same commands, same place, same sysfs writes, nothing checked
            block = (4 << 30) // BLOCK
            state = f"/sys/devices/system/memory/memory{block}/state"
            start = time.monotonic()
            backend = {"qom-type": "memory-backend-ram", "id": f"b{i}", "size": BLOCK}
            raw.execute("object-add", **backend)
            raw.execute("device_add", driver="pc-dimm", id=f"bd{i}", memdev=f"b{i}", addr=4 << 30)
            raw.wait("ACPI_DEVICE_OST")
            vm.run(f"mh-wait 30 test -e {state} && echo online_movable > {state}")
            results["bare-plug"].append(time.monotonic() - start)
            start = time.monotonic()
            vm.run(f"echo offline > {state}")
            raw.execute("device_del", id=f"bd{i}")
            raw.wait("DEVICE_DELETED", device=f"bd{i}")
            raw.execute("object-del", id=f"b{i}")
            results["bare-unplug"].append(time.monotonic() - start)
    report(f"{arch.name} pc-dimm 128M", results, ("plug + online", "offline + unplug"))


def virtio_bench(arch: ArchProfile, rounds: int) -> None:
    layout = Layout.from_data(
        {
            "kind": "hotplug",
            "memory": "1G",
            "maxmem": "4G",
            "online": "online_movable",
            "virtio_mem": [{"id": "vmem0", "size": "1G"}],
        }
    )
    results = new_results()
    with guest_with_bare_monitor(arch, layout) as (vm, raw):
        vm.run("modprobe virtio_mem")
        path = "/machine/peripheral/vmem0"
        for _ in range(rounds):
            steps = [{"resize": "vmem0", "size": "128M"}, {"resize": "vmem0", "size": "0"}]
            grow, shrink = timed_steps(vm, arch, scenario(arch, layout, steps))
            results["mh-plug"].append(grow)
            results["mh-unplug"].append(shrink)
            for size, key in ((BLOCK, "bare-plug"), (0, "bare-unplug")):
                start = time.monotonic()
                raw.execute("qom-set", path=path, property="requested-size", value=size)
                raw.wait("MEMORY_DEVICE_SIZE_CHANGE", id="vmem0", size=size)
                results[key].append(time.monotonic() - start)
    report(f"{arch.name} virtio-mem 128M", results, ("resize +128M", "resize -128M"))


def report(title: str, results: dict[str, list[float]], labels: tuple[str, str]) -> None:
    print(title)
    for key, label in zip(("plug", "unplug"), labels, strict=True):
        mh = statistics.median(results[f"mh-{key}"])
        bare = statistics.median(results[f"bare-{key}"])
        verdict = "ok" if mh <= TARGET else "OVER TARGET"
        print(
            f"  {label:<18} memharness {mh:6.3f} s   bare QMP {bare:6.3f} s   "
            f"ratio {mh / bare:5.2f}   target <= {TARGET:.0f} s per block: {verdict}"
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64,arm64")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for arch in parse_arches(args.arch):
        if arch.name == "x86_64":
            dimm_bench(arch, args.rounds)
        virtio_bench(arch, args.rounds)
    print("(arm64 pc-dimm needs a built kernel with ACPI_HOTPLUG_MEMORY: not benchmarked here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
