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
import socket
import threading
import time
from pathlib import Path
from typing import TextIO

import paramiko

from harness.errors import InfraError
from harness.vm.channel import AbortHook, CommandResult

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
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- use ----------------------------------------------------------------------------------
    def run(
        self, command: str, timeout: float, abort: AbortHook, stdin: bytes = b""
    ) -> CommandResult:
        """Runs ``command`` (a guest shell line) in a new session; safe from many threads at
        once.  Output is drained as it comes, so a chatty command cannot stall on a full
        window; a timeout or abort closes the session (sshd then hangs the command up)."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            return CommandResult(command, None, 0, b"", b"", 0.0, stopped_by="SSH is disconnected")
        start = time.monotonic()
        chan = transport.open_session(timeout=CONNECT_ATTEMPT)
        out, err = bytearray(), bytearray()
        stopped_by = None
        timed_out = False
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                while chan.recv_ready():
                    out += chan.recv(1 << 16)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                # The exit status may come before the last output: EOF says there is no more.
                done = chan.exit_status_ready()
                if (
                    done
                    and chan.eof_received
                    and not (chan.recv_ready() or chan.recv_stderr_ready())
                ):
                    break
                if time.monotonic() - start > timeout:
                    timed_out = True
                    break
                stopped_by = abort()
                if stopped_by:
                    break
                if chan.closed and not chan.exit_status_ready():
                    stopped_by = "the SSH session closed without an exit status"
                    break
                if done:
                    time.sleep(0.001)  # the status event stays set: wait for EOF without a spin
                else:
                    chan.status_event.wait(POLL_SLICE)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            stopped_by = f"SSH failed: {exc}"
        finally:
            chan.close()
        seconds = time.monotonic() - start
        code: int | None = None
        signal = 0
        if not timed_out and not stopped_by:
            status = chan.recv_exit_status()
            code = status if status >= 0 else None
            if code is not None and code > SIGNAL_EXIT:
                signal = code - SIGNAL_EXIT
        result = CommandResult(
            command, code, signal, bytes(out), bytes(err), seconds, timed_out, stopped_by
        )
        self._log(result)
        return result

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
