"""The serial console as a shell, for a guest that runs no memharness agent (``--image PATH``).

QEMU connects the guest's UART to a unix socket memharness listens on and writes everything
the guest prints to console.log itself (the chardev's ``logfile=``), so the console record is
as complete as for any guest and the splat parser follows it unchanged.  A UART nobody reads
stalls the guest (printk waits for the port), so a pump thread reads the socket all the time
into a queue; pexpect runs over that queue (``ConsoleSpawn``, the way pexpect's own
PopenSpawn runs over a pipe), never over the socket, so a slow expect can never block the
guest.

After the login (getty's ``login:``, a password if one is set, the shell's prompt) the
terminal's echo is turned off and a non-interactive ``sh`` reads commands from it (its stdout
a pipe and its stderr /dev/null, which every shell takes as non-interactive): no prompt, no
line editor, no completion on a tab.  Each command is written to a file through a
here-document and run as ``sh FILE`` with stdin from /dev/null (so it cannot swallow the next
command) between two markers; the end marker carries the exit status.  A serial line has one
stream: stdout and stderr arrive merged, as stdout.  Kernel messages that land inside a
command's output (the console's loglevel lets only warnings and worse through) are taken out
of it again by their line ending (see KERNEL_LINE); they are in console.log, where the splat
parser reads them.  One that starts in the middle of a command's line stays in it.
"""

import contextlib
import os
import queue
import re
import secrets
import select
import socket
import sys
import termios
import threading
import time
import tty
from typing import TYPE_CHECKING, Any, TextIO

import pexpect
from pexpect.spawnbase import SpawnBase

from harness.errors import InfraError, UserError
from harness.vm.channel import AbortHook, CommandResult

LOGIN = re.compile(rb"login: *$", re.MULTILINE)
PASSWORD = re.compile(rb"[Pp]assword: *$")
# A prompt's last character, then maybe the terminal queries a line editor sends (busybox
# ash asks for the cursor position, ESC [ 6 n, and goes on without an answer).
PROMPT = re.compile(rb"[#$%>] *(?:\x1b\[[0-9;?]*[A-Za-z])*$")
INCORRECT = re.compile(rb"Login incorrect|Authentication failure|incorrect password", re.I)
REFUSED = re.compile(rb"memharness: user image refused: ([^\r\n]*)\r?\n")
# A kernel message: the serial driver ends its lines with CR LF, while a command's lines end
# with LF alone (the tty's onlcr is off), so a command's own "[  1.0] ..." lines (dmesg) stay.
KERNEL_LINE = re.compile(rb"^\[ *\d+\.\d+\] [^\r\n]*\r\n", re.MULTILINE)
MAX_LINE = 4000  # a tty in canonical mode keeps 4095 bytes of a line; the rest is lost
SLICE = 1.0  # how often a wait looks at the guest's life
ESCAPE = b"\x1d"  # Ctrl-]: leaves an interactive session, as in telnet and virsh console


def echo_marker(marker: str) -> str:
    """A shell command that prints ``marker`` without containing it: until ``stty -echo``
    takes effect the tty echoes what is typed, and the echo must not pass for the output."""
    return f'echo "{marker[:4]}""{marker[4:]}"'


class ConsoleLink:
    """The console socket: a thread that always reads, a queue of what it read, and send."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.received: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, name="console-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.received.put(None)
                return
            self.received.put(data)

    def send(self, data: bytes, timeout: float) -> None:
        """Sends all of ``data`` or raises TimeoutError (the guest stopped reading its UART)."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the guest's console stopped taking input")
            _, writable, _ = select.select([], [self._sock], [], min(left, SLICE))
            if writable:
                sent = self._sock.send(view)
                view = view[sent:]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(2.0)


if TYPE_CHECKING:
    _SpawnBytes = SpawnBase[bytes]
else:
    _SpawnBytes = SpawnBase


class ConsoleSpawn(_SpawnBytes):
    """pexpect over a ``ConsoleLink``'s queue (bytes in, bytes out)."""

    def __init__(self, link: ConsoleLink, timeout: float = 30.0) -> None:
        super().__init__(timeout=timeout, maxread=65536, encoding=None)
        self.link = link
        self._eof = False

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> bytes:
        if self._eof:
            self.flag_eof = True
            raise pexpect.EOF("the console closed (QEMU exited)")
        if timeout == -1:
            timeout = self.timeout
        try:
            data = self.link.received.get(timeout=timeout)
        except queue.Empty:
            raise pexpect.TIMEOUT("no console output") from None
        if data is None:
            self._eof = True
            self.flag_eof = True
            raise pexpect.EOF("the console closed (QEMU exited)")
        return data

    def send(self, s: bytes | str) -> int:
        data = s.encode() if isinstance(s, str) else s
        self.link.send(data, self.timeout or 30.0)
        return len(data)


def _wait(spawn: ConsoleSpawn, patterns: list[Any], timeout: float, abort: AbortHook | None) -> int:
    """Index of the pattern that matched; TimeoutError at the deadline; ConsoleGone (an
    ``InfraError``) when ``abort`` says the guest is gone."""
    deadline = time.monotonic() + timeout
    wanted = [*patterns, pexpect.TIMEOUT, pexpect.EOF]
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        index = int(spawn.expect(wanted, timeout=min(left, SLICE)))
        if index < len(patterns):
            return index
        why = abort() if abort else None
        if index == len(patterns) + 1:
            why = why or "the console closed"
        if why:
            raise ConsoleGone(why)


def _matched(spawn: ConsoleSpawn) -> "re.Match[bytes]":
    match = spawn.match
    assert isinstance(match, re.Match), match
    return match


class ConsoleGone(InfraError):
    """The guest went away (QEMU exited, the kernel panicked) while the console was waited on."""


class ConsoleShell:
    """Login on the serial console, then commands with exit status through markers."""

    def __init__(self, sock: socket.socket, transcript: TextIO) -> None:
        self.link = ConsoleLink(sock)
        self.spawn = ConsoleSpawn(self.link)
        self._transcript = transcript
        self._token = secrets.token_hex(6)
        self._serial = 0
        self.logged_in = False

    def login(
        self, user: str, password: str, timeout: float, abort: AbortHook | None = None
    ) -> None:
        """Waits for getty's prompt and logs in; returns when a command shell reads the
        console.  A refused login or image is a ``UserError`` naming the fix."""
        deadline = time.monotonic() + timeout
        prompts = [LOGIN, REFUSED]
        nudged = False
        while True:
            try:
                index = _wait(self.spawn, prompts, min(5.0, deadline - time.monotonic()), abort)
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                if not nudged:  # a getty that printed its prompt before we were there
                    self.spawn.send(b"\n")
                    nudged = True
        if index == 1:
            reason = _matched(self.spawn).group(1).decode(errors="replace")
            raise UserError(f"the image was refused at boot: {reason}")
        self._note(f"# console login as {user}")
        self.spawn.send(user.encode() + b"\n")
        left = max(1.0, deadline - time.monotonic())
        index = _wait(self.spawn, [PASSWORD, PROMPT, INCORRECT, LOGIN], left, abort)
        if index == 0:
            self.spawn.send(password.encode() + b"\n")
            left = max(1.0, deadline - time.monotonic())
            index = _wait(self.spawn, [PASSWORD, PROMPT, INCORRECT, LOGIN], left, abort)
        if index != 1:  # asked again, told so, or back at login: the account was refused
            raise UserError(
                f"the console login as {user!r} was refused: set MEMHARNESS_IMAGE_LOGIN and "
                "MEMHARNESS_IMAGE_PASSWORD to an account of the image"
            )
        self._enter_command_mode(max(1.0, deadline - time.monotonic()), abort)
        self.logged_in = True

    def _enter_command_mode(self, timeout: float, abort: AbortHook | None) -> None:
        ready = f"MH_READY_{self._token}"
        self.spawn.send(
            f'stty -echo -onlcr 2>/dev/null; export PATH="$PATH:/run/memharness/bin"; '
            f"sh -s 2>/dev/null | cat\n{echo_marker(ready)}\n".encode()
        )
        _wait(self.spawn, [re.compile(re.escape(ready.encode()) + rb"\r?\n")], timeout, abort)

    def leave_command_mode(self, timeout: float = 10.0, abort: AbortHook | None = None) -> None:
        """Back to the login shell, echo on: for handing the console to a person."""
        self.spawn.send(b"exit\nstty echo onlcr 2>/dev/null\n")
        with contextlib.suppress(TimeoutError):
            _wait(self.spawn, [PROMPT], timeout, abort)

    def run(
        self, script: str, timeout: float, abort: AbortHook | None = None, stdin: bytes = b""
    ) -> CommandResult:
        """Runs ``script`` with sh; its exit status from the end marker."""
        started = time.monotonic()
        if stdin:
            raise InfraError("a command's stdin cannot go over the serial console")
        data = script.encode(errors="surrogateescape")
        too_long = [ln for ln in data.split(b"\n") if len(ln) > MAX_LINE]
        if too_long or any((c < 0x20 and c not in (0x09, 0x0A)) or c == 0x7F for c in data):
            raise InfraError(
                "command cannot be typed into the serial console (a line over "
                f"{MAX_LINE} bytes, or control characters or DEL, which the tty would act "
                f"on): {script[:80]!r}"
            )
        self._serial += 1
        begin = f"MH_BEGIN_{self._token}_{self._serial}"
        end = f"MH_END_{self._token}_{self._serial}"
        eof = f"MH_EOF_{self._token}"
        name = f"/tmp/.mh-cmd-{self._token}"
        self._note(f"$ {script}")
        typed = (
            f"cat > {name} <<'{eof}'\n".encode()
            + data
            + (b"" if data.endswith(b"\n") else b"\n")
            + f"{eof}\n".encode()
            + f'{echo_marker(begin)}; sh {name} </dev/null 2>&1; {echo_marker(end)} "$?"\n'.encode()
        )
        try:
            self.spawn.send(typed)
            _wait(self.spawn, [re.compile(re.escape(begin.encode()) + rb"\r?\n")], timeout, abort)
            left = max(0.1, timeout - (time.monotonic() - started))
            _wait(self.spawn, [re.compile(re.escape(end.encode()) + rb" (\d+)\r?\n")], left, abort)
        except TimeoutError:
            output = self._clean(self.spawn.before or b"")
            return CommandResult(
                script, None, 0, output, b"", time.monotonic() - started, timed_out=True
            )
        except ConsoleGone as gone:
            output = self._clean(self.spawn.before or b"")
            return CommandResult(
                script, None, 0, output, b"", time.monotonic() - started, stopped_by=str(gone)
            )
        status = int(_matched(self.spawn).group(1))
        output = self._clean(self.spawn.before or b"")
        self._note(f"# exit {status}, {len(output)} bytes")
        return CommandResult(script, status, 0, output, b"", time.monotonic() - started)

    @staticmethod
    def _clean(output: bytes) -> bytes:
        """The command's output without the tty's carriage returns or kernel messages."""
        return KERNEL_LINE.sub(b"", output).replace(b"\r\n", b"\n")

    def _note(self, line: str) -> None:
        self._transcript.write(line + "\n")
        self._transcript.flush()

    def interact(self, abort: AbortHook) -> int:
        """The console to this terminal until Ctrl-] (or the guest's end); returns 0."""
        self.spawn.send(b"\n")
        stdin = sys.stdin.fileno()
        saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
        try:
            if saved is not None:
                tty.setraw(stdin)
            while abort() is None:
                self._forward_output()
                ready, _, _ = select.select([stdin], [], [], 0.05)
                if ready:
                    data = os.read(stdin, 1024)
                    if not data or ESCAPE in data:
                        self.link.send(data.split(ESCAPE, 1)[0], 5.0)
                        break
                    self.link.send(data, 5.0)
            self._forward_output()
        finally:
            if saved is not None:
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        return 0

    def _forward_output(self) -> None:
        pending = bytes(self.spawn.buffer)
        self.spawn.buffer = b""
        while True:
            try:
                data = self.link.received.get_nowait()
            except queue.Empty:
                break
            if data is None:
                break
            pending += data
        if pending:
            os.write(sys.stdout.fileno(), pending)

    def close(self) -> None:
        self.link.close()
