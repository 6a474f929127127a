"""Device trees with extra nodes (arm64 pmem-region): dump the machine's own DTB, add, rebuild.

QEMU's virt machine generates its DTB at start; a pmem-region node has to be added to a copy
and passed back with -dtb.  The dump uses the same machine, CPU, SMP and memory options as the
real boot (they shape the tree), and the result is cached by those inputs and the nodes.
"""

from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.layout.planner import DtNode


def dtb_with_nodes(
    arch: ArchProfile, binary: str, machine_args: list[str], nodes: tuple[DtNode, ...]
) -> Path:
    """A DTB for ``machine_args`` (-machine/-cpu/-smp/-m ...) with ``nodes`` added at /."""
    key = digest("dtb", arch.name, binary, machine_args, [n.dts() for n in nodes])[:32]

    def build(tmp: Path) -> None:
        dumped, source = tmp / "machine.dtb", tmp / "machine.dts"
        argv = list(machine_args)
        i = argv.index("-machine") + 1
        argv[i] = f"{argv[i]},dumpdtb={dumped}"
        proc.run(
            [binary, *argv, "-nodefaults", "-display", "none"],
            timeout=60,
            what="QEMU (dumping the machine's device tree)",
        )
        dtc = proc.require_tool("dtc", "device-tree-compiler")
        text = proc.run(
            [dtc, "-q", "-I", "dtb", "-O", "dts", str(dumped)], timeout=60
        ).stdout.decode()
        source.write_text(add_nodes(text, nodes))
        proc.run(
            [dtc, "-q", "-I", "dts", "-O", "dtb", "-o", str(tmp / "guest.dtb"), str(source)],
            timeout=60,
            what="dtc",
        )

    return build_once("dtb", key, build) / "guest.dtb"


def add_nodes(dts: str, nodes: tuple[DtNode, ...]) -> str:
    """Inserts ``nodes`` as children of the root node (before its closing brace)."""
    end = dts.rstrip().rfind("};")
    if end < 0:
        raise ValueError("not a device-tree source: no closing '};'")
    return dts[:end] + "".join(n.dts() for n in nodes) + dts[end:]
