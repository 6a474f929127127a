"""`memharness shell`: a login into a memharness guest, optionally after a scenario's steps.

For the moment after a failure: boot the same layout, play the scenario up to the step that
went wrong (``--until``), then get a root shell in that guest and look around.  The console is
captured the whole time and its splats are reported (and recorded, with result.json) when the
shell exits, so a splat a command typed by hand provokes is not lost.

The terminal is handed over with pexpect's ``interact`` to the host's OpenSSH client logged in
with the image's key, so line editing, job control and window size work as in any SSH login;
the guest is the Debian image (the initramfs runs no sshd).  A user's own image (``--image
PATH``) has no sshd memharness knows a key for: there the terminal gets the guest's serial
console, logged in (harness/vm/console_shell.py), until Ctrl-].
"""

import contextlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect

from harness import proc
from harness.arch import ArchProfile
from harness.artifacts import artifacts_dir
from harness.errors import InfraError, UserError
from harness.guest.record import GuestSteps, ReachedStep
from harness.result import RunResult, finish_run, record_interruption
from harness.session import image_flags, prepare, reproducer
from harness.vm.channel import argv_script
from harness.vm.machine import VM, VMOptions

LOGIN_TIMEOUT = 30.0


@dataclass(frozen=True)
class ShellRequest:
    arch: ArchProfile
    kernel_spec: str | None
    modules: str | None
    artifacts: Path
    accel: str = "tcg"
    image: str = "debian"
    scenario: str | None = None
    until: str | None = None
    command: tuple[str, ...] = ()  # run this instead of an interactive shell (scripts, tests)
    catalogue: Path | None = None  # None: the built-in one


def ssh_argv(vm: VM, known_hosts: Path, command: tuple[str, ...] = ()) -> list[str]:
    """The host OpenSSH client logging into ``vm`` with the image's key and host key only."""
    rootfs = vm.image.rootfs
    assert rootfs is not None and vm.ssh_port is not None
    known_hosts.write_text(f"[127.0.0.1]:{vm.ssh_port} {rootfs.host_key}\n")
    ssh = proc.require_tool("ssh", "openssh-client")
    return [
        ssh,
        "-i",
        str(rootfs.client_key),
        "-p",
        str(vm.ssh_port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={LOGIN_TIMEOUT:.0f}",
        *([] if command else ["-t"]),
        "root@127.0.0.1",
        # ssh joins its arguments into one remote shell line: quote them so each arrives as is
        *([argv_script(command)] if command else []),
    ]


def _play(request: ShellRequest, vm: VM, runner: GuestSteps | None) -> str:
    """Plays the scenario's steps (up to --until); returns what to tell the user."""
    if runner is None:
        return "no scenario: a fresh guest"
    runner.until = request.until
    try:
        runner.run()
    except ReachedStep as reached:
        return f"scenario {request.scenario} stopped after step {reached}"
    done = ", ".join(s.name for s in runner.steps) or "none"
    if request.until:
        return f"scenario {request.scenario} never ran a step {request.until!r}; it ran: {done}"
    return f"scenario {request.scenario} played to its end"


def open_shell(request: ShellRequest) -> tuple[RunResult, int]:
    """Boots, plays, hands the terminal over; returns the run's record and the shell's exit
    status (None-free: a lost session is 255, as ssh reports it).  A signal stops QEMU and
    still writes the record, outcome ``interrupted`` (``RunInterrupted`` carries it)."""
    from harness.run import first_boot_runner, one_scenario, plan_scenario, vm_options

    if request.image == "initramfs":
        raise UserError(
            "memharness shell needs --image debian (or a path to your own image): the "
            "initramfs runs no sshd and no login"
        )
    if request.until and not request.scenario:
        raise UserError("--until names a step of a scenario: pass --scenario too")
    scenario = (
        one_scenario(request.scenario, request.arch, request.catalogue)
        if request.scenario
        else None
    )
    kernel, image = prepare(request.arch, request.kernel_spec, request.modules, request.image)
    options = VMOptions(accel=request.accel)
    planned = None
    if scenario is not None:
        planned = plan_scenario(scenario, kernel)
        options = vm_options(scenario, planned, request.accel)
    flags = [*image_flags(request.image)]
    if request.scenario:
        flags += ["--scenario", request.scenario]
    if request.until:
        flags += ["--until", request.until]
    repro = reproducer("shell", request.arch, request.kernel_spec, *flags)
    options.reproducer = repro
    artifacts = artifacts_dir(request.artifacts, "shell", request.arch.name)
    started = time.monotonic()
    vm = VM(kernel, image, artifacts, options)
    status = 255
    try:
        with vm:
            if not vm.ready:
                why = vm.state.hang or vm.state.infra or "see console.log"
                raise InfraError(
                    f"the guest did not boot ({why}); console tail:\n{vm.console_tail(15)}"
                )
            runner: GuestSteps | None = None
            if scenario is not None and planned is not None:
                runner = first_boot_runner(scenario, kernel, vm, planned)
            note = _play(request, vm, runner)
            if image.user is None:
                vm.ssh  # noqa: B018 (logs in through paramiko first: a refusal is an InfraError)
            print(f"memharness shell: {note}; {vm.arch.name}, {kernel.release}", file=sys.stderr)
            print(f"memharness shell: console: {artifacts / 'console.log'}", file=sys.stderr)
            if image.user is None:
                status = _hand_over(vm, artifacts, request.command)
            else:
                status = _hand_over_console(vm, request.command)
    except KeyboardInterrupt as exc:  # a signal during boot, the steps or the session
        raise record_interruption(
            exc, lambda override: finish_run(vm, "shell", repro, started, override=override)
        ) from None
    return finish_run(vm, "shell", repro, started), status


def _hand_over_console(vm: VM, command: tuple[str, ...]) -> int:
    """A user's image: its serial console, logged in.  A command runs like any memharness
    command (its output, then its status); a terminal gets the console itself until Ctrl-]."""
    if command:
        result = vm.run(argv_script(command), check=False)
        sys.stdout.buffer.write(result.stdout)
        sys.stdout.flush()
        return result.exit_code if result.exit_code is not None else 255
    shell = vm.console_shell
    shell.leave_command_mode(abort=vm.abort_reason)
    print("memharness shell: the guest's serial console; Ctrl-] leaves", file=sys.stderr)
    return shell.interact(vm.abort_reason)


def _hand_over(vm: VM, artifacts: Path, command: tuple[str, ...]) -> int:
    """The user's session: pexpect interact on a tty, a plain child otherwise."""
    argv = ssh_argv(vm, artifacts / "known_hosts", command)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Not a terminal (a pipe, a script): no pty to hand over; stdin/stdout pass through.
        child_proc = proc.spawn(argv, stdin=None, stdout=None, stderr=None)
        deadline = time.monotonic() + vm.options.command_timeout
        try:
            while time.monotonic() < deadline and not vm.abort_reason():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return child_proc.wait(1.0)
            vm.state.hang = vm.state.hang or (
                f"shell command exceeded {vm.options.command_timeout:.0f} s: {' '.join(command)}"
                if time.monotonic() >= deadline
                else None
            )
            return 255
        finally:
            proc.kill(child_proc)
    child = pexpect.spawn(argv[0], argv[1:], encoding=None, timeout=None)
    try:
        size = shutil.get_terminal_size()
        child.setwinsize(size.lines, size.columns)
        child.interact(escape_character=None)
    finally:
        child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
