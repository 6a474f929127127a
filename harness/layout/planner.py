"""Layout planner: from a declarative layout to QEMU options, kernel command line, device-tree
nodes and the expected map of every 128 MiB section in 2 MiB subsections (pure).

Impossible layouts are refused with one line that says why and what to change, before any
QEMU starts.  The facts behind the rules are DESIGN.md §3's verified recipes: q35 keeps at most
2 GiB below 4 GiB when -m >= 2.75 GiB (else all of it), hot-pluggable device memory starts at
the first 1 GiB boundary above RAM, Linux maps ZONE_DEVICE in 2 MiB subsections of 128 MiB
sections, and arm64 virt RAM starts at 1 GiB.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.arch import ArchProfile
from harness.errors import UserError
from harness.kernel.kconfig import Requirement
from harness.layout.model import GiB, Layout, MiB, Region, fmt_size

SUBSECTION = 2 * MiB
RAM, DEVICE, HOLE = "R", "D", "."
OFFLINE = "O"  # hot-added System RAM whose memory block is offline (no online struct pages)
PMEM = "P"  # hot-added pmem: raw (no memmap at all) or ZONE_DEVICE, as guest steps made it
Q35_LOWMEM_THRESHOLD = 0xB000_0000
Q35_LOWMEM_MAX = 0x8000_0000
FOUR_GIB = 4 * GiB


@dataclass(frozen=True)
class LayoutKind:
    """What a layout kind needs: the arches that can produce it, kernel options, modules."""

    arches: tuple[str, ...]
    config: tuple[str, ...]
    modules: tuple[str, ...]
    collides: bool = True  # the kind exists to put device memory in a section with RAM


KINDS: dict[str, LayoutKind] = {
    "legacy": LayoutKind(
        ("x86_64",), ("X86_PMEM_LEGACY", "LIBNVDIMM", "BLK_DEV_PMEM"), ("nd_e820", "nd_pmem")
    ),
    "nfit": LayoutKind(
        ("x86_64",), ("ACPI_NFIT", "LIBNVDIMM", "BLK_DEV_PMEM"), ("nfit", "nd_pmem")
    ),
    "dt": LayoutKind(("arm64",), ("OF_PMEM", "LIBNVDIMM", "BLK_DEV_PMEM"), ("of_pmem", "nd_pmem")),
    "hotplug": LayoutKind(("x86_64", "arm64"), ("MEMORY_HOTPLUG",), (), collides=False),
}
ONLINE_STATES = ("online", "online_movable", "online_kernel", "offline")
VIRTIO_MEM_BLOCK = 2 * MiB  # QEMU's default virtio-mem block size with 4 KiB pages and THP


@dataclass(frozen=True)
class DtNode:
    """A device-tree node added to the machine's DTB (arm64)."""

    name: str
    compatible: str
    region: Region

    def dts(self) -> str:
        hi, lo = self.region.start >> 32, self.region.start & 0xFFFF_FFFF
        shi, slo = self.region.size >> 32, self.region.size & 0xFFFF_FFFF
        return (
            f"\t{self.name}@{self.region.start:x} {{\n"
            f'\t\tcompatible = "{self.compatible}";\n'
            f"\t\treg = <{hi:#x} {lo:#x} {shi:#x} {slo:#x}>;\n\t}};\n"
        )


@dataclass(frozen=True)
class Section:
    number: int
    subsections: str  # one character per 2 MiB: R System RAM, D device memory, . hole

    @property
    def start(self) -> int:
        return self.number * 128 * MiB

    @property
    def collides(self) -> bool:
        return RAM in self.subsections and DEVICE in self.subsections

    def pfns(self, kind: str, page: int = 4096) -> list[tuple[int, int]]:
        """(first pfn, count) runs of the subsections of ``kind``."""
        per = SUBSECTION // page
        runs: list[tuple[int, int]] = []
        for i, c in enumerate(self.subsections):
            if c != kind:
                continue
            pfn = (self.start + i * SUBSECTION) // page
            if runs and runs[-1][0] + runs[-1][1] == pfn:
                runs[-1] = (runs[-1][0], runs[-1][1] + per)
            else:
                runs.append((pfn, per))
        return runs


@dataclass(frozen=True)
class Plan:
    layout: Layout
    arch: ArchProfile
    ram: tuple[Region, ...]  # System RAM as the kernel will see it
    device: tuple[Region, ...]  # persistent memory (ZONE_DEVICE once in fsdax/devdax mode)
    sections: tuple[Section, ...]  # sections that hold device memory, with a neighbour each side
    qemu_args: tuple[str, ...] = ()
    cmdline: tuple[str, ...] = ()
    dt_nodes: tuple[DtNode, ...] = ()
    modules: tuple[str, ...] = ()
    requirements: tuple[Requirement, ...] = ()
    notes: tuple[str, ...] = field(default=())
    window: Region | None = None  # hotplug: QEMU's device-memory window (size = maxmem - memory)
    boot_devices: tuple[tuple[str, Region], ...] = ()  # hotplug: (virtio-mem id, its range)

    @property
    def collisions(self) -> list[int]:
        return [s.number for s in self.sections if s.collides]

    @property
    def section_size(self) -> int:
        return self.arch.section_size

    def memory_map(self) -> dict[str, Any]:
        """What the report's picture is drawn from (harness/report/memmap.py)."""
        return {
            "kind": "sections",
            "section_size": self.section_size,
            "sections": self.to_json()["sections"],
        }

    def to_json(self) -> dict[str, Any]:
        """The plan's one JSON schema (``memharness layout --json``; see the README)."""
        return {
            "arch": self.arch.name,
            "kind": self.layout.kind,
            "collision_sections": self.collisions,
            "cmdline": list(self.cmdline),
            "qemu_args": list(self.qemu_args),
            "dt_nodes": [n.dts() for n in self.dt_nodes],
            "sections": [
                {
                    "number": s.number,
                    "start": s.start,
                    "subsections": s.subsections,
                    "collides": s.collides,
                }
                for s in self.sections
            ],
        }


def _check_aligned(what: str, region: Region) -> None:
    if region.start % SUBSECTION or region.size % SUBSECTION or region.size == 0:
        raise UserError(
            f"{what} {region} is not 2 MiB aligned: Linux maps ZONE_DEVICE in 2 MiB "
            "subsections, so start and size must be multiples of 2M"
        )


def _check_disjoint(regions: list[tuple[str, Region]]) -> None:
    for i, (a_name, a) in enumerate(regions):
        for b_name, b in regions[i + 1 :]:
            if a.overlaps(b):
                raise UserError(f"{a_name} {a} overlaps {b_name} {b}: move one of them")


def _within(what: str, region: Region, spaces: list[Region], why: str) -> None:
    if not any(s.start <= region.start and region.end <= s.end for s in spaces):
        raise UserError(f"{what} {region} is {why}")


def subtract(spaces: list[Region], holes: tuple[Region, ...]) -> list[Region]:
    out = list(spaces)
    for hole in holes:
        nxt = []
        for r in out:
            if not r.overlaps(hole):
                nxt.append(r)
                continue
            if r.start < hole.start:
                nxt.append(Region(r.start, hole.start - r.start))
            if hole.end < r.end:
                nxt.append(Region(hole.end, r.end - hole.end))
        out = nxt
    return out


def q35_boot_ram(memory: int) -> list[Region]:
    """Where q35 puts -m RAM: below 4 GiB up to its low-memory limit, the rest above 4 GiB."""
    below = memory if memory < Q35_LOWMEM_THRESHOLD else min(memory, Q35_LOWMEM_MAX)
    ram = [Region(0, below)]
    if memory > below:
        ram.append(Region(FOUR_GIB, memory - below))
    return ram


def q35_device_memory(memory: int, maxmem: int) -> Region:
    """QEMU's hot-pluggable device-memory window (pc-dimm, nvdimm, virtio-mem)."""
    top = max(r.end for r in q35_boot_ram(memory))
    base = max(FOUR_GIB, -(-top // GiB) * GiB)
    return Region(base, max(0, maxmem - memory))


def virt_boot_ram(arch: ArchProfile, memory: int) -> list[Region]:
    """arm64 virt: all of -m in one range from the arch's RAM base."""
    return [Region(arch.ram_base, memory)]


def virt_device_memory(arch: ArchProfile, memory: int, maxmem: int) -> Region:
    """arm64 virt's device-memory window: the first 1 GiB boundary above boot RAM."""
    return Region(-(-(arch.ram_base + memory) // GiB) * GiB, max(0, maxmem - memory))


# Per QEMU machine type: (where -m RAM goes, where the device-memory window is).
MACHINES: dict[str, tuple[Callable[[ArchProfile, int], list[Region]], Callable[..., Region]]] = {
    "q35": (lambda _arch, memory: q35_boot_ram(memory), lambda _a, m, x: q35_device_memory(m, x)),
    "virt": (virt_boot_ram, virt_device_memory),
}


def _machine(arch: ArchProfile) -> str:
    return arch.machine.split(",")[0]


def boot_ram(arch: ArchProfile, memory: int) -> list[Region]:
    return MACHINES[_machine(arch)][0](arch, memory)


def device_memory(arch: ArchProfile, memory: int, maxmem: int) -> Region:
    return MACHINES[_machine(arch)][1](arch, memory, maxmem)


def section_map(arch: ArchProfile, ram: list[Region], device: list[Region]) -> tuple[Section, ...]:
    """Every section holding device memory, plus one neighbour on each side, subsection by
    subsection."""
    size = arch.section_size
    wanted: set[int] = set()
    for d in device:
        first, last = d.start // size, (d.end - 1) // size
        wanted.update(range(max(0, first - 1), last + 2))
    sections = []
    for number in sorted(wanted):
        chars = []
        for i in range(size // SUBSECTION):
            sub = Region(number * size + i * SUBSECTION, SUBSECTION)
            in_ram = any(sub.overlaps(r) for r in ram)
            in_dev = any(sub.overlaps(d) for d in device)
            if in_ram and in_dev:
                raise UserError(
                    f"subsection {sub} is both RAM and device memory: align the layout to 2 MiB"
                )
            chars.append(DEVICE if in_dev else RAM if in_ram else HOLE)
        sections.append(Section(number, "".join(chars)))
    return tuple(sections)


def plan(layout: Layout, arch: ArchProfile, expect_collision: bool = True) -> Plan:
    kind = KINDS.get(layout.kind)
    if kind is None:
        raise UserError(f"unknown layout kind {layout.kind!r}: use one of {', '.join(KINDS)}")
    if arch.name not in kind.arches:
        other = ", ".join(k for k, v in KINDS.items() if arch.name in v.arches)
        raise UserError(
            f"layout kind {layout.kind!r} cannot be produced on {arch.name}: use kind {other}"
        )
    if layout.memory % SUBSECTION:
        raise UserError(f"memory {fmt_size(layout.memory)} is not a multiple of 2M")
    if layout.numa and layout.kind != "hotplug":
        raise UserError(f"numa is a hotplug layout's key, not {layout.kind}'s: drop it")
    builders = {
        "legacy": _plan_legacy,
        "nfit": _plan_nfit,
        "dt": _plan_dt,
        "hotplug": _plan_hotplug,
    }
    result = builders[layout.kind](layout, arch)
    if layout.slow_disk:
        result = replace(
            result,
            qemu_args=result.qemu_args + tuple(slow_disk_args(layout)),
            modules=(*result.modules, "virtio_blk"),
            requirements=(*result.requirements, Requirement.parse("VIRTIO_BLK")),
        )
    if expect_collision and kind.collides and not result.collisions:
        raise UserError(
            f"layout {layout.kind} puts no device memory in a section with System RAM: place "
            "it so that a 128 MiB section holds both"
        )
    return result


def _finish(
    layout: Layout, arch: ArchProfile, ram: list[Region], device: list[Region], **kw: object
) -> Plan:
    kind = KINDS[layout.kind]
    return Plan(
        layout=layout,
        arch=arch,
        ram=tuple(ram),
        device=tuple(device),
        sections=section_map(arch, ram, device),
        modules=kind.modules,
        requirements=tuple(Requirement.parse(o) for o in kind.config),
        **kw,  # type: ignore[arg-type]
    )


def _plan_legacy(layout: Layout, arch: ArchProfile) -> Plan:
    if not layout.pmem:
        raise UserError("a legacy layout needs at least one pmem range")
    boot = q35_boot_ram(layout.memory)
    for r in layout.pmem:
        _check_aligned("pmem", r)
        _within(
            "pmem",
            r,
            boot,
            f"outside the boot RAM of -m {fmt_size(layout.memory)}: "
            "memmap=! can only carve pmem out of existing RAM",
        )
    _check_disjoint([("pmem", r) for r in layout.pmem])
    ram = subtract(boot, layout.pmem)
    cmdline = tuple(f"memmap={fmt_size(r.size)}!{r.start:#x}" for r in layout.pmem)
    return _finish(layout, arch, ram, list(layout.pmem), cmdline=cmdline)


def _plan_nfit(layout: Layout, arch: ArchProfile) -> Plan:
    if not layout.nvdimms:
        raise UserError("an nfit layout needs at least one nvdimm")
    devices = len(layout.nvdimms) + len(layout.dimms)
    if layout.slots < devices:
        raise UserError(
            f"{devices} memory devices need slots >= {devices} (have {layout.slots}): raise slots"
        )
    window = q35_device_memory(layout.memory, layout.maxmem)
    named = [("nvdimm", r) for r in layout.nvdimms] + [("pc-dimm", r) for r in layout.dimms]
    for name, r in named:
        _check_aligned(name, r)
        _within(
            name,
            r,
            [window],
            f"outside QEMU's device-memory window {window} (-m "
            f"{fmt_size(layout.memory)}, maxmem {fmt_size(layout.maxmem)}): raise maxmem "
            "or move it",
        )
    _check_disjoint(named)
    used = sum(r.size for _, r in named)
    if layout.memory + used > layout.maxmem:
        raise UserError(
            f"devices need {fmt_size(used)} beyond -m {fmt_size(layout.memory)}: "
            f"maxmem {fmt_size(layout.maxmem)} is too small"
        )
    args: list[str] = []
    for i, r in enumerate(layout.nvdimms):
        label = f",label-size={layout.label_size}" if layout.label_size else ""
        args += [
            "-object",
            f"memory-backend-ram,id=mhnv{i},size={r.size}",
            "-device",
            f"nvdimm,id=nvdimm{i},memdev=mhnv{i},addr={r.start:#x}{label}",
        ]
    for i, r in enumerate(layout.dimms):
        args += [
            "-object",
            f"memory-backend-ram,id=mhdimm{i},size={r.size}",
            "-device",
            f"pc-dimm,id=dimm{i},memdev=mhdimm{i},addr={r.start:#x}",
        ]
    ram = q35_boot_ram(layout.memory) + list(layout.dimms)
    cmdline = tuple(f"memmap={fmt_size(r.size)}@{r.start:#x}" for r in layout.dimms)
    return _finish(
        layout,
        arch,
        ram,
        list(layout.nvdimms),
        qemu_args=tuple(args),
        cmdline=cmdline,
        notes=("pc-dimms become boot RAM through memmap=@",),
    )


def _plan_dt(layout: Layout, arch: ArchProfile) -> Plan:
    if layout.mem_limit is None:
        raise UserError("a dt layout needs mem_limit (the kernel's mem=) to leave room for pmem")
    if not layout.pmem:
        raise UserError("a dt layout needs at least one pmem range")
    if layout.mem_limit % SUBSECTION or layout.mem_limit >= layout.memory:
        raise UserError(
            f"mem_limit {fmt_size(layout.mem_limit)} must be 2M aligned and below "
            f"-m {fmt_size(layout.memory)}"
        )
    hidden = Region(arch.ram_base + layout.mem_limit, layout.memory - layout.mem_limit)
    for r in layout.pmem:
        _check_aligned("pmem", r)
        _within(
            "pmem",
            r,
            [hidden],
            f"not inside the RAM QEMU has but mem= hides ({hidden}): "
            "a pmem-region must be backed by guest memory",
        )
    _check_disjoint([("pmem", r) for r in layout.pmem])
    ram = [Region(arch.ram_base, layout.mem_limit)]
    nodes = tuple(DtNode("pmem", "pmem-region", r) for r in layout.pmem)
    return _finish(
        layout,
        arch,
        ram,
        list(layout.pmem),
        dt_nodes=nodes,
        cmdline=(f"mem={fmt_size(layout.mem_limit)}",),
    )


def _plan_hotplug(layout: Layout, arch: ArchProfile) -> Plan:
    if layout.pmem or layout.nvdimms or layout.dimms:
        raise UserError(
            "a hotplug layout adds memory devices in its steps: remove pmem/nvdimms/dimms "
            "(or use kind legacy, nfit or dt)"
        )
    if layout.online and layout.online not in ONLINE_STATES:
        raise UserError(f"online {layout.online!r} is not one of {', '.join(ONLINE_STATES)}")
    if layout.maxmem and layout.maxmem <= layout.memory:
        raise UserError(
            f"maxmem {fmt_size(layout.maxmem)} must be above -m {fmt_size(layout.memory)}: "
            "the difference is the room for memory devices"
        )
    ram = boot_ram(arch, layout.memory)
    cmdline: list[str] = []
    if layout.mem_limit is not None:
        if layout.mem_limit % arch.section_size or layout.mem_limit >= layout.memory:
            raise UserError(
                f"mem_limit {fmt_size(layout.mem_limit)} must be a multiple of 128M and below "
                f"-m {fmt_size(layout.memory)}"
            )
        ram = [Region(arch.ram_base, layout.mem_limit)]
        cmdline.append(f"mem={fmt_size(layout.mem_limit)}")
    # Stated, never left to the kernel: its default differs by version and build (Debian's 6.1
    # leaves hot-added memory offline, its 6.12 onlines it), and the plan predicts the states.
    cmdline.append(f"memhp_default_state={layout.online or 'offline'}")
    window = device_memory(arch, layout.memory, layout.maxmem) if layout.maxmem else None
    args: list[str] = []
    devices: list[tuple[str, Region]] = []
    cursor = window.start if window else 0
    for dev in layout.virtio_mem:
        if window is None:
            raise UserError(f"virtio-mem {dev.id} needs room for memory devices: set maxmem")
        if dev.size % arch.section_size or dev.requested % VIRTIO_MEM_BLOCK:
            raise UserError(
                f"virtio-mem {dev.id}: size must be a multiple of 128M and requested of 2M"
            )
        if dev.requested > dev.size:
            raise UserError(f"virtio-mem {dev.id}: requested is above its size")
        if dev.node is not None and not 0 <= dev.node < max(len(layout.numa), 1):
            raise UserError(
                f"virtio-mem {dev.id}: node {dev.node} is not one of the layout's NUMA nodes "
                "(layout key numa)"
            )
        if layout.online in ("", "offline"):
            raise UserError(
                f"virtio-mem {dev.id} needs plugged memory onlined as it arrives: set "
                'online = "online_movable" (memhp_default_state) in the layout'
            )
        region = Region(cursor, dev.size)
        if region.end > window.end:
            raise UserError(
                f"virtio-mem devices need {fmt_size(region.end - window.start)} of device memory, "
                f"maxmem leaves {fmt_size(window.size)}: raise maxmem"
            )
        devices.append((dev.id, region))
        cursor = region.end
        args += [
            "-object",
            f"memory-backend-ram,id=mem-{dev.id},size={dev.size}",
            "-device",
            f"virtio-mem-pci,id={dev.id},memdev=mem-{dev.id},memaddr={region.start:#x},"
            f"requested-size={dev.requested}" + ("" if dev.node is None else f",node={dev.node}"),
        ]
    args += _cxl_args(layout, arch)
    args += numa_args(layout, arch)
    notes = ("memory devices are added, resized and removed by the scenario's steps",)
    return replace(
        _finish(layout, arch, ram, [], qemu_args=tuple(args), cmdline=tuple(cmdline), notes=notes),
        window=window,
        boot_devices=tuple(devices),
    )


SLOW_DISK_SERIAL = "mh-slow"  # how a guest finds the disk: /sys/block/*/serial
SLOW_DISK_SIZE = 64 * 1024 * 1024


def slow_disk_args(layout: Layout) -> list[str]:
    """The layout's slow disk: QEMU's null-co block driver delays every request by
    ``slow_disk`` (in QEMU's event loop, so the guest's vCPUs keep running) and reads return
    zeros, which lets a helper check that an O_DIRECT read landed in the pages its mapping
    shows; behind virtio-blk, which every guest memharness boots has."""
    latency_ns = round(layout.slow_disk * 1e9)
    return [
        "-blockdev",
        f"driver=null-co,node-name=mhslow,size={SLOW_DISK_SIZE},latency-ns={latency_ns},"
        "read-zeroes=on",
        "-device",
        f"virtio-blk-pci,drive=mhslow,serial={SLOW_DISK_SERIAL}",
    ]


def numa_args(layout: Layout, arch: ArchProfile) -> list[str]:
    """QEMU's NUMA nodes of ``layout.numa``: each node's boot memory from a backend of its
    own, a memory-less node as a bare node (QEMU's SRAT makes the device-memory window
    hotpluggable on the last node, so plugged memory can arrive there)."""
    if not layout.numa:
        return []
    if len(layout.numa) < 2:
        raise UserError("numa lists the boot memory of each node: name at least two nodes")
    if sum(layout.numa) != layout.memory:
        raise UserError(
            f"numa's nodes add up to {fmt_size(sum(layout.numa))}, not the layout's memory "
            f"{fmt_size(layout.memory)}: make them add up"
        )
    if not layout.numa[0] or any(n % arch.section_size for n in layout.numa):
        raise UserError(
            "numa: node 0 needs boot memory, and each node's size must be a multiple of "
            f"{fmt_size(arch.section_size)} (a memory section)"
        )
    args: list[str] = []
    for node, size in enumerate(layout.numa):
        if size:
            args += ["-object", f"memory-backend-ram,id=mhnode{node},size={size}"]
            args += ["-numa", f"node,nodeid={node},memdev=mhnode{node}"]
        else:
            args += ["-numa", f"node,nodeid={node}"]
    return args


CXL_ARCHES = ("x86_64",)  # QEMU 7.2's pxb-cxl host bridge and its fixed window are q35's
CXL_LSA = 2 * MiB  # the type-3 device's label storage area (namespace labels)
CXL_WINDOW = 4 * GiB  # the fixed memory window (CFMWS) regions are created in


def _cxl_args(layout: Layout, arch: ArchProfile) -> list[str]:
    """QEMU arguments for the layout's CXL type-3 device: one host bridge, one root port, one
    device with its persistent memory and label area, one fixed window targeting the bridge.
    QEMU places the window after all other memory, so a layout with room for memory devices
    (maxmem) would move it: refused, since nothing here plans where it lands."""
    if not layout.cxl:
        return []
    if arch.name not in CXL_ARCHES:
        raise UserError(f"a cxl layout needs {' or '.join(CXL_ARCHES)} (QEMU's pxb-cxl is q35's)")
    if layout.maxmem or layout.slots or layout.virtio_mem:
        raise UserError("a cxl layout has no maxmem, slots or virtio_mem: drop them")
    if layout.cxl % arch.section_size or layout.cxl > CXL_WINDOW:
        raise UserError(f"cxl {fmt_size(layout.cxl)} must be a multiple of 128M, at most 4G")
    return [
        "-machine",
        "cxl=on",
        "-object",
        f"memory-backend-ram,id=cxl-mem0,size={layout.cxl}",
        "-object",
        f"memory-backend-ram,id=cxl-lsa0,size={CXL_LSA}",
        "-device",
        "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1",
        "-device",
        "cxl-rp,port=0,bus=cxl.1,id=cxl-rp0,chassis=0,slot=2",
        "-device",
        "cxl-type3,bus=cxl-rp0,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0",
        "-machine",
        f"cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size={CXL_WINDOW}",
    ]


def render(p: Plan) -> str:
    """The section map as text: one line per section, one character per 2 MiB subsection."""
    lines = [
        f"{p.arch.name} {p.layout.kind} layout: -m {fmt_size(p.layout.memory)}"
        f"{' ' + ' '.join(p.cmdline) if p.cmdline else ''}"
    ]
    if p.sections:
        lines += [
            "R = System RAM, D = device memory (ZONE_DEVICE in fsdax/devdax), . = hole",
            f"{'section':>7}  {'physical range':<27} subsections (2 MiB each)",
        ]
    for s in p.sections:
        end = s.start + p.section_size - 1
        mark = "  <- shared: collision" if s.collides else ""
        lines.append(f"{s.number:>7}  {s.start:#012x}-{end:#012x}  {s.subsections}{mark}")
    lines += [f"System RAM: {', '.join(str(r) for r in p.ram)}"] if not p.sections else []
    if p.window is not None:
        lines.append(
            f"device memory window {p.window.start:#x}, {fmt_size(p.window.size)} "
            f"(slots {p.layout.slots})"
        )
    for name, region in p.boot_devices:
        lines.append(f"  virtio-mem {name}: {region}")
    return "\n".join(lines)
