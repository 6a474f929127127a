"""`memharness shell` driven through pexpect, as a person at a terminal would: log in, type,
read, log out; play a scenario up to a step first; a splat typed by hand is reported at the
end.  No QEMU may be left behind by any of it."""

import json
import signal
from pathlib import Path

import pexpect
import pytest

from harness import proc
from harness.arch import ArchProfile
from tests.integration.cli import qemus
from tests.integration.cli import spawn_shell as spawn

PROMPT = r"root@mh-guest:[^\r\n]*# "
# scenario, a step of it, and what the guest shows right after that step and before the next
UNTIL = {
    "x86_64": (
        "dimm-plug-cycle",
        "plug pc-dimm dimm0 256M",
        "cat /sys/devices/system/memory/memory32/state",
        "offline",  # plugged, not yet onlined (the next step)
    ),
    "arm64": (
        "virtio-mem-resize-arm64",
        "resize vmem0 512M",
        "cat /sys/devices/system/memory/memory19/state; ls /sys/devices/system/memory/memory20",
        "online\r\nls: cannot access",  # 512M plugged, not yet 768M (step 5)
    ),
}


def test_type_read_and_log_out(arch: ArchProfile, tmp_path: Path) -> None:
    child = spawn(tmp_path, "--arch", arch.name)
    child.expect(PROMPT)
    child.sendline("echo $((6 * 7)) $(uname -m)")
    child.expect(f"42 {arch.uname_machine}")
    child.expect(PROMPT)
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert qemus(tmp_path) == []
    (record,) = tmp_path.glob("shell-*/result.json")
    assert json.loads(record.read_text())["outcome"] == "pass"


def test_until_a_step_then_look_around(arch: ArchProfile, tmp_path: Path) -> None:
    scenario, step, command, shows = UNTIL[arch.name]
    child = spawn(tmp_path, "--arch", arch.name, "--scenario", scenario, "--until", step)
    child.expect(f"stopped after step {step}")
    child.expect(PROMPT)
    child.sendline(command)
    child.expect(shows)
    child.expect(PROMPT)
    child.sendline("exit 0")  # plain `exit` would pass on the status of the last command
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    (record,) = tmp_path.glob("shell-*/result.json")
    data = json.loads(record.read_text())
    assert "--until" in data["reproducer"] and step in data["reproducer"]
    assert qemus(tmp_path) == []


def test_an_unknown_step_says_what_ran(tmp_path: Path) -> None:
    child = spawn(
        tmp_path, "--scenario", "dimm-plug-cycle", "--until", "no such step", "--", "true"
    )
    child.expect("never ran a step 'no such step'; it ran: modules and memory blocks, plug")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.x86_64
def test_a_splat_typed_by_hand_is_reported(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.expect(PROMPT)
    child.sendline("echo c > /proc/sysrq-trigger")
    child.expect("splat\\(s\\) during the session: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1  # kernel-splat, as `git bisect run` reads it
    assert qemus(tmp_path) == []


def test_bad_input_is_one_line_before_qemu(tmp_path: Path) -> None:
    for args, message in (
        (["--image", "initramfs"], "memharness shell needs --image debian (or a path"),
        (["--until", "x"], "--until names a step of a scenario: pass --scenario too"),
        (["--scenario", "nope"], "nope"),
    ):
        child = spawn(tmp_path, *args)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 2, (args, child.before)
        assert message in (child.before or ""), (args, child.before)
    assert not list(tmp_path.glob("shell-*"))
    assert proc.live_children() == []


@pytest.mark.x86_64
def test_a_signal_in_the_session_leaves_the_record_and_no_qemu(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.expect(PROMPT)
    child.kill(signal.SIGINT)  # to memharness itself: the terminal is raw, ^C goes to the guest
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert qemus(tmp_path) == []
    (record,) = tmp_path.glob("shell-*/result.json")
    data = json.loads(record.read_text())
    assert (data["outcome"], data["reason"]) == ("interrupted", "interrupted by SIGINT")
