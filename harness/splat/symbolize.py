"""Stack decoding: `func+0x1c/0x3a0` → `mm/memory-failure.c:1234` with a vmlinux that has
debug info (`memharness kernel build --fragment debug-info ...`).

The symbol table (`nm -n`) gives each function's address; addr2line turns address + offset
into file:line, inlined callers included.  A vmlinux without DWARF still yields addresses and
says so instead of inventing locations.
"""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.errors import UserError
from harness.splat.model import Splat

_FRAME = re.compile(r"(?P<func>[A-Za-z_$][\w.$]*)\+(?P<off>0x[0-9a-f]+)/0x[0-9a-f]+")


@dataclass(frozen=True)
class Location:
    frame: str  # as printed: func+0x1c/0x3a0
    address: int
    where: tuple[str, ...]  # file:line of the frame, then of each inlined caller; () unknown

    def to_json(self) -> dict[str, object]:
        return {"frame": self.frame, "address": f"{self.address:#x}", "where": list(self.where)}


def _tool(arch: ArchProfile, name: str) -> str:
    for candidate in (f"{arch.cross_compile}{name}", name):
        found = shutil.which(candidate)
        if found:
            return found
    raise UserError(
        f"{arch.cross_compile}{name} not found: install binutils"
        f"{'-' + arch.gnu_triplet if arch.cross_compile else ''}"
    )


def symbol_table(vmlinux: Path, arch: ArchProfile) -> dict[str, int]:
    out = proc.run([_tool(arch, "nm"), "-n", str(vmlinux)], timeout=300, what="nm").stdout
    table: dict[str, int] = {}
    for line in out.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            table.setdefault(parts[2], int(parts[0], 16))
    return table


def decode(splats: list[Splat], vmlinux: Path, arch: ArchProfile) -> dict[str, list[Location]]:
    """{splat title: the locations of its frames, innermost first}."""
    if not vmlinux.is_file():
        raise UserError(f"{vmlinux} does not exist: pass --vmlinux the build's vmlinux")
    table = symbol_table(vmlinux, arch)
    wanted: list[tuple[str, str, int]] = []
    for splat in splats:
        for m in _FRAME.finditer(splat.text):
            base = table.get(m.group("func"))
            if base is not None:
                wanted.append((splat.title, m.group(0), base + int(m.group("off"), 16)))
    result: dict[str, list[Location]] = {s.title: [] for s in splats}
    if not wanted:
        return result
    # The return address points after the call: step back one byte to land on the call.
    addresses = [f"{max(addr - 1, 0):#x}" for _, _, addr in wanted]
    out = proc.run(
        [_tool(arch, "addr2line"), "-e", str(vmlinux), "-i", "-a", *addresses],
        timeout=600,
        what="addr2line",
    ).stdout.decode(errors="replace")
    blocks = re.split(r"^0x[0-9a-f]+\n", out, flags=re.M)[1:]
    for (title, frame, address), block in zip(wanted, blocks, strict=False):
        where = tuple(
            ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("??")
        )
        result[title].append(Location(frame, address, where))
    return result
