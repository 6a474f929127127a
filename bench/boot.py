"""Boot-to-first-command through memharness vs bare QEMU with the same argv, same run.

    python bench/boot.py [--arch x86_64,arm64] [--rounds 5] [--commands 200]

For each arch: memharness (kernel + image from the cache, QEMU spawn, QMP, boot, agent ready,
one `true`) against a bare loop that starts QEMU with the identical argv and does only what the
argv requires (accept the sockets, wait for the agent, run `true`).  Rounds alternate so both
see the same machine load; the report gives medians and the ratio (target: <= 1.10).  Also:
median latency of a guest command (target: <= 10 ms) and the cost of a second, cached
preparation (target: offline, no rebuild).
"""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.arch import parse_arches  # noqa: E402
from harness.session import prepare  # noqa: E402
from harness.vm.machine import VM, VMOptions  # noqa: E402


def memharness_round(arch_name: str, workdir: Path) -> tuple[float, list[str]]:
    start = time.monotonic()
    kernel, image = prepare(parse_arches(arch_name)[0], None)
    with VM(kernel, image, workdir, VMOptions()) as vm:
        if not vm.ready or vm.run("true").exit_code != 0:
            raise SystemExit(f"memharness boot failed: {vm.facts()}")
        elapsed = time.monotonic() - start
        argv = list(vm.argv)
    return elapsed, argv


def bare_round(argv: list[str]) -> float:
    """Same argv; only the sockets it names, the agent's READY and one command."""
    start = time.monotonic()
    sockdir = Path(tempfile.mkdtemp(prefix="mhb-"))
    argv = [a.replace(_sockdir(argv), str(sockdir)) for a in argv]
    listeners: list[socket.socket] = []
    conns: list[socket.socket] = []
    for name in ("qmp.sock", "port0.sock"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(sockdir / name))
        s.listen(1)
        listeners.append(s)
    qemu = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        conns = [listener.accept()[0] for listener in listeners]  # QMP, then the port
        port = conns[1]
        port.settimeout(120)
        buf = b""
        while b"READY" not in buf:
            buf += port.recv(4096)
        port.sendall(b"R 1 4\ntrue")
        while b"X 1 " not in buf:
            buf += port.recv(4096)
        elapsed = time.monotonic() - start
    finally:
        qemu.kill()
        qemu.wait()
        for s in listeners + conns:
            s.close()
    return elapsed


def _sockdir(argv: list[str]) -> str:
    qmp = next(a for a in argv if a.startswith("socket,id=qmp,path="))
    return str(Path(qmp.split("path=", 1)[1]).parent)


def command_latency(arch_name: str, workdir: Path, count: int) -> float:
    kernel, image = prepare(parse_arches(arch_name)[0], None)
    with VM(kernel, image, workdir, VMOptions()) as vm:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            vm.run("true")
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def cached_prepare_seconds(arch_name: str) -> float:
    arch = parse_arches(arch_name)[0]
    prepare(arch, None)
    t = time.perf_counter()
    prepare(arch, None)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64,arm64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--commands", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-"))
    print(
        f"{'arch':<8} {'memharness':>11} {'bare QEMU':>10} {'ratio':>6} "
        f"{'cmd (ms)':>9} {'2nd prepare (ms)':>17}"
    )
    for arch in [a.name for a in parse_arches(args.arch)]:
        mh, bare = [], []
        for i in range(args.rounds):
            t, argv = memharness_round(arch, work / f"{arch}-{i}")
            mh.append(t)
            bare.append(bare_round(argv))
        latency = command_latency(arch, work / f"{arch}-cmd", args.commands)
        ratio = statistics.median(mh) / statistics.median(bare)
        print(
            f"{arch:<8} {statistics.median(mh):>10.2f}s {statistics.median(bare):>9.2f}s "
            f"{ratio:>6.2f} {latency * 1000:>9.1f} {cached_prepare_seconds(arch) * 1000:>17.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
