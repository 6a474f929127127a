"""Layout planner: from a declarative layout to QEMU options, kernel command line, device-tree
nodes and the expected map of every 128 MiB section in 2 MiB subsections (pure).

Impossible layouts are refused with one line that says why and what to change, before any
QEMU starts.  The facts behind the rules are DESIGN.md §3's verified recipes: q35 keeps at most
2 GiB below 4 GiB when -m >= 2.75 GiB (else all of it), hot-pluggable device memory starts at
the first 1 GiB boundary above RAM, Linux maps ZONE_DEVICE in 2 MiB subsections of 128 MiB
sections, and arm64 virt RAM starts at 1 GiB.
"""

from dataclasses import dataclass, field

from harness.arch import ArchProfile
from harness.errors import UserError
from harness.kernel.kconfig import Requirement
from harness.layout.model import GiB, Layout, MiB, Region, fmt_size

SUBSECTION = 2 * MiB
RAM, DEVICE, HOLE = "R", "D", "."
Q35_LOWMEM_THRESHOLD = 0xB000_0000
Q35_LOWMEM_MAX = 0x8000_0000
FOUR_GIB = 4 * GiB

# What each layout kind needs: the arch that can produce it, kernel options, modules to load.
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "legacy": {
        "arch": ("x86_64",),
        "config": ("X86_PMEM_LEGACY", "LIBNVDIMM", "BLK_DEV_PMEM"),
        "modules": ("nd_e820", "nd_pmem"),
    },
    "nfit": {
        "arch": ("x86_64",),
        "config": ("ACPI_NFIT", "LIBNVDIMM", "BLK_DEV_PMEM"),
        "modules": ("nfit", "nd_pmem"),
    },
    "dt": {
        "arch": ("arm64",),
        "config": ("OF_PMEM", "LIBNVDIMM", "BLK_DEV_PMEM"),
        "modules": ("of_pmem", "nd_pmem"),
    },
}


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

    @property
    def collisions(self) -> list[int]:
        return [s.number for s in self.sections if s.collides]

    @property
    def section_size(self) -> int:
        return self.arch.section_size


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


def _subtract(spaces: list[Region], holes: tuple[Region, ...]) -> list[Region]:
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
    if arch.name not in kind["arch"]:
        other = ", ".join(k for k, v in KINDS.items() if arch.name in v["arch"])
        raise UserError(
            f"layout kind {layout.kind!r} cannot be produced on {arch.name}: use kind {other}"
        )
    if layout.memory % SUBSECTION:
        raise UserError(f"memory {fmt_size(layout.memory)} is not a multiple of 2M")
    builder = {"legacy": _plan_legacy, "nfit": _plan_nfit, "dt": _plan_dt}[layout.kind]
    result = builder(layout, arch)
    if expect_collision and not result.collisions:
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
        modules=kind["modules"],
        requirements=tuple(Requirement.parse(o) for o in kind["config"]),
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
    ram = _subtract(boot, layout.pmem)
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


def render(p: Plan) -> str:
    """The section map as text: one line per section, one character per 2 MiB subsection."""
    lines = [
        f"{p.arch.name} {p.layout.kind} layout: -m {fmt_size(p.layout.memory)}"
        f"{' ' + ' '.join(p.cmdline) if p.cmdline else ''}",
        "R = System RAM, D = device memory (ZONE_DEVICE in fsdax/devdax), . = hole",
        f"{'section':>7}  {'physical range':<27} subsections (2 MiB each)",
    ]
    for s in p.sections:
        end = s.start + p.section_size - 1
        mark = "  <- shared: collision" if s.collides else ""
        lines.append(f"{s.number:>7}  {s.start:#012x}-{end:#012x}  {s.subsections}{mark}")
    return "\n".join(lines)
