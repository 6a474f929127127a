"""Should scenarios restore a booted guest instead of booting it?  Measured, same run.

    python bench/snapshot.py [--arch x86_64,arm64] [--rounds 3]

Issue 16 asks to adopt snapshots only if they make a scenario at least 2x faster end to end.
For each arch this takes one collision scenario (its layout is booted several times: the main
boot plus one boot per poisoning phase) and measures, alternating, in the same run:

- end to end: `memharness run -j 1` of the scenario with ``--fresh-boots`` (every phase boots)
  and without it (the poison phases start from the main boot's saved setup, the default);
- per boot, with the identical QEMU argv and no harness around it:
  boot:    QEMU start → agent ready → the scenario's setup commands (module loads, the wait
           for the namespace) done: what every fresh boot of that layout pays;
  save:    `migrate` to ``exec:cat > FILE`` from that state (once per scenario);
  restore: QEMU with ``-incoming exec:cat FILE`` → first command answered (the agent is
           already past READY in the saved state, so the first reply is the ready signal).

The default was adopted because the end-to-end ratio passed issue 16's bar of 2x.
"""

import argparse
import json
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from boot import _sockdir  # noqa: E402  (the bare loop's own socket-dir finder)

SCENARIOS = {"x86_64": "legacy-lower-half", "arm64": "dt-after-mem-limit"}
TIMEOUT = 240.0


class BareGuest:
    """QEMU with a scenario's argv, our own sockets, and just enough protocol to time it."""

    def __init__(self, argv: list[str], workdir: Path, incoming: Path | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="mhs-"))
        old = _sockdir(argv)
        argv = [a.replace(old, str(self.dir)) for a in argv]
        argv = [_console_to(a, workdir / "console.log") for a in argv]
        if incoming is not None:
            argv += ["-incoming", f"exec:cat {shlex.quote(str(incoming))}"]
        self.listeners = []
        for name in ("qmp.sock", "port0.sock"):
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(self.dir / name))
            s.listen(1)
            s.settimeout(TIMEOUT)
            self.listeners.append(s)
        self.qemu = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "qemu.stderr").open("w"),
        )
        try:
            self.qmp, self.port = (listener.accept()[0] for listener in self.listeners)
        except BaseException:  # QEMU never connected (bad argv, a timeout): reap it
            self.qemu.kill()
            self.qemu.wait()
            raise
        for s in (self.qmp, self.port):
            s.settimeout(TIMEOUT)
        self.buf = b""
        self.next_id = 1
        self.qmp_buf = b""

    def wait_ready(self) -> None:
        while b"READY" not in self.buf:
            self._recv()

    def run(self, script: str) -> int:
        cid, self.next_id = self.next_id, self.next_id + 1
        payload = script.encode()
        self.port.sendall(b"R %d %d\n" % (cid, len(payload)) + payload)
        marker = b"X %d " % cid
        while marker not in self.buf:
            self._recv()
        tail = self.buf.split(marker, 1)[1]
        while b"\n" not in tail:
            self._recv()
            tail = self.buf.split(marker, 1)[1]
        return int(tail.split(b"\n", 1)[0].split()[0])

    def _recv(self) -> None:
        data = self.port.recv(65536)
        if not data:
            raise SystemExit("the guest closed its channel")
        self.buf += data

    def qmp_command(self, execute: str, **arguments: object) -> dict[str, object]:
        msg: dict[str, object] = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        self.qmp.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            while b"\n" not in self.qmp_buf:
                self.qmp_buf += self.qmp.recv(65536)
            line, self.qmp_buf = self.qmp_buf.split(b"\n", 1)
            reply = json.loads(line)
            if "return" in reply or "error" in reply:
                if "error" in reply:
                    raise SystemExit(f"QMP {execute}: {reply['error']}")
                return dict(reply)

    def save(self, path: Path) -> float:
        """Migrates to a file; returns seconds until QEMU reports it completed."""
        while b"\n" not in self.qmp_buf:
            self.qmp_buf += self.qmp.recv(65536)  # the greeting
        self.qmp_buf = self.qmp_buf.split(b"\n", 1)[1]
        self.qmp_command("qmp_capabilities")
        start = time.monotonic()
        self.qmp_command("migrate", uri=f"exec:cat > {shlex.quote(str(path))}")
        deadline = start + TIMEOUT
        while time.monotonic() < deadline:
            status = self.qmp_command("query-migrate")["return"]
            state = status.get("status") if isinstance(status, dict) else None
            if state == "completed":
                return time.monotonic() - start
            if state in ("failed", "cancelled"):
                raise SystemExit(f"migration {state}: {status}")
            time.sleep(0.02)
        raise SystemExit("migration did not complete")

    def close(self) -> None:
        self.qemu.kill()
        self.qemu.wait()
        for s in (*self.listeners, self.qmp, self.port):
            s.close()


def _console_to(arg: str, path: Path) -> str:
    return f"file,id=console,path={path}" if arg.startswith("file,id=console,") else arg


def scenario_run(
    arch: str, scenario: str, art: Path, fresh: bool
) -> tuple[float, int, list[str], list[str]]:
    """One `memharness run -j 1`: wall seconds, boots, the main boot's argv, setup commands."""
    argv = [sys.executable, "-m", "harness", "run", "--arch", arch, "--scenario", scenario]
    argv += ["-j", "1", "--artifacts", str(art), *(["--fresh-boots"] if fresh else [])]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{scenario} {arch}: exit {done.returncode}: {done.stderr[-500:]}")
    run_dir = next(art.glob(f"{scenario}-{arch}-*"))
    boots = len(list(run_dir.glob("**/qemu.argv")))
    qemu = shlex.split((run_dir / "qemu.argv").read_text())
    commands = [
        line.split("$ ", 1)[1]
        for line in (run_dir / "transcript.log").read_text().splitlines()
        if line.startswith("[mh.0] $ ")
    ]
    return wall, boots, qemu, commands[:2]  # module loads and the wait for the namespace


def boot_round(argv: list[str], setup: list[str], work: Path, save_to: Path | None) -> float:
    start = time.monotonic()
    guest = BareGuest(argv, work)
    try:
        guest.wait_ready()
        for script in setup:
            if guest.run(script) != 0:
                raise SystemExit(f"setup failed: {script}")
        elapsed = time.monotonic() - start
        if save_to is not None:
            elapsed = -guest.save(save_to)  # a negative return marks the save time
    finally:
        guest.close()
    return elapsed


def restore_round(argv: list[str], state: Path, work: Path) -> float:
    start = time.monotonic()
    guest = BareGuest(argv, work, incoming=state)
    try:
        if guest.run("true") != 0:
            raise SystemExit("restored guest: `true` failed")
        return time.monotonic() - start
    finally:
        guest.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="x86_64,arm64")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mh-bench-snap-"))
    print(
        f"{'arch':<7} {'scenario':<18} {'boots':>5} {'fresh':>7} {'restored':>8} {'ratio':>6}  "
        f"{'boot':>6} {'save':>6} {'restore':>7} {'ratio':>6}"
    )
    for arch in args.arch.split(","):
        scenario = SCENARIOS[arch]
        fresh_t, restored_t, boot_t, restore_t = [], [], [], []
        boots = 0
        for i in range(args.rounds):
            wall, boots, argv, setup = scenario_run(arch, scenario, work / f"{arch}-f{i}", True)
            fresh_t.append(wall)
            restored_t.append(scenario_run(arch, scenario, work / f"{arch}-r{i}", False)[0])
        state = work / f"{arch}.state"
        save = -boot_round(argv, setup, work / f"{arch}-save", state)
        for i in range(args.rounds):
            boot_t.append(boot_round(argv, setup, work / f"{arch}-boot{i}", None))
            restore_t.append(restore_round(argv, state, work / f"{arch}-restore{i}"))
        fresh, restored = statistics.median(fresh_t), statistics.median(restored_t)
        boot, restore = statistics.median(boot_t), statistics.median(restore_t)
        print(
            f"{arch:<7} {scenario:<18} {boots:>5} {fresh:>6.1f}s {restored:>7.1f}s "
            f"{fresh / restored:>5.2f}x  {boot:>5.2f}s {save:>5.2f}s {restore:>6.2f}s "
            f"{boot / restore:>5.2f}x   (state file {state.stat().st_size >> 20} MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
