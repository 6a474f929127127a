"""Host side of the guest command channel (the mh-agent protocol over virtio-serial).

One ``Channel`` per virtio-serial port; one command at a time per port (open more ports for
parallel sessions).  Every wait has a deadline and an abort hook, and the socket's EOF tells us
at once when QEMU is gone, so a dead or hung guest never blocks a run.
"""

import contextlib
import select
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harness.errors import InfraError

PROTO_VERSION = 1
SIGKILL = 9
POLL_SLICE = 0.2  # how often a blocked read re-checks the abort hook


class ChannelClosed(Exception):
    """The guest side went away (QEMU exited or the agent died)."""


class Aborted(Exception):
    """The abort hook asked to stop waiting (e.g. a fatal splat on the console)."""


class Listener:
    """A unix socket QEMU connects to as a client."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)

    def accept(self, timeout: float, alive: Callable[[], bool]) -> socket.socket:
        """Waits for QEMU to connect, giving up if it dies or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                conn, _ = self.sock.accept()
                return conn
            if not alive():
                raise ChannelClosed(f"QEMU exited before connecting to {self.path.name}")
        raise InfraError(f"QEMU did not connect to {self.path.name} within {timeout:.0f} s")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class CommandResult:
    command: str
    exit_code: int | None  # None when the command never finished
    signal: int
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool = False
    stopped_by: str | None = None  # why waiting stopped early (VM exited, splat, ...)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


AbortHook = Callable[[], str | None]


def argv_script(argv: Sequence[str]) -> str:
    """The guest shell line that runs exactly ``argv`` (what exec would get on the host): each
    argument single-quoted, so spaces, quotes, $, backslashes and non-ASCII bytes arrive
    unchanged.  Non-UTF-8 host arguments (surrogate-escaped by Python) survive too, because
    ``Channel.run`` encodes with surrogateescape."""
    if not argv:
        raise ValueError("an argument vector needs at least the program")
    return shlex.join(argv)


def _never() -> str | None:
    return None


TRANSCRIPT_KEEP = 32 * 1024  # bytes of each command's output the transcript keeps at each end


def _clip(data: bytes, keep: int = TRANSCRIPT_KEEP) -> str:
    """Output for the transcript: whole when short, else its head and tail around a note (a
    10 MB output must not make a 10 MB transcript; the command's caller has all of it)."""
    if len(data) > 2 * keep:
        dropped = len(data) - 2 * keep
        data = (
            data[:keep] + b"\n[... %d bytes not in the transcript ...]\n" % dropped + data[-keep:]
        )
    return data.decode(errors="replace")


class Channel:
    """Frames over one connected virtio-serial socket."""

    def __init__(self, sock: socket.socket, name: str, transcript: TextIO | None = None) -> None:
        self.sock = sock
        self.name = name
        self.transcript = transcript
        self._buf = bytearray()
        self._next_id = 1

    # -- framing -------------------------------------------------------------------------
    def _fill(self, deadline: float, abort: AbortHook) -> None:
        while True:
            reason = abort()
            if reason:
                raise Aborted(reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.sock], [], [], min(POLL_SLICE, remaining))
            if ready:
                try:
                    data = self.sock.recv(1 << 16)
                except OSError as exc:
                    raise ChannelClosed(str(exc)) from None
                if not data:
                    raise ChannelClosed("the guest channel closed")
                self._buf += data
                return

    def _read_line(self, deadline: float, abort: AbortHook) -> str:
        while (pos := self._buf.find(b"\n")) < 0:
            self._fill(deadline, abort)
        line = bytes(self._buf[:pos]).decode(errors="replace")
        del self._buf[: pos + 1]
        return line

    def _read_exact(self, n: int, deadline: float, abort: AbortHook) -> bytes:
        while len(self._buf) < n:
            self._fill(deadline, abort)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def _log(self, text: str) -> None:
        """Appends to the transcript; a full disk costs the transcript, never the run."""
        if self.transcript is not None:
            try:
                self.transcript.write(text)
                self.transcript.flush()
            except OSError:
                self.transcript = None

    # -- protocol ------------------------------------------------------------------------
    def wait_ready(self, timeout: float, abort: AbortHook = _never) -> None:
        """Blocks until the agent announces itself (the guest finished booting)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._read_line(deadline, abort)
            fields = line.split()
            if fields[:1] == ["READY"]:
                if len(fields) < 2 or fields[1] != str(PROTO_VERSION):
                    raise InfraError(f"guest agent speaks protocol {fields[1:2]}, expected 1")
                return

    def resume(self, timeout: float, abort: AbortHook = _never) -> None:
        """For a guest restored from a saved state, which announced itself before the save:
        blocks until its agent answers a no-op."""
        result = self.run("true", timeout, abort)
        if result.timed_out:
            raise TimeoutError
        if result.stopped_by:
            raise ChannelClosed(result.stopped_by)
        if result.exit_code != 0:
            raise InfraError(f"restored guest agent answered `true` with {result.exit_code}")

    def run(self, script: str, timeout: float, abort: AbortHook = _never) -> CommandResult:
        """Runs ``script`` with /bin/sh -c in the guest; never raises for guest trouble."""
        cid = self._next_id
        self._next_id += 1
        payload = script.encode("utf-8", "surrogateescape")
        start = time.monotonic()
        self._log(f"[{self.name}] $ {script}\n")
        out, err = bytearray(), bytearray()
        result = CommandResult(script, None, 0, b"", b"", 0.0)
        try:
            self._send(b"R %d %d\n" % (cid, len(payload)) + payload)
            code, sig = self._collect(cid, out, err, start + timeout, abort)
            result.exit_code, result.signal = code, sig
        except TimeoutError:
            result.timed_out = True
            self._kill(cid, out, err, abort)
        except (ChannelClosed, Aborted) as exc:
            result.stopped_by = str(exc)
        result.stdout, result.stderr = bytes(out), bytes(err)
        result.seconds = time.monotonic() - start
        self._log_result(result)
        return result

    def _collect(
        self, cid: int, out: bytearray, err: bytearray, deadline: float, abort: AbortHook
    ) -> tuple[int, int]:
        while True:
            fields = self._read_line(deadline, abort).split()
            if len(fields) < 3 or not fields[1].isdigit() or int(fields[1]) != cid:
                continue  # stale frame of an earlier, abandoned command
            if fields[0] in ("O", "E"):
                chunk = self._read_exact(int(fields[2]), deadline, abort)
                (out if fields[0] == "O" else err).extend(chunk)
            elif fields[0] == "X":
                return int(fields[2]), int(fields[3]) if len(fields) > 3 else 0

    def _kill(self, cid: int, out: bytearray, err: bytearray, abort: AbortHook) -> None:
        """After a timeout: SIGKILL the command's process group, wait briefly for its exit."""
        try:
            self._send(b"K %d %d\n" % (cid, SIGKILL))
            self._collect(cid, out, err, time.monotonic() + 2.0, abort)
        except (TimeoutError, ChannelClosed, Aborted):
            pass

    def _log_result(self, r: CommandResult) -> None:
        if r.stdout:
            self._log(_clip(r.stdout).rstrip("\n") + "\n")
        if r.stderr:
            self._log("[stderr] " + _clip(r.stderr).rstrip("\n") + "\n")
        if r.timed_out:
            status = "TIMED OUT"
        elif r.stopped_by:
            status = f"STOPPED: {r.stopped_by}"
        else:
            status = f"exit {r.exit_code}" + (f" (signal {r.signal})" if r.signal else "")
        self._log(f"[{self.name}] [{status}, {r.seconds:.3f} s]\n")

    def put(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 60.0) -> None:
        """Writes a file in the guest."""
        cid = self._next_id
        self._next_id += 1
        encoded = path.encode()
        self._send(b"W %d %o %d %d\n" % (cid, mode, len(encoded), len(data)) + encoded + data)
        code, _ = self._collect(cid, bytearray(), bytearray(), time.monotonic() + timeout, _never)
        self._log(f"[{self.name}] put {path} ({len(data)} bytes): errno {code}\n")
        if code:
            raise InfraError(f"writing {path} in the guest failed: errno {code}")

    def get(self, path: str, timeout: float = 60.0) -> bytes:
        """Reads a file from the guest."""
        cid = self._next_id
        self._next_id += 1
        encoded = path.encode()
        self._send(b"G %d %d\n" % (cid, len(encoded)) + encoded)
        out = bytearray()
        code, _ = self._collect(cid, out, bytearray(), time.monotonic() + timeout, _never)
        if code:
            raise InfraError(f"reading {path} in the guest failed: errno {code}")
        return bytes(out)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
