"""The live VM: QEMU process, console watcher, QMP and command channels, as one context manager.

Only this module starts QEMU.  Whatever happens (guest panic, hang, QEMU killed from outside,
Ctrl-C, a crashed test) ``__exit__`` stops QEMU, reaps it, and writes the artifacts directory,
and ``facts()`` says what happened so ``harness.outcome.decide`` can name one outcome.
"""

import contextlib
import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, cast

from harness import proc
from harness.arch import ArchProfile
from harness.diskspace import free_bytes
from harness.errors import InfraError, MemharnessError
from harness.image.builder import GuestImage
from harness.kernel.model import Kernel
from harness.outcome import Facts
from harness.qemu.argv import (
    ChannelPort,
    MachineSpec,
    build_argv,
    kernel_cmdline,
    rootfs_args,
    shell_quote,
)
from harness.splat import Splat, SplatStream
from harness.tempdirs import socket_dir
from harness.vm import accel as accelmod
from harness.vm import snapshot
from harness.vm.channel import Channel, ChannelClosed, CommandResult, Listener, argv_script
from harness.vm.console import ConsoleWatcher
from harness.vm.console_shell import ConsoleShell
from harness.vm.ports import PortLease, lease_port
from harness.vm.qmp import QMP
from harness.vm.ssh import SSHChannel

FATAL_GRACE = 5.0  # after a panic splat, how long QEMU may take to exit by itself
CONNECT_TIMEOUT = 30.0
MIN_FREE = 16 << 20  # bytes the artifacts' filesystem needs before a boot
FULL = 256 << 10  # at most this much left after a run: the disk filled up during it
log = logging.getLogger(__name__)


@dataclass
class VMOptions:
    memory: int | None = None  # bytes; None → the arch default
    slots: int = 0
    maxmem: int = 0
    smp: int = 1
    cmdline: tuple[str, ...] = ()  # extra kernel arguments
    extra_args: tuple[str, ...] = ()  # extra QEMU arguments (devices, objects)
    machine_options: tuple[str, ...] = ()
    dtb: Path | None = None
    uefi: bool = False
    accel: str = "tcg"
    ports: int = 1  # command-channel ports (parallel guest sessions)
    boot_timeout: float = 180.0
    boot_silence: float = 90.0  # no console output for this long during boot → hang
    command_timeout: float = 300.0
    panic_on_oops: bool = True  # an oops ends the run at once instead of leaving held locks
    reproducer: str = ""  # one-line command that re-runs this case
    incoming: Path | None = None  # start from this saved state (see harness/vm/snapshot.py)
    ssh_timeout: float = 60.0  # Debian image: sshd must answer within this after the agent


@dataclass
class VMState:
    boot_seconds: float | None = None
    accel: str = ""
    accel_note: str = ""
    hang: str | None = None
    infra: str | None = None
    failed_command: str | None = None
    stopping: bool = False
    qemu_exit: int | None = None
    commands: list[CommandResult] = field(default_factory=list)


class VM:
    def __init__(
        self, kernel: Kernel, image: GuestImage, artifacts: Path, options: VMOptions | None = None
    ) -> None:
        self.kernel = kernel
        self.arch = kernel.arch
        self.image = image
        self.artifacts = artifacts
        self.options = options or VMOptions()
        self.state = VMState()
        self.stream = SplatStream()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sockdir: Path | None = None
        self._listeners: list[Listener] = []
        self._channels: list[Channel] = []
        self._qmp: QMP | None = None
        self._qmp_sock: socket.socket | None = None
        self._console: ConsoleWatcher | None = None
        self._files: list[TextIO] = []
        self._fatal_seen_at: float | None = None
        self._ssh: SSHChannel | None = None
        self._ssh_port: PortLease | None = None
        self._console_shell: ConsoleShell | None = None
        self.argv: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "VM":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, InfraError) and not self.state.infra:
            self.state.infra = str(exc)
        self.stop()

    def start(self) -> None:
        """Boots the guest; returns when its agent is ready (or the VM is known dead/hung)."""
        binary = require_qemu(self.arch)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        free = free_bytes(self.artifacts)
        if free < MIN_FREE:
            raise InfraError(
                f"only {free >> 10} KiB free under {self.artifacts}: the console log needs room "
                f"(at least {MIN_FREE >> 20} MiB); free some space or pass --artifacts elsewhere"
            )
        plan = accelmod.plan(self.options.accel, self.arch)
        self.state.accel_note = plan.note
        if plan.fallback is None:
            self._boot(binary, plan.first, self.options.boot_timeout)
            return
        # A KVM probe: the real boot, under KVM, with a short timeout.
        self._boot(binary, plan.first, accelmod.PROBE_TIMEOUT)
        if self.state.boot_seconds is not None:
            accelmod.record_verdict(self.arch, True, "booted")
            self.state.accel_note = f"KVM (probe booted in {self.state.boot_seconds:.1f} s)"
            return
        reason = self.state.hang or self.state.infra or "did not boot"
        accelmod.record_verdict(self.arch, False, reason)
        self._teardown(keep_artifacts_as="kvm-probe")
        self.state = VMState(accel_note=f"TCG: KVM probe failed ({reason}); falling back to TCG")
        self.stream = SplatStream()
        log.warning("KVM probe failed (%s); falling back to TCG", reason)
        self._boot(binary, plan.fallback, self.options.boot_timeout)

    def _boot(self, binary: str, accel: str, boot_timeout: float) -> None:
        self.state.accel = accel
        self._sockdir = socket_dir()  # short: sun_path is 108 bytes
        user = self.image.user
        # A user's image runs no agent: its console is the one channel.
        ports = tuple(
            ChannelPort(f"mh.{i}", self._sockdir / f"port{i}.sock")
            for i in range(0 if user else self.options.ports)
        )
        console_socket = self._sockdir / "console.sock" if user else None
        extra_cmdline = list(self.options.cmdline)
        if self.options.panic_on_oops:
            extra_cmdline.insert(0, "oops=panic")
        disk_args = self._rootfs_args(extra_cmdline)
        spec = MachineSpec(
            arch=self.arch,
            kernel=self.kernel.boot_image,
            initrd=self.image.initrd,
            cmdline=kernel_cmdline(self.arch, ports, self.image.boot_modules, tuple(extra_cmdline)),
            console_log=self.artifacts / "console.log",
            qmp_socket=self._sockdir / "qmp.sock",
            ports=ports,
            memory=self.options.memory or self.arch.default_memory,
            slots=self.options.slots,
            maxmem=self.options.maxmem,
            smp=self.options.smp,
            accel=accel,
            dtb=self.options.dtb,
            firmware=Path(fw) if self.options.uefi and (fw := self.arch.firmware()) else None,
            machine_options=self.options.machine_options,
            console_socket=console_socket,
            extra=(
                *disk_args,
                *self.options.extra_args,
                *snapshot.incoming_args(self.options.incoming),
            ),
        )
        if self.options.uefi and spec.firmware is None:
            raise InfraError(
                f"UEFI firmware for {self.arch.name} not found: install qemu-efi-aarch64"
            )
        self.argv = build_argv(spec, binary)
        (self.artifacts / "qemu.argv").write_text(shell_quote(self.argv) + "\n")
        qmp_listener = Listener(spec.qmp_socket)
        port_listeners = [Listener(p.socket) for p in ports]
        console_listener = Listener(console_socket) if console_socket else None
        self._listeners = [qmp_listener, *port_listeners, *filter(None, [console_listener])]
        (self.artifacts / "console.log").write_bytes(b"")  # exists from the start, for every record
        self._console = ConsoleWatcher(self.artifacts / "console.log", self._on_console)
        stderr = self._open("qemu.stderr", "w")
        (self.artifacts / "qmp.log").write_text("# QMP traffic (connected on first use)\n")
        start = time.monotonic()
        self._proc = proc.spawn(self.argv, stderr=stderr.fileno())
        try:
            # The QMP handshake is deferred to first use: it costs CPU the booting guest needs.
            self._qmp_sock = qmp_listener.accept(CONNECT_TIMEOUT, self.alive)
            transcript = self._open("transcript.log", "a")
            for port, listener in zip(ports, port_listeners, strict=True):
                sock = listener.accept(CONNECT_TIMEOUT, self.alive)
                self._channels.append(Channel(sock, port.name, transcript))
            if console_listener is not None and user is not None:
                sock = console_listener.accept(CONNECT_TIMEOUT, self.alive)
                self._console_shell = ConsoleShell(sock, transcript)
                self._console_shell.login(user.login, user.password, boot_timeout, self._boot_abort)
            for channel in self._channels:
                if self.options.incoming is None:
                    channel.wait_ready(boot_timeout, self._boot_abort)
                else:  # the saved agent is past READY: its first answer is the sign
                    channel.resume(boot_timeout, self._boot_abort)
        except TimeoutError:
            self.state.hang = (
                f"guest did not finish booting within {boot_timeout:.0f} s "
                f"({self.arch.name}, {accel})"
            )
            return
        except ChannelClosed as exc:
            self._note_exit(str(exc))
            return
        except _BootAbort as exc:
            self.state.hang = str(exc)
            return
        except InfraError as exc:
            # QMP or a port failed: usually because QEMU died under us (bad -cpu, crash).
            try:
                assert self._proc is not None
                self._proc.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            if not self.alive():
                self._note_exit(str(exc))
            else:
                self.state.infra = str(exc)
            return
        self.state.boot_seconds = time.monotonic() - start

    def _rootfs_args(self, cmdline: list[str]) -> list[str]:
        """QEMU arguments of a root disk (its overlay; for the Debian image the network with
        the SSH forward); appends its kernel arguments to ``cmdline``.  Nothing for the
        initramfs."""
        disk = self.image.disk
        if disk is None:
            return []
        backing, backing_format = disk
        rootfs, user = self.image.rootfs, self.image.user
        if rootfs is not None:
            rootfs.check(self.arch.name)
        assert self._sockdir is not None
        overlay = self._sockdir / "root.qcow2"  # per boot, removed with the socket directory
        qemu_img = proc.require_tool("qemu-img", "qemu-utils")
        proc.run(
            [
                qemu_img,
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                backing_format,
                "-b",
                str(backing),
                str(overlay),
            ],
            timeout=60,
            what=f"qemu-img create (overlay of {backing})",
        )
        cmdline.append("mh.root=/dev/vda")
        if user is not None:
            # stage 1 checks the init's ELF machine and hands over to it (guest-scripts/init)
            cmdline += [f"mh.init={user.init}", f"mh.elf={self.arch.elf_machine}"]
            return rootfs_args(overlay, None)
        if self._ssh_port is None:
            self._ssh_port = lease_port()
        return rootfs_args(overlay, self._ssh_port.port)

    @property
    def ssh_port(self) -> int | None:
        """The host port forwarded to the guest's sshd (None: no Debian image)."""
        return self._ssh_port.port if self._ssh_port else None

    @property
    def ssh(self) -> SSHChannel:
        """SSH into the Debian image's guest, logged in on first use (an ``InfraError`` with
        the console tail when that fails: never a hang)."""
        if self._ssh is not None:
            return self._ssh
        rootfs = self.image.rootfs
        if rootfs is None:
            raise InfraError("this guest has no SSH: boot it with --image debian")
        if not self.ready or self._ssh_port is None:
            raise InfraError("SSH is not available: the VM is not running")
        channel = SSHChannel(
            self._ssh_port.port,
            rootfs.client_key,
            rootfs.host_key,
            self._open("transcript.log", "a"),
        )
        try:
            channel.connect(self.options.ssh_timeout, self.abort_reason)
        except InfraError as exc:
            self.state.infra = f"{exc}; console tail:\n{self.console_tail(15)}"
            raise InfraError(self.state.infra) from None
        self._ssh = channel
        return channel

    def ssh_run(
        self, script: str, timeout: float | None = None, check: bool = True, stdin: bytes = b""
    ) -> CommandResult:
        """``run`` over SSH instead of the agent: root's login shell in sshd's environment, no
        pty; each command in a subshell of its own (see SSHChannel.run)."""
        if not self.ready:
            return self._record(
                CommandResult(script, None, 0, b"", b"", 0.0, stopped_by="the VM is not running")
            )
        limit = timeout if timeout is not None else self.options.command_timeout
        return self._judge(self.ssh.run(script, limit, self.abort_reason, stdin), limit, check)

    def _open(self, name: str, mode: str) -> TextIO:
        f = cast(TextIO, (self.artifacts / name).open(mode, errors="backslashreplace"))
        self._files.append(f)
        return f

    def _on_console(self, text: str) -> None:
        if self.stream.feed(text) and self.stream.panicked and self._fatal_seen_at is None:
            self._fatal_seen_at = time.monotonic()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def abort_reason(self) -> str | None:
        """Why waiting on this guest is pointless (QEMU gone, kernel panicked), else None."""
        if not self.alive():
            return "QEMU exited"
        if self._fatal_seen_at is not None and time.monotonic() - self._fatal_seen_at > FATAL_GRACE:
            return "the kernel panicked"
        return None

    def _boot_abort(self) -> str | None:
        reason = self.abort_reason()
        if reason:
            raise ChannelClosed(reason)
        assert self._console is not None
        if self._console.silent_for() > self.options.boot_silence:
            raise _BootAbort(f"no console output for {self.options.boot_silence:.0f} s during boot")
        return None

    def _note_exit(self, why: str) -> None:
        """QEMU went away on its own: a panic explains it; anything else is infrastructure."""
        if self._proc is not None:
            try:
                self.state.qemu_exit = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                return
        if self._console is not None:
            self._console.flush()
        self.stream.finish()  # QEMU is gone: the log is complete, so is its last report
        if self.stream.panicked or self.state.stopping:
            return
        self.state.infra = explain_exit(
            self.state.qemu_exit, (self.artifacts / "qemu.stderr").read_text(errors="replace"), why
        )

    # -- use ---------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return (
            self.state.boot_seconds is not None
            and self.alive()
            and not self.state.hang
            and not self.stream.panicked
        )

    @property
    def qmp(self) -> QMP:
        """The QMP facade, connected on first use."""
        if self._qmp is None:
            if self._qmp_sock is None or not self.alive():
                raise InfraError("QMP is not available: QEMU is not running")
            self._qmp = QMP(self._qmp_sock, self._open("qmp.log", "a"))
        return self._qmp

    def save_state(self, path: Path) -> float:
        """Saves the running guest to ``path`` and lets it run on; returns the seconds it was
        paused.  A guest started with ``VMOptions(incoming=path)`` continues from there."""
        return snapshot.save(self.qmp, path, self.abort_reason)

    @property
    def restored_from(self) -> str | None:
        """The saved state this guest started from instead of booting (None: it booted)."""
        started = self.state.boot_seconds is not None
        return str(self.options.incoming) if started and self.options.incoming else None

    def channel(self, index: int = 0) -> Channel:
        return self._channels[index]

    def run(
        self, script: str, timeout: float | None = None, check: bool = True, port: int = 0
    ) -> CommandResult:
        """Runs a guest command; a non-zero exit is recorded as a failure when ``check``."""
        if not self.ready:
            return self._record(
                CommandResult(script, None, 0, b"", b"", 0.0, stopped_by="the VM is not running")
            )
        limit = timeout if timeout is not None else self.options.command_timeout
        if self._console_shell is not None:
            if port != 0:
                raise InfraError(
                    f"a user's image has one console, not {port + 1} command sessions: run "
                    "this scenario on --image initramfs or debian"
                )
            result = self._console_shell.run(script, limit, self.abort_reason)
            return self._judge(result, limit, check)
        return self._judge(self._channels[port].run(script, limit, self.abort_reason), limit, check)

    @property
    def console_shell(self) -> ConsoleShell:
        """The logged-in console of a user's image (``--image PATH``)."""
        if self._console_shell is None:
            raise InfraError("this guest has no console shell: it is not a user's image")
        return self._console_shell

    def _record(self, result: CommandResult) -> CommandResult:
        self.state.commands.append(result)
        return result

    def _judge(self, result: CommandResult, limit: float, check: bool) -> CommandResult:
        """Records a finished command and what it says about the run (hang, exit, failure)."""
        script = result.command
        self.state.commands.append(result)
        if result.timed_out:
            self.state.hang = f"command exceeded its {limit:.0f} s timeout: {script}"
        elif result.stopped_by:
            self._note_exit(result.stopped_by)
        elif check and result.exit_code != 0 and self.state.failed_command is None:
            first_err = result.stderr.decode(errors="replace").strip().splitlines()[:1]
            detail = f": {first_err[0]}" if first_err else ""
            self.state.failed_command = f"`{script}` exited {result.exit_code}{detail}"
        return result

    def exec(
        self,
        argv: Sequence[str],
        timeout: float | None = None,
        check: bool = True,
        port: int = 0,
    ) -> CommandResult:
        """Runs ``argv`` in the guest exactly as exec would get it (no shell splitting)."""
        return self.run(argv_script(argv), timeout=timeout, check=check, port=port)

    def splats(self) -> list[Splat]:
        """Splats so far; reads the console up to now first."""
        if self._console is not None:
            self._console.flush()
        return list(self.stream.splats)

    def facts(self) -> Facts:
        return Facts(
            splats=tuple(self.stream.splats),
            hang=self.state.hang,
            infra=self.state.infra,
            failed_command=self.state.failed_command,
        )

    def console_tail(self, lines: int = 40) -> str:
        return self._console.tail(lines) if self._console else ""

    # -- shutdown ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops QEMU (QMP quit or SIGTERM, then SIGKILL), reaps it, closes all. Idempotent."""
        exited_by_itself = self._proc is not None and self._proc.poll() is not None
        if exited_by_itself and not self.state.stopping and self.state.qemu_exit is None:
            self._note_exit("QEMU exited")
        self.state.stopping = True
        self._close_ssh()  # before QEMU goes: paramiko would report the reset
        if self._proc is not None:
            if self._proc.poll() is None and self._qmp is not None:
                with contextlib.suppress(Exception):
                    self._qmp.command("quit", timeout=3.0)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(3.0)
            code = proc.kill(self._proc, grace=3.0)
            free = free_bytes(self.artifacts)
            if free < FULL and not self.state.infra:
                # QEMU drops console output it cannot write: a splat may be missing.
                self.state.infra = (
                    f"the disk under {self.artifacts} filled up during the run ({free} bytes "
                    "free): console.log may be incomplete, so the outcome is unknown"
                )
            if self.state.qemu_exit is None:
                self.state.qemu_exit = code
        self._close_io()

    def _close_ssh(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def _close_io(self) -> None:
        self._close_ssh()
        if self._ssh_port is not None:
            self._ssh_port.release()
            self._ssh_port = None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._qmp_sock is not None:
            self._qmp_sock.close()
            self._qmp_sock = None
        for channel in self._channels:
            channel.close()
        self._channels = []
        if self._console_shell is not None:
            self._console_shell.close()
            self._console_shell = None
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        if self._console is not None:
            self._console.stop()
        self.stream.finish()
        for f in self._files:
            f.close()
        self._files = []
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def _teardown(self, keep_artifacts_as: str) -> None:
        """Ends a failed probe boot, moving its artifacts aside for the record."""
        self.state.stopping = True
        if self._proc is not None:
            proc.kill(self._proc)
            self._proc = None
        self._close_io()
        self._console = None
        aside = self.artifacts / keep_artifacts_as
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for name in ("qemu.argv", "console.log", "qmp.log", "transcript.log", "qemu.stderr"):
            path = self.artifacts / name
            if path.exists():
                path.rename(aside / name)

    def summary(self) -> dict[str, Any]:
        """Facts about the machine for result.json."""
        return {
            "arch": self.arch.name,
            "kernel": {
                "release": self.kernel.release,
                "origin": self.kernel.origin,
                "boot": self.kernel.boot_kind,
            },
            "accel": self.state.accel,
            "accel_note": self.state.accel_note,
            "boot_seconds": self.state.boot_seconds,
            "restored_from": self.restored_from,
            "qemu_exit": self.state.qemu_exit,
            "console_tail": self.console_tail(),
        }

    def write_splats(self) -> None:
        """splats.json (the schema of harness/splat/report.py); with the kernel's vmlinux at
        hand, each frame decoded to file:line."""
        from harness.splat.report import splats_json
        from harness.splat.symbolize import decode

        splats = self.stream.splats
        located = {}
        error = None
        vmlinux = self.kernel.vmlinux
        if splats and vmlinux is not None and vmlinux.is_file():
            try:
                located = decode(splats, vmlinux, self.arch)
            except MemharnessError as exc:
                error = str(exc)
        data = splats_json(splats, located)
        if error:
            for entry in data:
                entry["locations_error"] = error
        try:
            (self.artifacts / "splats.json").write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", self.artifacts / "splats.json", exc.strerror)


def require_qemu(arch: ArchProfile) -> str:
    """Path of the arch's QEMU, or a one-line error naming the package that provides it."""
    return proc.require_tool(arch.qemu_binary, arch.qemu_package)


def explain_exit(code: int | None, stderr: str, why: str) -> str:
    """One line for a QEMU exit memharness did not ask for (pure, unit-tested)."""
    lines = stderr.strip().splitlines()
    terminated = next((ln for ln in lines if "terminating on signal" in ln), None)
    if code is not None and code < 0:
        return f"QEMU was killed by signal {-code} (not by memharness)"
    if terminated:
        return f"QEMU was stopped from outside: {terminated.split(': ', 1)[-1]}"
    if code == 0:
        return "the guest powered off or rebooted unexpectedly"
    return f"QEMU exited with status {code}: {lines[-1] if lines else why}"


class _BootAbort(Exception):
    """Boot-time watchdog fired (console silence)."""
