"""The backbone on real QEMU: boot both arches, run commands, get exact output and status."""

import threading
import time
from collections.abc import Callable

from harness.arch import ArchProfile
from harness.vm.channel import CommandResult
from harness.vm.machine import VM


def test_boots_and_reports_release(vm: VM, arch: ArchProfile) -> None:
    result = vm.run("uname -m; uname -r")
    machine, release = result.text.split()
    assert machine == arch.uname_machine
    assert release == vm.kernel.release
    assert vm.state.boot_seconds is not None and vm.state.boot_seconds < 60


def test_exit_codes_and_stderr(vm: VM) -> None:
    result = vm.run("echo out; echo err >&2; exit 7", check=False)
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert vm.run("false", check=False).exit_code == 1
    assert vm.run("true").exit_code == 0
    assert vm.state.failed_command is None  # check=False failures are not recorded


def test_failed_checked_command_is_recorded(vm: VM) -> None:
    vm.run("ls /nonexistent")
    assert vm.state.failed_command is not None
    assert "ls /nonexistent" in vm.state.failed_command
    assert "No such file" in vm.state.failed_command


def test_signal_exit_and_large_binary_output(vm: VM) -> None:
    killed = vm.run("kill -9 $$", check=False)
    assert (killed.exit_code, killed.signal) == (137, 9)
    big = vm.run("head -c 300000 /dev/zero")
    assert big.stdout == b"\0" * 300000


def test_background_job_does_not_block_the_channel(vm: VM) -> None:
    start = time.monotonic()
    assert vm.run("sleep 30 >/dev/null 2>&1 &").exit_code == 0
    assert time.monotonic() - start < 5
    assert vm.run("echo still here").text == "still here\n"


def test_file_transfer(vm: VM) -> None:
    payload = bytes(range(256)) * 100
    vm.channel().put("/tmp/blob", payload, 0o600)
    assert vm.run("stat -c %a /tmp/blob").text.strip() == "600"
    assert vm.channel().get("/tmp/blob") == payload


def test_guest_tools_work(vm: VM) -> None:
    assert vm.run("ndctl version").text.strip()
    assert vm.run("daxctl version").text.strip()
    assert vm.run("mount | grep -c debugfs").text.strip() == "1"
    assert vm.run("lsmod | grep -c '^virtio_console '").text.strip() == "1"


def test_second_guest_session_runs_in_parallel(vm_factory: Callable[..., VM]) -> None:
    """Each session's command waits for the other's mark: only sessions that really overlap can
    both finish (serialised ones would each time out waiting and exit 1)."""
    machine = vm_factory(ports=2)
    assert machine.ready
    machine.run("rm -f /tmp/mark0 /tmp/mark1")
    script = (
        "touch /tmp/mark{me}; i=0; while [ ! -f /tmp/mark{other} ] && [ $i -lt 100 ]; do "
        "sleep 0.1; i=$((i+1)); done; test -f /tmp/mark{other}"
    )
    results: dict[int, CommandResult] = {}

    def session(port: int) -> None:
        results[port] = machine.run(
            script.format(me=port, other=1 - port), timeout=60, check=False, port=port
        )

    threads = [threading.Thread(target=session, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results[0].exit_code == 0 and results[1].exit_code == 0, results
