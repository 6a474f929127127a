"""Plays a planned hotplug scenario on a booted guest.

Every wait is for an event with a timeout, never a sleep: QMP events for what QEMU sees
(ACPI_DEVICE_OST when the guest accepted a DIMM, DEVICE_DELETED when it let one go,
MEMORY_DEVICE_SIZE_CHANGE when virtio-mem reached its size) and mh-wait in the guest for what
Linux shows (memory blocks appearing or disappearing, a pmem region in /proc/iomem).  After
each step QEMU's view (query-memory-devices) and the guest's (/sys/devices/system/memory) are
compared with the planner's prediction; a mismatch fails the step and the steps after it are
skipped, since they would act on a machine the plan no longer describes.
"""

import threading
import time
from typing import Any

from harness.errors import InfraError
from harness.guest import walkers as walk
from harness.guest.record import WALK_TIMEOUT, GuestSteps, Named, StepRecord
from harness.hotplug.plan import DEVICE, DEVICE_KINDS, OFFLINE, ONLINE, HotplugPlan, PlannedStep
from harness.image.builder import TEST_MODULE_DIR
from harness.kernel.behaviour import behaves
from harness.kernel.model import Kernel
from harness.layout.model import Region, fmt_size
from harness.layout.planner import HOLE, PMEM, RAM, SUBSECTION, Plan, Section
from harness.layout.planner import OFFLINE as OFFLINE_PFN
from harness.vm.machine import VM
from harness.vm.qmp import QMPAborted, QMPError

MEMORY = "/sys/devices/system/memory"
DEBUGFS = "/sys/kernel/debug/mh_hotplug"
EVENT_TIMEOUT = 60.0  # QMP events: hotplug under TCG takes well under a second per block
APPEAR_TIMEOUT = 30  # seconds for memory blocks or regions to show in the guest
OST_INSERT, OST_EJECT = 1, 3  # _OST source events (ACPI device check, eject request)
OST_PENDING = 0x84  # "ejection in progress": the guest is working on it
PFN_KIND = {ONLINE: RAM, OFFLINE: OFFLINE_PFN, DEVICE: PMEM}
RACE_WALKERS = ("kpageflags", "soft-offline")  # what races churn on the second session


class HotplugRun(GuestSteps):
    def __init__(
        self, scenario: Named, kernel: Kernel, vm: VM, layout_plan: Plan, hotplug: HotplugPlan
    ) -> None:
        super().__init__(scenario, kernel, vm)
        self.plan = layout_plan
        self.hotplug = hotplug
        self.block = kernel.arch.section_size
        # Blocks this kernel refused to online again because a racing soft offline poisoned
        # pages in them (behaviour.toml: online_refuses_hwpoisoned_block): offline from then on.
        self.poisoned_offline: set[int] = set()

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        self.skip_unsupported_walkers()
        with self._step("modules and memory blocks") as step:
            self._prepare(step)
        for planned in self.hotplug.steps:
            if not self.alive or self.failures:
                reason = "an earlier step failed" if self.failures else "the guest is gone"
                self.steps.append(StepRecord(planned.label, "skipped", reason))
                continue
            if planned.step.action == "walk":
                self.walk_sections(planned.label, self._sections(planned))
                continue
            with self._step(planned.label) as step:
                getattr(self, f"_do_{planned.step.action}")(step, planned)

    def _prepare(self, step: StepRecord) -> None:
        wanted = list(self.hotplug.modules)
        for name in self.walkers:
            wanted += walk.WALKERS[name].modules
        self.modprobe(step, wanted)
        size = self._guest(step, f"cat {MEMORY}/block_size_bytes")
        if size is not None and int(size.strip(), 16) != self.block:
            self._fail(step, f"memory block size {size.strip()} is not {self.block:#x}")
        for dev_id, region in self.plan.boot_devices:
            self._check_device(step, dev_id, region)
        step.data["blocks"] = sorted(self._present())

    # -- guest and QEMU views ----------------------------------------------------------------
    def _present(self) -> set[int]:
        out = self.vm.run(f"ls {MEMORY}", check=False).text
        return {int(n[6:]) for n in out.split() if n.startswith("memory") and n[6:].isdigit()}

    def _states(
        self, step: StepRecord, blocks: tuple[int, ...], before: str = ""
    ) -> dict[int, tuple[str, str]]:
        """block → (state, valid_zones) as the guest shows them, after the shell ``before``
        (a wait or the writes of the step: one guest round trip instead of two)."""
        out = self._guest(
            step,
            (f"{before} && " if before else "")
            + f"cd {MEMORY} && for b in {' '.join(map(str, blocks))}; do "
            "echo $b $(cat memory$b/state) $(cat memory$b/valid_zones 2>/dev/null); done",
        )
        states: dict[int, tuple[str, str]] = {}
        for line in (out or "").splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) >= 2:
                states[int(parts[0])] = (parts[1], parts[2] if len(parts) > 2 else "")
        return states

    def _expect_states(self, step: StepRecord, planned: PlannedStep, before: str = "") -> None:
        if not planned.blocks or planned.state == DEVICE:
            if before:
                self._guest(step, before)
            return
        states = self._states(step, planned.blocks, before)
        step.data["states"] = {str(b): " ".join(v) for b, v in states.items()}
        wrong = {b: s for b, (s, _) in states.items() if s != self._expected(planned, b)}
        if wrong:
            self._fail(step, f"memory blocks {wrong} are not {planned.state}")
        if planned.state == ONLINE and planned.sysfs_state == "online_movable":
            unmovable = [
                b
                for b, (state, zone) in states.items()
                if state == ONLINE and zone.split()[:1] != ["Movable"]
            ]
            if unmovable:
                self._fail(step, f"memory blocks {unmovable} are online but not in ZONE_MOVABLE")

    @staticmethod
    def _wait_script(blocks: tuple[int, ...], present: bool) -> str:
        """Guest shell that waits for ``blocks`` to appear (or go away); '' for none."""
        if not blocks:
            return ""
        test = " && ".join(f"{'' if present else '! '}test -e {MEMORY}/memory{b}" for b in blocks)
        return f"mh-wait {APPEAR_TIMEOUT} sh -c '{test}'"

    def _wait_blocks(self, step: StepRecord, blocks: tuple[int, ...], present: bool) -> None:
        script = self._wait_script(blocks, present)
        if script and self._guest(step, script) is None:
            step.reason = (
                f"memory blocks {list(blocks)} did not "
                f"{'appear' if present else 'go away'} within {APPEAR_TIMEOUT} s"
            )

    def _qmp(self, step: StepRecord, command: str, arguments: dict[str, Any]) -> Any | None:
        try:
            return self.vm.qmp.command(command, **arguments)
        except QMPError as exc:
            self._fail(step, f"QEMU refused: {exc}")
            return None
        except InfraError as exc:
            if self.vm.abort_reason() is None:
                raise
            step.reason = str(exc)  # QEMU is gone: its exit or the splat is the outcome
            return None

    def _devices(self) -> dict[str, dict[str, Any]]:
        """QEMU's memory devices by id ({} once QEMU is gone)."""
        try:
            listed = self.vm.qmp.command("query-memory-devices")
        except InfraError:
            if self.vm.abort_reason() is None:
                raise
            return {}
        return {d["data"]["id"]: d["data"] for d in listed if d.get("data", {}).get("id")}

    def _check_device(self, step: StepRecord, dev_id: str, region: Region) -> dict[str, Any] | None:
        """QEMU must have put the device exactly where the planner said."""
        device = self._devices().get(dev_id)
        if device is None:
            self._fail(step, f"QEMU lists no memory device {dev_id}")
            return None
        addr = device.get("addr", device.get("memaddr"))
        size = device.get("max-size", device.get("size"))
        if (addr, size) != (region.start, region.size):
            self._fail(
                step,
                f"QEMU put {dev_id} at {fmt_size(size or 0)}@{addr or 0:#x}, planned {region}",
            )
        return device

    # -- actions -----------------------------------------------------------------------------
    def _do_plug(self, step: StepRecord, planned: PlannedStep) -> None:
        dev_id, kind = planned.step.id, DEVICE_KINDS[planned.kind]
        self.vm.qmp.discard("ACPI_DEVICE_OST", {"info": {"device": dev_id}})  # stale: not ours
        start = time.monotonic()
        for command, arguments in planned.qmp:
            if self._qmp(step, command, arguments) is None:
                return
        if kind.ost:
            event = self._event(step, "ACPI_DEVICE_OST", {"info": {"device": dev_id}})
            if event is None:
                return
            info = event["data"]["info"]
            step.data["ost"] = info
            if info.get("status") != 0:
                self._fail(step, f"the guest answered the insert with _OST status {info}")
                return
        step.data["qemu_seconds"] = round(time.monotonic() - start, 3)
        assert planned.region is not None
        self._check_device(step, dev_id, planned.region)
        if kind.pages == DEVICE:
            r = planned.region
            pattern = f"^ *{r.start:x}-{r.end - 1:x} : Persistent Memory"
            found = self._guest(step, f"mh-wait {APPEAR_TIMEOUT} grep -qi '{pattern}' /proc/iomem")
            if found is None:
                step.reason = f"no Persistent Memory at {r} in /proc/iomem"
        self._expect_states(step, planned, before=self._wait_script(planned.blocks, True))
        step.data["seconds_to_guest"] = round(time.monotonic() - start, 3)

    def _do_unplug(self, step: StepRecord, planned: PlannedStep) -> None:
        dev_id = planned.step.target
        self.vm.qmp.discard("DEVICE_DELETED", {"device": dev_id})
        start = time.monotonic()
        (delete, del_args), (obj_del, obj_args) = planned.qmp
        if self._qmp(step, delete, del_args) is None:
            return
        if self._event(step, "DEVICE_DELETED", {"device": dev_id}) is None:
            refused = [
                e["data"]["info"]
                for e in self.vm.qmp.events()
                if e.get("event") == "ACPI_DEVICE_OST"
                and e["data"]["info"].get("source") == OST_EJECT
                and e["data"]["info"].get("status") not in (0, OST_PENDING)
            ]
            if refused:
                step.reason = f"the guest refused the eject: _OST {refused[-1]}"
            return
        self.vm.qmp.discard("ACPI_DEVICE_OST")
        step.data["qemu_seconds"] = round(time.monotonic() - start, 3)
        if self._qmp(step, obj_del, obj_args) is None:
            return
        self._wait_blocks(step, planned.gone, present=False)
        if dev_id in self._devices():
            self._fail(step, f"QEMU still lists {dev_id} after DEVICE_DELETED")

    def _do_online(self, step: StepRecord, planned: PlannedStep) -> None:
        self._set_state(step, planned, "online", planned.sysfs_state)

    def _do_offline(self, step: StepRecord, planned: PlannedStep) -> None:
        self._set_state(step, planned, "offline", "offline")

    def _set_state(self, step: StepRecord, planned: PlannedStep, state: str, write: str) -> None:
        """Writes ``write`` to every block not already ``state``, then checks all of them."""
        writes = (
            f"(cd {MEMORY} && for b in {' '.join(map(str, planned.blocks))}; do "
            f"[ $(cat memory$b/state) = {state} ] || echo {write} > memory$b/state || exit 1; "
            "done)"
        )
        self._expect_states(step, planned, before=writes)

    def _do_churn(self, step: StepRecord, planned: PlannedStep) -> None:
        """offline/online every block ``rounds`` times while walkers loop on port 1."""
        stop = threading.Event()
        raced = {"walks": 0, "failed": 0}
        count = self.block // 4096
        walkers = [w for w in RACE_WALKERS if w in self.walkers]

        def race() -> None:
            while not stop.is_set() and self.alive:
                for b in planned.blocks:
                    for name in walkers:
                        result = self.vm.run(
                            walk.WALKERS[name].command(b * count, count) + " >/dev/null",
                            timeout=WALK_TIMEOUT,
                            check=False,
                            port=1,
                        )
                        raced["walks" if result.exit_code == 0 else "failed"] += 1

        racer = threading.Thread(target=race, name="churn-walkers", daemon=True)
        if walkers:
            racer.start()
        outcome = {"offlined": 0, "refused": 0, "poisoned": 0}
        # An online write the kernel refuses for hwpoison (strerror(EHWPOISON)) is said as
        # poisoned:BLOCK; any other refusal of a block that is not online fails the step.
        online = (
            f"if ! err=$( (echo {planned.sysfs_state} > memory$b/state) 2>&1 ) && "
            "[ $(cat memory$b/state) != online ]; then case $err in "
            '*"hardware error"*) echo poisoned:$b ;; *) echo "$err" >&2; exit 1 ;; esac; fi'
        )
        try:
            for _ in range(planned.step.rounds):
                out = self._guest(
                    step,
                    f"cd {MEMORY} && for b in {' '.join(map(str, planned.blocks))}; do "
                    "if echo offline > memory$b/state 2>/dev/null; then echo offlined; "
                    f"else echo refused; fi; {online}; done",
                )
                if out is None:
                    break
                for word in out.split():
                    kind, _, block = word.partition(":")
                    outcome[kind] = outcome.get(kind, 0) + 1
                    if block:
                        self.poisoned_offline.add(int(block))
        finally:
            stop.set()
            if racer.is_alive():
                racer.join(WALK_TIMEOUT + 10)
        step.data.update(outcome, racing_walks=raced["walks"], racing_walk_failures=raced["failed"])
        if step.status == "passed" and not outcome["offlined"]:
            self._fail(step, "no memory block could be offlined in any round")
        if self.poisoned_offline:
            step.data["offline_for_hwpoison"] = sorted(self.poisoned_offline)
            if not behaves(self.kernel, "online_refuses_hwpoisoned_block"):
                self._fail(
                    step,
                    f"memory blocks {sorted(self.poisoned_offline)} refused to online with "
                    f"EHWPOISON, which kernel {self.kernel.release} is not known to do",
                )
        self._expect_states(step, planned)

    def _do_resize(self, step: StepRecord, planned: PlannedStep) -> None:
        dev_id = planned.step.target
        self.vm.qmp.discard("MEMORY_DEVICE_SIZE_CHANGE", {"id": dev_id})
        start = time.monotonic()
        ((command, arguments),) = planned.qmp
        if self._qmp(step, command, arguments) is None:
            return
        if self._event(step, "MEMORY_DEVICE_SIZE_CHANGE", {"id": dev_id, "size": planned.size}):
            self.vm.qmp.discard("MEMORY_DEVICE_SIZE_CHANGE", {"id": dev_id})
        else:
            return
        step.data["qemu_seconds"] = round(time.monotonic() - start, 3)
        device = self._devices().get(dev_id, {})
        step.data["query-memory-devices"] = {
            k: device.get(k) for k in ("memaddr", "size", "requested-size", "max-size")
        }
        if device.get("size") != planned.size:
            self._fail(step, f"QEMU reports {dev_id} size {device.get('size')}, not {planned.size}")
        # Linux plugs virtio-mem subblocks before it adds their memory block (and removes the
        # block before it unplugs the last subblock): the event can precede the guest's view.
        self._wait_blocks(step, planned.blocks, present=True)
        self._wait_blocks(step, planned.gone, present=False)
        assert planned.region is not None
        region_blocks = set(
            range(planned.region.start // self.block, planned.region.end // self.block)
        )
        present = self._present() & region_blocks
        step.data["guest_blocks"] = sorted(present)
        if present != set(planned.blocks):
            self._fail(
                step,
                f"the guest has memory blocks {sorted(present)} of {dev_id}, expected "
                f"{list(planned.blocks)} for {fmt_size(planned.size)}",
            )
        self._expect_states(step, planned)

    def _do_module(self, step: StepRecord, planned: PlannedStep) -> None:
        name = planned.step.subject
        self._guest(step, f"insmod {TEST_MODULE_DIR}/{name}.ko && test -d /sys/module/{name}")

    def _do_add_memory(self, step: StepRecord, planned: PlannedStep) -> None:
        self._debugfs(step, planned)
        self._expect_states(step, planned, before=self._wait_script(planned.blocks, True))

    def _do_offline_and_remove_memory(self, step: StepRecord, planned: PlannedStep) -> None:
        self._debugfs(step, planned)
        self._wait_blocks(step, planned.gone, present=False)

    def _do_guest(self, step: StepRecord, planned: PlannedStep) -> None:
        out = self._guest(step, planned.step.subject)
        if out is not None:
            step.data["output"] = out[-2000:]

    # -- shared ------------------------------------------------------------------------------
    def _debugfs(self, step: StepRecord, planned: PlannedStep) -> None:
        assert planned.region is not None
        r = planned.region
        self._guest(step, f"echo {r.start:#x} {r.size:#x} > {DEBUGFS}/{planned.step.action}")

    def _event(self, step: StepRecord, name: str, match: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.vm.qmp.wait_event(
                name, match, timeout=EVENT_TIMEOUT, abort=self.vm.abort_reason
            )
        except TimeoutError as exc:
            if self.alive:
                self._fail(step, str(exc))
            return None
        except QMPAborted as exc:
            step.reason = str(exc)  # the splat or the exit is the outcome, not this step
            return None

    def _expected(self, planned: PlannedStep, block: int) -> str:
        """The state ``block`` must be in after ``planned``: the plan's, except offline for a
        block the kernel refused to online again because of hwpoison."""
        return OFFLINE if block in self.poisoned_offline else planned.state

    def _sections(self, planned: PlannedStep) -> list[Section]:
        """The memory a walk covers, one section per memory block, with what pfns must read
        (device memory that fills part of a section leaves the rest a hole)."""
        if planned.state != DEVICE or planned.region is None:
            per_block = self.block // SUBSECTION
            return [
                Section(b, PFN_KIND[self._expected(planned, b)] * per_block) for b in planned.blocks
            ]
        kind = PFN_KIND[planned.state]
        r = planned.region
        sections = []
        for b in range(r.start // self.block, -(-r.end // self.block)):
            subs = (
                Region(b * self.block + i, SUBSECTION) for i in range(0, self.block, SUBSECTION)
            )
            sections.append(Section(b, "".join(kind if s.overlaps(r) else HOLE for s in subs)))
        return sections

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "hotplug": [p.label for p in self.hotplug.steps],
            "memory_map": self.hotplug.memory_map(),
        }
