"""Every way a run can end is told apart: splat, hang, infra-error; nothing is left running."""

import os
import signal
import subprocess
import time

import pytest

from harness.outcome import Outcome, decide
from harness.vm.machine import VM


@pytest.mark.allow_splats
def test_panic_is_kernel_splat_within_seconds(vm: VM) -> None:
    start = time.monotonic()
    result = vm.run("echo c > /proc/sysrq-trigger", timeout=120, check=False)
    elapsed = time.monotonic() - start
    assert result.exit_code is None and result.stopped_by
    outcome, reason = decide(vm.facts())
    assert outcome == Outcome.KERNEL_SPLAT
    assert reason.startswith("kernel panic: sysrq triggered crash"), reason
    assert vm.splats()[0].fatal
    assert elapsed < 15, f"panic took {elapsed:.1f} s to be noticed"


def test_command_over_its_timeout_is_a_hang(vm: VM) -> None:
    start = time.monotonic()
    result = vm.run("sleep 60", timeout=3)
    assert result.timed_out
    assert time.monotonic() - start < 10
    outcome, reason = decide(vm.facts())
    assert outcome == Outcome.HANG
    assert "3 s timeout" in reason


@pytest.mark.parametrize(
    ("sig", "said"),
    [(signal.SIGKILL, "killed by signal 9"), (signal.SIGTERM, "stopped from outside")],
    ids=["SIGKILL", "SIGTERM"],
)
def test_qemu_stopped_from_outside_is_infra_error(vm: VM, sig: int, said: str) -> None:
    assert vm._proc is not None
    os.kill(vm._proc.pid, sig)
    result = vm.run("sleep 5", check=False)
    assert result.stopped_by
    outcome, reason = decide(vm.facts())
    assert outcome == Outcome.INFRA_ERROR
    assert said in reason


def test_stop_reaps_qemu(vm: VM) -> None:
    assert vm._proc is not None
    pid = vm._proc.pid
    vm.stop()
    assert vm._proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    ours = subprocess.run(["pgrep", "-f", str(vm.artifacts)], capture_output=True, text=True)
    assert ours.stdout == ""
