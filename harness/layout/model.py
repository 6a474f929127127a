"""Declarative memory layouts, as scenarios write them (pure).

Sizes and addresses are written the way kernel developers write them: "64M", "2G",
"0x40000000".  A layout names guest RAM, where persistent memory goes, and which devices carry
it; the planner turns it into QEMU options and the expected section map.
"""

import re
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError

MiB = 1 << 20
GiB = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": MiB, "G": GiB, "T": 1 << 40}


def parse_size(value: str | int) -> int:
    """'64M' → 67108864; '0x40000000' → 1073741824; ints pass through."""
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if re.fullmatch(r"0X[0-9A-F]+", text):  # before the unit suffixes: B is a hex digit
        return int(text, 16)
    m = re.fullmatch(r"(\d+)([KMGT]?)", text.removesuffix("B").removesuffix("I"))
    if not m:
        raise UserError(f"bad size {value!r}: write it like 64M, 2G or 0x40000000")
    return int(m.group(1)) * _UNITS[m.group(2)]


def fmt_size(value: int) -> str:
    for unit in ("G", "M", "K"):
        if value and value % _UNITS[unit] == 0:
            return f"{value // _UNITS[unit]}{unit}"
    return str(value)


@dataclass(frozen=True)
class Region:
    """A physical range: [start, start + size)."""

    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def overlaps(self, other: "Region") -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{fmt_size(self.size)}@{self.start:#x}"


@dataclass(frozen=True)
class VirtioMem:
    """A virtio-mem device present from boot: ``size`` is its maximum, ``requested`` what the
    guest is asked to plug at boot (resized later with qom-set)."""

    id: str
    size: int
    requested: int = 0
    node: int | None = None  # its NUMA node (layout numa); None: QEMU's default


def parse_latency(text: object) -> float:
    """'3s' or '500ms' → seconds: a slow disk's per-request latency, spelled with its unit so a
    reader of the scenario never guesses whether 3 means seconds or milliseconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", str(text).strip())
    if match is None:
        raise UserError(f'slow_disk = {text!r}: give a latency with its unit, e.g. "3s" or "500ms"')
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


@dataclass(frozen=True)
class Layout:
    """What a scenario asks for.

    kind: legacy  — x86 e820 pmem carved out of boot RAM with memmap=SIZE!ADDR (nd_e820)
          nfit    — x86 QEMU nvdimm (ACPI NFIT) next to a pc-dimm that becomes boot RAM
                    through memmap=SIZE@ADDR, so both share one section
          dt      — arm64 device-tree pmem-region placed after the RAM limit set by mem=
          hotplug — boot RAM (optionally limited by mem=) plus room for memory devices that
                    scenario steps add, resize and remove over QMP (pc-dimm, nvdimm,
                    virtio-mem); ``online`` is memhp_default_state for what gets plugged
                    (default offline, always put on the command line: kernels differ);
                    ``cxl`` adds a CXL type-3 device (x86_64) behind a CXL host bridge, whose
                    regions the scenario creates and destroys in the guest; ``numa`` splits
                    boot memory over NUMA nodes (a plug step's ``node`` puts a device on one)
    Any kind: ``slow_disk`` adds a virtio-blk disk whose every request takes that long (QEMU's
    null-co driver, reads return zeros), so an O_DIRECT read into a mapping is still in flight,
    its pages pinned by the block layer, while a step tears the mapping's memory down.
    """

    kind: str
    memory: int  # QEMU -m
    pmem: tuple[Region, ...] = ()  # legacy / dt pmem ranges
    nvdimms: tuple[Region, ...] = ()  # nfit: QEMU nvdimm devices
    dimms: tuple[Region, ...] = ()  # nfit: pc-dimms that become boot RAM (memmap=@)
    mem_limit: int | None = None  # dt: kernel mem=
    label_size: int = 0  # nfit: nvdimm label area (0: label-less, namespace starts raw)
    slots: int = 0
    maxmem: int = 0
    virtio_mem: tuple[VirtioMem, ...] = ()  # hotplug: virtio-mem devices present from boot
    online: str = ""  # hotplug: memhp_default_state for plugged memory ("" = offline, stated)
    cxl: int = 0  # hotplug: size of a CXL type-3 device's persistent memory (0: none)
    # hotplug: boot memory per NUMA node (they add up to ``memory``; 0 is a memory-less node
    # that plugged memory can go to); () is one node, as QEMU makes it
    numa: tuple[int, ...] = ()
    slow_disk: float = 0.0  # seconds each request of the slow disk takes (0: no such disk)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Layout":
        def regions(key: str) -> tuple[Region, ...]:
            return tuple(
                Region(parse_size(r["start"]), parse_size(r["size"])) for r in data.get(key, [])
            )

        known = {
            "kind",
            "memory",
            "pmem",
            "nvdimms",
            "dimms",
            "mem_limit",
            "label_size",
            "slots",
            "maxmem",
            "virtio_mem",
            "online",
            "cxl",
            "numa",
            "slow_disk",
        }
        unknown = set(data) - known
        if unknown:
            raise UserError(f"layout has unknown keys {sorted(unknown)}: use {sorted(known)}")
        if not isinstance(data.get("numa", []), list):
            raise UserError(
                f"layout numa = {data['numa']!r}: list each node's boot memory, "
                'e.g. numa = ["1G", "0"]'
            )
        return cls(
            kind=str(data["kind"]),
            memory=parse_size(data["memory"]),
            pmem=regions("pmem"),
            nvdimms=regions("nvdimms"),
            dimms=regions("dimms"),
            mem_limit=parse_size(data["mem_limit"]) if "mem_limit" in data else None,
            label_size=parse_size(data.get("label_size", 0)),
            slots=int(data.get("slots", 0)),
            maxmem=parse_size(data.get("maxmem", 0)),
            virtio_mem=tuple(
                VirtioMem(
                    str(v["id"]),
                    parse_size(v["size"]),
                    parse_size(v.get("requested", 0)),
                    None if v.get("node") is None else int(v["node"]),
                )
                for v in data.get("virtio_mem", [])
            ),
            online=str(data.get("online", "")),
            cxl=parse_size(data.get("cxl", 0)),
            numa=tuple(parse_size(n) for n in data.get("numa", [])),
            slow_disk=parse_latency(data.get("slow_disk", "0s")),
        )
