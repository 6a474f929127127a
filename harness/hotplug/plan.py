"""Plans a scenario's hotplug steps against its layout before QEMU starts (pure).

The planner plays the steps on a model of the machine (slots, the maxmem budget, the
device-memory window, which ids exist, which memory blocks each covers and whether they are
online) so that every impossible step is a one-line error naming the fix, and every possible
one knows its QMP commands, its exact addresses and the memory blocks the guest must show.
Addresses are always chosen here and passed to QEMU explicitly: the guest's block numbers are
then predictions the runner can check, not something read back.
"""

from dataclasses import dataclass, field
from typing import Any

from harness.errors import UserError
from harness.hotplug.steps import ZONES, Action
from harness.layout.model import MiB, Region, fmt_size
from harness.layout.planner import VIRTIO_MEM_BLOCK, Plan, boot_ram, subtract
from harness.paths import kmod_dirs, kmod_source

ONLINE, OFFLINE, DEVICE = "online", "offline", "device"  # states of a memory's pages
HOTREMOVE = "MEMORY_HOTREMOVE"


@dataclass(frozen=True)
class DeviceKind:
    """A QEMU memory device as a step can plug it."""

    name: str
    driver: str  # -device driver
    arches: tuple[str, ...]
    uses_slot: bool
    size_align: int
    requires: tuple[str, ...]  # kernel options; the scenario is skipped without them
    modules: tuple[str, ...]  # guest modules loaded before the first plug
    acpi: bool  # announced through ACPI (so UEFI boot on arm64)
    pages: str  # ONLINE-able memory blocks, or DEVICE memory (pmem: no online struct pages)
    ost: bool = False  # the guest acknowledges the insert with _OST (QMP ACPI_DEVICE_OST)
    no_unplug: str = ""  # why it cannot be unplugged ("" when it can)
    no_plug: str = ""  # why a step cannot plug it ("" when it can)


DEVICE_KINDS: dict[str, DeviceKind] = {
    k.name: k
    for k in (
        DeviceKind(
            "pc-dimm",
            "pc-dimm",
            ("x86_64", "arm64"),
            True,
            128 * MiB,
            ("ACPI_HOTPLUG_MEMORY",),
            (),
            True,
            OFFLINE,
            ost=True,
        ),
        DeviceKind(
            "nvdimm",
            "nvdimm",
            ("x86_64",),
            True,
            2 * MiB,
            ("ACPI_NFIT", "LIBNVDIMM", "BLK_DEV_PMEM"),
            ("nfit", "nd_pmem"),
            True,
            DEVICE,
            no_unplug="QEMU cannot hot-unplug an nvdimm: leave it plugged",
        ),
        DeviceKind(
            "virtio-mem",
            "virtio-mem-pci",
            ("x86_64", "arm64"),
            False,
            VIRTIO_MEM_BLOCK,
            ("VIRTIO_MEM",),
            ("virtio_mem",),
            False,
            ONLINE,
            no_unplug="virtio-mem gives memory back by resizing: use { resize = ID, size = 0 }",
            no_plug="virtio-mem devices are declared in the layout (virtio_mem = [...]) and "
            "resized with { resize = ID, size = N }",
        ),
    )
}
RANGE = "range"  # memory added by the mh_hotplug module, not by a QEMU device


@dataclass
class Memory:
    """Something a step added: a device or an add_memory range, with its present blocks."""

    id: str
    kind: str  # a DEVICE_KINDS name or RANGE
    region: Region
    state: str  # ONLINE | OFFLINE | DEVICE
    blocks: list[int] = field(default_factory=list)
    plugged: int = 0  # virtio-mem: requested size


@dataclass(frozen=True)
class PlannedStep:
    step: Action
    label: str
    kind: str = ""  # of the memory acted on
    region: Region | None = None  # the memory acted on (add/remove: the range)
    blocks: tuple[int, ...] = ()  # memory blocks acted on / expected present afterwards
    gone: tuple[int, ...] = ()  # memory blocks that must have disappeared
    state: str = ""  # the memory's state after the step (walk: what the walkers expect)
    sysfs_state: str = ""  # online/churn: what is written to memoryN/state
    qmp: tuple[tuple[str, dict[str, Any]], ...] = ()
    size: int = 0  # resize: the requested size


@dataclass(frozen=True)
class HotplugPlan:
    steps: tuple[PlannedStep, ...]
    requires: tuple[str, ...]  # kernel options; without them the scenario is skipped
    modules: tuple[str, ...]  # guest modules to load before the first step
    test_modules: tuple[str, ...]  # guest-scripts/kmod modules to build and insmod
    uefi: bool  # boot through UEFI (ACPI on arm64)
    ports: int  # guest sessions: churn races walkers in a second one

    def memory_map(self) -> dict[str, Any]:
        """Every memory block a step touches and its predicted state after each step
        ("" before it exists, "gone" after it was removed): the report's block picture."""
        blocks: dict[int, list[str]] = {}
        now: dict[int, str] = {}
        for n, planned in enumerate(self.steps):
            for b in planned.blocks:
                now[b] = planned.state or now.get(b, ONLINE)
            for b in planned.gone:
                now[b] = "gone"
            for b, state in now.items():
                blocks.setdefault(b, [""] * len(self.steps))[n] = state
        return {
            "kind": "blocks",
            "steps": [p.label for p in self.steps],
            "blocks": {str(b): states for b, states in sorted(blocks.items())},
        }


class _Machine:
    """The machine as the steps change it."""

    def __init__(self, layout_plan: Plan) -> None:
        self.plan = layout_plan
        self.arch = layout_plan.arch
        self.block = layout_plan.arch.section_size
        self.memories: dict[str, Memory] = {}
        self.slots_used = 0
        self.requires: list[str] = []
        self.modules: list[str] = []
        self.test_modules: list[str] = []
        self.uefi = False
        self.ports = 1
        auto = layout_plan.layout.online
        self.auto_state = ONLINE if auto.startswith("online") else OFFLINE
        for dev_id, region in layout_plan.boot_devices:
            requested = next(v.requested for v in layout_plan.layout.virtio_mem if v.id == dev_id)
            mem = Memory(dev_id, "virtio-mem", region, ONLINE, plugged=requested)
            mem.blocks = self._virtio_blocks(mem)
            self.memories[dev_id] = mem
            self._need(DEVICE_KINDS["virtio-mem"])

    # -- helpers -----------------------------------------------------------------------------
    def _need(self, kind: DeviceKind) -> None:
        self.requires += kind.requires
        self.modules += kind.modules
        self.uefi |= kind.acpi and self.arch.acpi_needs_uefi

    def _blocks(self, region: Region) -> list[int]:
        return list(range(region.start // self.block, -(-region.end // self.block)))

    def _virtio_blocks(self, mem: Memory) -> list[int]:
        return self._blocks(Region(mem.region.start, mem.plugged)) if mem.plugged else []

    def _get(self, step: Action, kinds: tuple[str, ...] | None = None) -> Memory:
        mem = self.memories.get(step.target)
        if mem is None:
            known = ", ".join(self.memories) or "none"
            raise UserError(
                f"step {step.describe()}: unknown id {step.target!r} (present at that point: "
                f"{known})"
            )
        if kinds is not None and mem.kind not in kinds:
            raise UserError(
                f"step {step.describe()}: {mem.id} is a {mem.kind}; {step.action} works on "
                f"{' or '.join(kinds)}"
            )
        return mem

    def _aligned(self, step: Action, what: str, value: int, align: int) -> None:
        if value % align:
            raise UserError(
                f"step {step.describe()}: {what} {value:#x} is not {fmt_size(align)} aligned"
                + (": Linux hot-adds whole 128 MiB memory blocks" if align == self.block else "")
            )

    def _overlap(self, region: Region) -> Memory | None:
        return next((m for m in self.memories.values() if m.region.overlaps(region)), None)

    def _window(self, step: Action) -> Region:
        if self.plan.window is None:
            raise UserError(
                f"step {step.describe()}: the layout has no room for memory devices: set slots "
                "and maxmem"
            )
        return self.plan.window

    def _place(self, step: Action, size: int) -> Region:
        window = self._window(step)
        used = sum(m.region.size for m in self.memories.values() if m.kind != RANGE)
        if used + size > window.size:
            raise UserError(
                f"step {step.describe()}: {fmt_size(used)} of the {fmt_size(window.size)} "
                "device memory that maxmem leaves is in use: raise maxmem"
            )
        if step.start is not None:
            region = Region(step.start, size)
            self._aligned(step, "addr", step.start, self.block)
            if not (window.start <= region.start and region.end <= window.end):
                raise UserError(
                    f"step {step.describe()}: addr {region} is outside the device-memory window "
                    f"{window}: move it or raise maxmem"
                )
        else:
            # First fit, on 128 MiB boundaries, from the window's start.
            starts = [window.start] + [
                -(-m.region.end // self.block) * self.block for m in self.memories.values()
            ]
            fits = (
                Region(s, size)
                for s in sorted(starts)
                if window.start <= s
                and s + size <= window.end
                and self._overlap(Region(s, size)) is None
            )
            found = next(fits, None)
            if found is None:
                raise UserError(
                    f"step {step.describe()}: no free {fmt_size(size)} range left in the "
                    f"device-memory window {window}: raise maxmem"
                )
            region = found
        clash = self._overlap(region)
        if clash is not None:
            raise UserError(f"step {step.describe()}: {region} overlaps {clash.id} {clash.region}")
        return region

    # -- actions -----------------------------------------------------------------------------
    def plug(self, step: Action) -> PlannedStep:
        kind = DEVICE_KINDS.get(step.subject)
        if kind is None:
            raise UserError(
                f"step plug: unknown device {step.subject!r}: use one of "
                f"{', '.join(k for k, v in DEVICE_KINDS.items() if not v.no_plug)}"
            )
        if kind.no_plug:
            raise UserError(f"step {step.describe()}: {kind.no_plug}")
        if self.arch.name not in kind.arches:
            raise UserError(
                f"step {step.describe()}: QEMU cannot hotplug a {kind.name} on {self.arch.name}"
            )
        if step.id in self.memories:
            raise UserError(f"step {step.describe()}: id {step.id} is already plugged")
        if not step.size:
            raise UserError(f"step {step.describe()}: size must not be 0")
        self._aligned(step, "size", step.size, kind.size_align)
        self._window(step)
        if kind.uses_slot and self.slots_used >= self.plan.layout.slots:
            raise UserError(
                f"step {step.describe()}: all {self.plan.layout.slots} slots are in use: raise "
                "slots in the layout"
            )
        nodes = len(self.plan.layout.numa) or 1
        if step.node is not None and not 0 <= step.node < nodes:
            raise UserError(
                f"step {step.describe()}: node {step.node} is not one of the layout's {nodes} "
                "NUMA nodes (layout key numa)"
            )
        region = self._place(step, step.size)
        state = self.auto_state if kind.pages == OFFLINE else kind.pages
        mem = Memory(step.id, kind.name, region, state)
        if kind.pages != DEVICE:
            mem.blocks = self._blocks(region)
        self.memories[step.id] = mem
        self.slots_used += kind.uses_slot
        self._need(kind)
        backend = f"mem-{step.id}"
        qmp = (
            ("object-add", {"qom-type": "memory-backend-ram", "id": backend, "size": step.size}),
            (
                "device_add",
                {
                    "driver": kind.driver,
                    "id": step.id,
                    "memdev": backend,
                    "addr": region.start,
                    **({} if step.node is None else {"node": step.node}),
                },
            ),
        )
        return self._planned(step, mem, qmp=qmp)

    def unplug(self, step: Action) -> PlannedStep:
        mem = self._get(step)
        kind = DEVICE_KINDS.get(mem.kind)
        if kind is None:
            raise UserError(
                f"step {step.describe()}: {mem.id} was added by add_memory: remove it with "
                "offline_and_remove_memory"
            )
        if kind.no_unplug:
            raise UserError(f"step {step.describe()}: {kind.no_unplug}")
        del self.memories[mem.id]
        self.slots_used -= kind.uses_slot
        self.requires.append(HOTREMOVE)
        qmp = (("device_del", {"id": mem.id}), ("object-del", {"id": f"mem-{mem.id}"}))
        return PlannedStep(
            step, step.describe(), mem.kind, mem.region, gone=tuple(mem.blocks), qmp=qmp
        )

    def online(self, step: Action) -> PlannedStep:
        mem = self._with_blocks(step)
        mem.state = ONLINE
        return self._planned(step, mem, sysfs_state=ZONES[step.zone])

    def offline(self, step: Action) -> PlannedStep:
        mem = self._with_blocks(step)
        mem.state = OFFLINE
        self.requires.append(HOTREMOVE)
        return self._planned(step, mem)

    def churn(self, step: Action) -> PlannedStep:
        mem = self._with_blocks(step)
        mem.state = ONLINE
        self.requires.append(HOTREMOVE)
        self.ports = 2
        return self._planned(step, mem, sysfs_state=ZONES[step.zone])

    def walk(self, step: Action) -> PlannedStep:
        mem = self._get(step)
        if mem.state != DEVICE and not mem.blocks:
            raise UserError(f"step {step.describe()}: {mem.id} has no memory to walk yet")
        return self._planned(step, mem)

    def resize(self, step: Action) -> PlannedStep:
        mem = self._get(step, ("virtio-mem",))
        if step.size > mem.region.size:
            raise UserError(
                f"step {step.describe()}: {mem.id} is {fmt_size(mem.region.size)} at most: "
                "raise its size in the layout"
            )
        self._aligned(step, "size", step.size, VIRTIO_MEM_BLOCK)
        if step.size == mem.plugged:
            raise UserError(f"step {step.describe()}: {mem.id} already has that size")
        if step.size < mem.plugged:
            self.requires.append(HOTREMOVE)
        before = set(mem.blocks)
        mem.plugged = step.size
        mem.blocks = self._virtio_blocks(mem)
        qmp = (
            (
                "qom-set",
                {
                    "path": f"/machine/peripheral/{mem.id}",
                    "property": "requested-size",
                    "value": step.size,
                },
            ),
        )
        return self._planned(
            step, mem, qmp=qmp, size=step.size, gone=tuple(sorted(before - set(mem.blocks)))
        )

    def module(self, step: Action) -> PlannedStep:
        if kmod_source(step.subject) is None:
            known = sorted({p.stem for d in kmod_dirs() for p in d.glob("*.c")})
            raise UserError(
                f"step module: no test module {step.subject!r} in "
                f"{':'.join(map(str, kmod_dirs()))} (have: {', '.join(known) or 'none'})"
            )
        if step.subject in self.test_modules:
            raise UserError(f"step module: {step.subject} is loaded twice")
        self.test_modules.append(step.subject)
        return PlannedStep(step, step.describe())

    def add_memory(self, step: Action) -> PlannedStep:
        self._need_mh_hotplug(step)
        assert step.start is not None  # required by the schema
        region = Region(step.start, step.size)
        self._aligned(step, "start", region.start, self.block)
        self._aligned(step, "size", region.size, self.block)
        if step.subject in self.memories:
            raise UserError(f"step {step.describe()}: id {step.subject} is already in use")
        hidden = _hidden_ram(self.plan)
        if not any(h.start <= region.start and region.end <= h.end for h in hidden):
            shown = ", ".join(str(h) for h in hidden) or "none (set mem_limit below memory)"
            raise UserError(
                f"step {step.describe()}: {region} is not RAM that QEMU has and the kernel does "
                f"not use (mem= hides: {shown})"
            )
        clash = self._overlap(region)
        if clash is not None:
            raise UserError(f"step {step.describe()}: {region} overlaps {clash.id} {clash.region}")
        mem = Memory(step.subject, RANGE, region, self.auto_state, self._blocks(region))
        self.memories[step.subject] = mem
        return self._planned(step, mem)

    def offline_and_remove_memory(self, step: Action) -> PlannedStep:
        self._need_mh_hotplug(step)
        mem = self._get(step, (RANGE,))
        assert step.start is not None
        region = Region(step.start, step.size)
        self._aligned(step, "start", region.start, self.block)
        self._aligned(step, "size", region.size, self.block)
        removed = self._blocks(region)
        if not set(removed) <= set(mem.blocks):
            raise UserError(
                f"step {step.describe()}: {region} is not part of what is left of {mem.id}"
            )
        mem.blocks = [b for b in mem.blocks if b not in removed]
        self.requires.append(HOTREMOVE)
        return PlannedStep(
            step, step.describe(), RANGE, region, tuple(mem.blocks), tuple(removed), mem.state
        )

    def guest(self, step: Action) -> PlannedStep:
        if not step.subject.strip():
            raise UserError("step guest: the command is empty")
        return PlannedStep(step, step.describe())

    # -- shared ------------------------------------------------------------------------------
    def _with_blocks(self, step: Action) -> Memory:
        mem = self._get(step)
        if mem.state == DEVICE:
            raise UserError(
                f"step {step.describe()}: {mem.id} is a {mem.kind}: its memory is not System RAM "
                "and has no memory blocks to online or offline"
            )
        if not mem.blocks:
            raise UserError(f"step {step.describe()}: {mem.id} has no memory blocks yet")
        return mem

    def _need_mh_hotplug(self, step: Action) -> None:
        if "mh_hotplug" not in self.test_modules:
            raise UserError(
                f"step {step.describe()}: load the test module first with "
                '{ module = "mh_hotplug" }'
            )
        self.requires.append("MEMORY_HOTPLUG")

    def _planned(self, step: Action, mem: Memory, **kw: Any) -> PlannedStep:
        return PlannedStep(
            step,
            step.describe(),
            mem.kind,
            mem.region,
            tuple(mem.blocks),
            state=mem.state,
            **kw,
        )


def _hidden_ram(layout_plan: Plan) -> list[Region]:
    """RAM the machine has but the kernel was told (mem=) not to use."""
    return subtract(boot_ram(layout_plan.arch, layout_plan.layout.memory), layout_plan.ram)


def plan_steps(layout_plan: Plan, steps: tuple[Action, ...]) -> HotplugPlan:
    """Plays ``steps`` on the layout; the first impossible one raises UserError."""
    machine = _Machine(layout_plan)
    planned = tuple(getattr(machine, step.action)(step) for step in steps)
    return HotplugPlan(
        steps=planned,
        requires=tuple(dict.fromkeys(machine.requires)),
        modules=tuple(dict.fromkeys(machine.modules)),
        test_modules=tuple(machine.test_modules),
        uefi=machine.uefi,
        ports=machine.ports,
    )


def step_json(p: PlannedStep) -> dict[str, Any]:
    """A planned step for `memharness layout --json`."""
    return {
        "step": p.label,
        "region": [p.region.start, p.region.size] if p.region else None,
        "blocks": list(p.blocks),
        "gone": list(p.gone),
        "state": p.state,
        "qmp": [{"execute": c, "arguments": a} for c, a in p.qmp],
    }


def render_steps(steps: tuple[PlannedStep, ...]) -> str:
    """The planned steps as text: what each acts on and the memory blocks it must leave."""
    lines = ["steps (memory blocks are 128 MiB; the guest must show exactly these):"]
    for i, p in enumerate(steps, 1):
        where = f" at {p.region}" if p.region and str(p.region) not in p.label else ""
        blocks = f"; blocks {_ranges(p.blocks)} {p.state}" if p.blocks else ""
        gone = f"; blocks {_ranges(p.gone)} gone" if p.gone else ""
        lines.append(f"{i:>3}. {p.label}{where}{blocks}{gone}")
    return "\n".join(lines)


def _ranges(numbers: tuple[int, ...]) -> str:
    """(16, 18, 19, 20) → '16,18-20'."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)
