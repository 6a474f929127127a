"""What the serial console shell reads in a guest's output (pure): prompts as real shells print
them, and a command's output with the kernel's console lines taken out."""

import io
import socket
import subprocess

import pytest

from harness.errors import InfraError
from harness.vm.console_shell import (
    LOGIN,
    PASSWORD,
    PROMPT,
    REFUSED,
    ConsoleShell,
    echo_marker,
)


@pytest.mark.parametrize(
    "prompt",
    [
        b"\r\n~ # \x1b[6n",  # busybox ash asks for the cursor position after its prompt
        b"root@mh-guest:~# ",  # bash, Debian's default PS1
        b"\r\n# ",  # dash
        b"$ ",
        b"[root@fedora ~]# ",
        b"host% ",  # zsh
    ],
)
def test_shell_prompts_are_seen(prompt: bytes) -> None:
    assert PROMPT.search(prompt)


@pytest.mark.parametrize(
    "text",
    [
        b"\r\nusers-box login: ",
        b"Password: ",
        b"BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) built-in shell (ash)\r\n",
        b"# a comment that goes on",
    ],
)
def test_what_is_not_a_prompt(text: bytes) -> None:
    assert not PROMPT.search(text)


def test_login_password_and_refusal_lines() -> None:
    assert LOGIN.search(b"\r\n\r\nusers-box login: ")
    assert LOGIN.search(b"Debian GNU/Linux 12 mh-guest ttyS0\r\n\r\nmh-guest login:")
    assert PASSWORD.search(b"root\r\nPassword: ")
    line = b"[    3.7] memharness: user image refused: /sbin/init is for ELF machine 62\r\n"
    match = REFUSED.search(line)
    assert match and match.group(1) == b"/sbin/init is for ELF machine 62"
    # half a line (the console arrives in chunks) is not the whole reason yet
    assert not REFUSED.search(line[:50])


def test_kernel_lines_leave_a_commands_output_and_its_own_stay() -> None:
    out = (
        b"before\n"
        b"[   12.345678] WARNING: CPU: 0 PID: 1 at mm/memory_hotplug.c:1 foo+0x1/0x2\r\n"
        b"[   12.345679] Modules linked in: nd_pmem\r\n"
        b"[    3.611057] virtio_blk virtio0: [vda] 36864 512-byte logical blocks\n"  # dmesg's
        b"after\r\n"
    )
    assert ConsoleShell._clean(out) == (
        b"before\n[    3.611057] virtio_blk virtio0: [vda] 36864 512-byte logical blocks\nafter\n"
    )


def test_a_marker_is_printed_but_never_typed() -> None:
    """Echo may still be on when the command arrives: the typed line must not contain the
    marker its output is matched on.  Checked with the host's real sh."""
    marker = "MH_END_0123456789ab_7"
    line = f'{echo_marker(marker)} "$?"'
    assert marker not in line
    out = subprocess.run(["sh", "-c", f"false; {line}"], capture_output=True, text=True).stdout
    assert out == f"{marker} 1\n"


@pytest.mark.parametrize(
    "script",
    ["x" * 4001, "echo a\x03b", "printf '\x7f'", "echo \x04"],
    ids=["long line", "ctrl-c", "del", "ctrl-d"],
)
def test_what_a_tty_would_act_on_is_refused_before_it_is_typed(script: str) -> None:
    ours, guest = socket.socketpair()
    shell = ConsoleShell(ours, io.StringIO())
    try:
        with pytest.raises(InfraError, match="cannot be typed into the serial console"):
            shell.run(script, timeout=1.0)
        guest.setblocking(False)
        with pytest.raises(BlockingIOError):
            guest.recv(1)  # nothing reached the "guest"
    finally:
        shell.close()
        guest.close()
