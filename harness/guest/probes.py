"""Parsers for what the guest says about its memory (pure): /proc/iomem, /proc/zoneinfo,
memory block states.  The scenario runner compares them with the planner's map, so a layout
that did not happen fails loudly instead of being tested silently.
"""

import re
from dataclasses import dataclass

from harness.layout.model import Region

_IOMEM = re.compile(r"^(?P<indent>\s*)(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+) : (?P<name>.*)$")


@dataclass(frozen=True)
class IomemEntry:
    region: Region
    name: str
    depth: int


def parse_iomem(text: str) -> list[IomemEntry]:
    entries = []
    for line in text.splitlines():
        m = _IOMEM.match(line)
        if m:
            start, end = int(m.group("start"), 16), int(m.group("end"), 16)
            entries.append(
                IomemEntry(
                    Region(start, end - start + 1),
                    m.group("name").strip(),
                    len(m.group("indent")) // 2,
                )
            )
    return entries


def covered(region: Region, entries: list[IomemEntry], names: tuple[str, ...]) -> bool:
    """True when top-level entries whose name contains one of ``names`` cover ``region``."""
    spans = sorted(
        (e.region.start, e.region.end)
        for e in entries
        if e.depth == 0 and any(n in e.name for n in names)
    )
    pos = region.start
    for start, end in spans:
        if start <= pos < end:
            pos = end
        if pos >= region.end:
            return True
    return pos >= region.end


@dataclass(frozen=True)
class Zone:
    node: int
    name: str
    spanned: int
    present: int
    start_pfn: int


def parse_zoneinfo(text: str) -> list[Zone]:
    zones: list[Zone] = []
    current: dict[str, int | str] = {}

    def close() -> None:
        if current:
            zones.append(
                Zone(
                    int(current["node"]),
                    str(current["name"]),
                    int(current.get("spanned", 0)),
                    int(current.get("present", 0)),
                    int(current.get("start_pfn", 0)),
                )
            )

    for line in text.splitlines():
        m = re.match(r"^Node (\d+), zone\s+(\S+)", line)
        if m:
            close()
            current = {"node": int(m.group(1)), "name": m.group(2)}
            continue
        m = re.match(r"^\s+(spanned|present)\s+(\d+)", line) or re.match(
            r"^\s+(start_pfn):\s+(\d+)", line
        )
        if m and current:
            current[m.group(1)] = int(m.group(2))
    close()
    return zones


def device_zone(zones: list[Zone]) -> Zone | None:
    return next((z for z in zones if z.name == "Device"), None)
