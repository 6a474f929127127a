"""SSH to a guest booted on the Debian image (paramiko, over QEMU's user-mode port forward).

The agent channel stays the scenarios' channel; SSH is for what wants a real login: the mm
selftests (exec with exit status and separate streams, SFTP for the binaries), several sessions
at once (one transport, one channel per command, any thread), ``memharness shell``.

Trust is exact both ways: the image's own client key logs in, and the guest must present the
host key generated with the image (anything else is refused, never auto-added).  Every wait has
a deadline and re-checks an abort hook, so a guest that dies or panics mid-command ends the wait
at once; a failure to connect is an ``InfraError``, never a hang.
"""

import base64
import logging
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import paramiko

from harness.errors import InfraError
from harness.vm.channel import AbortHook, CommandResult

# paramiko logs a traceback for every refused attempt while sshd is still starting (expected:
# connect retries them) to stderr; every real failure reaches the user as our own one line.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
POLL_SLICE = 0.1
CONNECT_ATTEMPT = 5.0  # seconds for one TCP+SSH handshake try
SIGNAL_EXIT = 128  # a shell's exit status for "killed by signal N" is 128 + N


class _ExpectedHostKey(paramiko.MissingHostKeyPolicy):
    """Accepts exactly the image's host key (the guest has a fresh port every boot, so a
    known_hosts entry by name would be wrong or shared)."""

    def __init__(self, expected: paramiko.PKey) -> None:
        self.expected = expected

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if key.get_name() != self.expected.get_name() or key.asbytes() != self.expected.asbytes():
            raise paramiko.SSHException(
                f"the guest presented host key {key.get_name()} {key.get_base64()[:16]}..., not "
                "the Debian image's: is another program on that port?"
            )


def parse_public_key(text: str) -> paramiko.PKey:
    """'ssh-ed25519 AAAA... [comment]' → the key (only the types our images generate)."""
    kind, blob = text.split()[:2]
    if kind != "ssh-ed25519":
        raise InfraError(f"unsupported image host key type {kind}")
    return paramiko.Ed25519Key(data=base64.b64decode(blob))


class SSHChannel:
    def __init__(
        self,
        port: int,
        client_key: Path,
        host_key: str,
        transcript: TextIO | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.client_key = client_key
        self.host_key = parse_public_key(host_key)
        self.transcript = transcript
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._idle: list[_ResidentShell] = []  # resident shells no command is using

    # -- connection ---------------------------------------------------------------------------
    def connect(self, timeout: float, abort: AbortHook) -> float:
        """Logs in, retrying while sshd comes up; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            reason = abort()
            if reason:
                raise InfraError(f"SSH to the guest: {reason} before sshd answered")
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(_ExpectedHostKey(self.host_key))
            try:
                client.connect(
                    self.host,
                    self.port,
                    username="root",
                    key_filename=str(self.client_key),
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=CONNECT_ATTEMPT,
                    banner_timeout=CONNECT_ATTEMPT,
                    auth_timeout=CONNECT_ATTEMPT,
                )
            except (OSError, EOFError, paramiko.SSHException) as exc:
                client.close()
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
                    raise InfraError(f"SSH to the guest refused: {last}") from exc
                time.sleep(0.2)
                continue
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(5)
            # Small request/reply packets: without this Nagle and delayed ACKs add ~40 ms to
            # every channel open (measured: 46 ms → 3 ms under TCG).
            if isinstance(transport.sock, socket.socket):
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            return time.monotonic() - start
        raise InfraError(f"sshd in the guest did not answer within {timeout:.0f} s ({last})")

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise InfraError("SSH is not connected")
        return self._client

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for shell in idle:
            shell.close()
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- use ----------------------------------------------------------------------------------
    def run(
        self, command: str, timeout: float, abort: AbortHook, stdin: bytes = b""
    ) -> CommandResult:
        """Runs ``command`` (a guest shell line); safe from many threads at once.

        Without ``stdin`` it goes to an idle resident shell (one per concurrent caller, kept
        open): sshd's fork, session set-up and a shell's exec cost 110-170 ms per command under
        TCG, a subshell in a running shell a few.  With ``stdin`` it gets its own session, as
        the shell's stdin is its command stream.  Output is drained as it comes, so a chatty
        command cannot stall on a full window; a timeout or abort closes the session."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            return CommandResult(command, None, 0, b"", b"", 0.0, stopped_by="SSH is disconnected")
        start = time.monotonic()
        try:
            if stdin:
                outcome = self._exec_session(transport, command, stdin, start + timeout, abort)
            else:
                outcome = self._in_resident_shell(transport, command, start + timeout, abort)
        except (_Deadline, TimeoutError):  # sshd did not take the command, or its stdin, in time
            outcome = _Outcome(None, b"", b"", timed_out=True)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            outcome = _Outcome(None, b"", b"", stopped_by=f"SSH failed: {exc}")
        code, signal = outcome.code, 0
        if code is not None and code > SIGNAL_EXIT:
            signal = code - SIGNAL_EXIT
        result = CommandResult(
            command,
            code,
            signal,
            outcome.out,
            outcome.err,
            time.monotonic() - start,
            outcome.timed_out,
            outcome.stopped_by,
        )
        self._log(result)
        return result

    def _in_resident_shell(
        self, transport: paramiko.Transport, command: str, deadline: float, abort: AbortHook
    ) -> "_Outcome":
        with self._lock:
            shell = self._idle.pop() if self._idle else None
        if shell is None or shell.closed:
            shell = _ResidentShell(transport, deadline)
        outcome = shell.run(command, deadline, abort)
        if outcome.code is not None and not shell.closed:
            with self._lock:
                self._idle.append(shell)
        else:
            shell.close()  # a timed-out or aborted command may still run there: never reuse
        return outcome

    def _exec_session(
        self,
        transport: paramiko.Transport,
        command: str,
        stdin: bytes,
        deadline: float,
        abort: AbortHook,
    ) -> "_Outcome":
        chan = transport.open_session(timeout=CONNECT_ATTEMPT)
        out, err = bytearray(), bytearray()
        try:
            _exec_by(chan, command, deadline)
            chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                _drain(chan, out, err)
                # The exit status may come before the last output: EOF says there is no more.
                done = chan.exit_status_ready()
                if (
                    done
                    and chan.eof_received
                    and not (chan.recv_ready() or chan.recv_stderr_ready())
                ):
                    status = chan.recv_exit_status()
                    return _Outcome(status if status >= 0 else None, bytes(out), bytes(err))
                ended = chan.closed and not chan.exit_status_ready()
                stopped = _stop_reason(deadline, abort, ended)
                if stopped is not None:
                    return _Outcome(None, bytes(out), bytes(err), *stopped)
                if done:
                    time.sleep(0.001)  # the status event stays set: wait for EOF without a spin
                else:
                    chan.status_event.wait(POLL_SLICE)
        finally:
            chan.close()

    def upload(self, local: Path, remote: str, mode: int = 0o755) -> None:
        with self._sftp() as sftp:
            sftp.put(str(local), remote)
            sftp.chmod(remote, mode)

    def download(self, remote: str, local: Path) -> None:
        with self._sftp() as sftp:
            sftp.get(remote, str(local))

    def _sftp(self) -> paramiko.SFTPClient:
        try:
            sftp = self.client.open_sftp()
        except (OSError, paramiko.SSHException) as exc:
            raise InfraError(f"SFTP to the guest failed: {exc}") from exc
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(120.0)
        return sftp

    def _log(self, result: CommandResult) -> None:
        if self.transcript is None:
            return
        with self._lock:
            self.transcript.write(
                f"[ssh] $ {result.command}\n[ssh] exit={result.exit_code} "
                f"seconds={result.seconds:.3f} stdout={len(result.stdout)}B "
                f"stderr={len(result.stderr)}B"
                + (f" stopped_by={result.stopped_by}" if result.stopped_by else "")
                + (" timed_out" if result.timed_out else "")
                + "\n"
            )
            self.transcript.flush()


@dataclass(frozen=True)
class _Outcome:
    code: int | None  # the exit status; None when the command did not finish
    out: bytes
    err: bytes
    timed_out: bool = False
    stopped_by: str | None = None


class _Deadline(Exception):
    """The command's deadline passed before sshd accepted it."""


def _exec_by(chan: paramiko.Channel, command: str, deadline: float) -> None:
    """``exec_command`` within the deadline: paramiko waits for sshd's reply with no timeout
    of its own, so a watchdog closes the channel at the deadline, which ends that wait.  The
    channel's timeout then bounds what we send (stdin) by the same deadline."""
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), chan.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        chan.exec_command(command)
    except paramiko.SSHException:
        if time.monotonic() >= deadline:
            raise _Deadline from None
        raise
    finally:
        watchdog.cancel()
    chan.settimeout(max(0.001, deadline - time.monotonic()))


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_ready():
        out += chan.recv(1 << 16)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(1 << 16)


def _stop_reason(deadline: float, abort: AbortHook, ended: bool) -> tuple[bool, str | None] | None:
    """(timed out, why stopped) when waiting for a command must end, else None; ``ended``:
    its session is gone without the command's exit status."""
    if time.monotonic() > deadline:
        return True, None
    reason = abort()
    if reason:
        return False, reason
    if ended:
        return False, "the SSH session closed without an exit status"
    return None


class _ResidentShell:
    """The guest login shell on its own session channel, reading commands from its stdin.

    A command runs as ``( eval 'COMMAND' ) </dev/null`` and is followed by two markers with a
    fresh random token, one on each stream, the first carrying ``$?``: the subshell keeps a
    command's ``cd``, variables and ``exit`` from leaking into the next one, the quoting keeps
    an unbalanced quote in COMMAND from swallowing the markers (eval reports it, exit 2), and a
    stream's output is exactly what precedes its marker."""

    def __init__(self, transport: paramiko.Transport, deadline: float) -> None:
        self.chan = transport.open_session(timeout=CONNECT_ATTEMPT)
        _exec_by(self.chan, 'exec "${SHELL:-/bin/sh}"', deadline)

    @property
    def closed(self) -> bool:
        return self.chan.closed or self.chan.exit_status_ready()

    def close(self) -> None:
        self.chan.close()

    def run(self, command: str, deadline: float, abort: AbortHook) -> _Outcome:
        token = secrets.token_hex(12).encode()
        quoted = "'" + command.replace("'", "'\\''") + "'"
        self.chan.settimeout(max(0.001, deadline - time.monotonic()))  # bounds sendall
        self.chan.sendall(
            f"( eval {quoted} ) </dev/null; printf '\\n%s %d\\n' {token.decode()} \"$?\"; "
            f"printf '\\n%s\\n' {token.decode()} >&2\n".encode()
        )
        out, err = bytearray(), bytearray()
        out_end = re.compile(rb"\n" + token + rb" (\d+)\n")
        err_end = b"\n" + token + b"\n"
        status, err_at = None, -1
        while True:
            scanned = len(out), len(err)
            _drain(self.chan, out, err)
            if status is None:  # look only at what is new, with a marker's length of overlap
                status = out_end.search(out, max(0, scanned[0] - len(err_end) - 12))
            if err_at < 0:
                err_at = err.find(err_end, max(0, scanned[1] - len(err_end)))
            if status is not None and err_at >= 0:
                # Nothing follows the markers: the shell now waits for the next command.
                return _Outcome(
                    int(status.group(1)), bytes(out[: status.start()]), bytes(err[:err_at])
                )
            stopped = _stop_reason(deadline, abort, self.closed)  # the shell itself exited
            if stopped is not None:
                _drain(self.chan, out, err)
                return _Outcome(None, bytes(out), bytes(err), *stopped)
            select.select([self.chan], [], [], POLL_SLICE)  # readable on either stream or EOF
