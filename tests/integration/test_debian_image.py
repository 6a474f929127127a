"""The Debian guest image on real QEMU, both arches, Debian's kernels: SSH (paramiko) with exit
status and separate streams, SFTP both ways, sessions at once, a layout scenario exactly as on
the initramfs, the CLI's `boot --image debian --ssh`, and what goes wrong: a corrupt disk, a
refused login, an image for the other arch."""

import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.arch import ArchProfile
from harness.errors import InfraError, UserError
from harness.image.builder import GuestImage, prepare_image
from harness.image.rootfs import new_key, write_secret
from harness.kernel.model import Kernel
from harness.kernel.resolve import resolve_kernel
from harness.vm.machine import VM, VMOptions
from harness.vm.ssh import CONNECT_ATTEMPT
from tests.integration.cli import memharness, run_json

LAYOUT_SCENARIO = {"x86_64": "dimm-plug-cycle", "arm64": "virtio-mem-resize-arm64"}


@pytest.fixture(scope="module")
def debian(arch: ArchProfile) -> tuple[Kernel, GuestImage]:
    kernel = resolve_kernel(arch, None)
    return kernel, prepare_image(kernel, "debian")


def test_ssh_exec_sftp_and_parallel_sessions(
    arch: ArchProfile, debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    kernel, image = debian
    with VM(kernel, image, tmp_path / "vm") as vm:
        assert vm.ready, vm.console_tail()
        r = vm.ssh_run("echo out; echo err >&2; exit 3", check=False)
        assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
        # the agent and SSH see one guest
        assert vm.run("uname -r").text.strip() == vm.ssh_run("uname -r").text.strip()

        script = tmp_path / "hello.sh"
        script.write_text('#!/bin/sh\necho "hello $1 from $(uname -m)"\n')
        vm.ssh.upload(script, "/root/hello.sh")
        r = vm.ssh_run("/root/hello.sh 'a b'")
        assert r.text == f"hello a b from {arch.uname_machine}\n"
        vm.ssh_run("head -c 100000 /dev/urandom > /root/blob")
        vm.ssh.download("/root/blob", tmp_path / "blob")
        digest = vm.ssh_run("sha256sum /root/blob").text.split()[0]
        assert hashlib.sha256((tmp_path / "blob").read_bytes()).hexdigest() == digest

        # two sessions at once: both sleep 3 s; together well under 6 s
        results: list[float] = []

        def session() -> None:
            results.append(vm.ssh_run("sleep 3; echo done").seconds)

        started = time.monotonic()
        threads = [threading.Thread(target=session) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 2 and all(s >= 3 for s in results)
        assert time.monotonic() - started < 5.5, results
        # a timeout ends the command, not the run
        r = vm.ssh_run("sleep 30", timeout=2, check=False)
        assert r.timed_out and r.exit_code is None
    assert vm.state.qemu_exit is not None


def test_commands_over_ssh_are_isolated_and_survive_each_others_failures(
    debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    """Commands share resident shells: none may see another's cd, variables or exit, break the
    stream with its quoting, or take the channel down when it kills its shell or times out."""
    kernel, image = debian
    with VM(kernel, image, tmp_path / "vm") as vm:
        assert vm.ready, vm.console_tail()
        assert vm.ssh_run("printf 'no newline'").stdout == b"no newline"
        assert vm.ssh_run("cd /tmp; X=1; exit 7", check=False).exit_code == 7
        assert vm.ssh_run('pwd; echo "${X-unset}"').text == "/root\nunset\n"
        r = vm.ssh_run("echo \"it's; unbalanced", check=False)
        assert r.exit_code == 2 and r.stderr, r  # the shell's syntax error, not a hang
        assert vm.ssh_run('echo "it\'s"').text == "it's\n"
        r = vm.ssh_run("kill -9 $$", timeout=20, check=False)
        assert r.exit_code is None and r.stopped_by and not r.timed_out, r
        assert vm.ssh_run("echo after").text == "after\n"
        r = vm.ssh_run("sh -c 'kill -TERM $$'", check=False)
        assert (r.exit_code, r.signal) == (128 + 15, 15), r  # killed by a signal: reported so
        assert vm.ssh_run("cat; echo", stdin=b"from stdin").text == "from stdin\n"
        big = vm.ssh_run("head -c 3000000 /dev/zero | tr '\\0' x; echo err >&2")
        assert (len(big.stdout), set(big.stdout), big.stderr) == (3_000_000, {ord("x")}, b"err\n")
        r = vm.ssh_run("sleep 30", timeout=2, check=False)  # a hang: the VM's last command
        assert r.timed_out and r.exit_code is None


def test_a_frozen_guest_ends_ssh_commands_at_their_deadline(
    debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    """With the guest's CPUs stopped nothing in it answers: a command in a resident shell and
    one with stdin (its own session) must both come back, unfinished, near their deadline."""
    kernel, image = debian
    with VM(kernel, image, tmp_path / "vm") as vm:
        assert vm.ssh_run("true").ok  # a resident shell is open and idle
        vm.qmp.command("stop")
        for stdin in (b"", b"data"):
            started = time.monotonic()
            r = vm.ssh.run("cat >/dev/null", 3.0, vm.abort_reason, stdin)
            took = time.monotonic() - started
            assert r.exit_code is None and (r.timed_out or r.stopped_by), r
            assert took < 3.0 + CONNECT_ATTEMPT + 2.0, (stdin, took, r)
        vm.qmp.command("cont")


def test_boot_cli_runs_the_command_over_ssh(arch: ArchProfile, tmp_path: Path) -> None:
    done = memharness(
        "boot", "--json", "--arch", arch.name, "--image", "debian", "--ssh",
        "--artifacts", str(tmp_path), "--", "sh", "-c", 'echo "$0 x  y"; echo e >&2; exit 4', "a b",
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    data = json.loads(done.stdout)
    assert (data["stdout"], data["stderr"], data["exit_code"]) == ("a b x  y\n", "e\n", 4)
    transcript = (Path(data["artifacts"]) / "transcript.log").read_text()
    assert "[ssh] $ " in transcript


def test_ssh_needs_the_debian_image(arch: ArchProfile, tmp_path: Path) -> None:
    done = memharness("boot", "--arch", arch.name, "--ssh", "--artifacts", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "memharness: error: --ssh needs --image debian: the initramfs runs no sshd"
    ]


def test_a_layout_scenario_passes_on_the_image_as_on_the_initramfs(
    arch: ArchProfile, tmp_path: Path
) -> None:
    scenario = LAYOUT_SCENARIO[arch.name]
    reports = {}
    for image in ("initramfs", "debian"):
        done, report = run_json(
            tmp_path / image, "--arch", arch.name, "--scenario", scenario, "--image", image
        )
        assert done.returncode == 0, (done.stderr, report)
        reports[image] = report["results"][0]
    steps = {}
    for image, row in reports.items():
        record = json.loads((Path(row["artifacts"]) / "result.json").read_text())
        steps[image] = [(s["name"], s["status"]) for s in record["details"]["steps"]]
    assert len(steps["debian"]) > 3
    assert steps["debian"] == steps["initramfs"]
    assert reports["debian"]["outcome"] == reports["initramfs"]["outcome"] == "pass"
    assert "--image debian" in reports["debian"]["reproducer"]


def test_a_corrupt_disk_is_an_infra_error_not_a_hang(
    arch: ArchProfile, debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    kernel, image = debian
    assert image.rootfs is not None
    bad = tmp_path / "rootfs.qcow2"
    bad.write_bytes(b"QFI\xfb" + b"\0" * 4096)  # a qcow2 magic and nothing valid after it
    broken = replace(image, rootfs=replace(image.rootfs, disk=bad))
    started = time.monotonic()
    vm = VM(kernel, broken, tmp_path / "vm", VMOptions(boot_timeout=60))
    with pytest.raises(InfraError, match="qemu-img create"), vm:
        pass
    assert time.monotonic() - started < 30


def test_a_refused_login_is_an_infra_error_with_the_console(
    arch: ArchProfile, debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    kernel, image = debian
    assert image.rootfs is not None
    stranger = tmp_path / "id_ed25519"
    write_secret(stranger, new_key()[0])
    refused = replace(image, rootfs=replace(image.rootfs, client_key=stranger))
    with VM(kernel, refused, tmp_path / "vm") as vm:
        assert vm.ready
        with pytest.raises(InfraError, match="SSH to the guest refused: Authentication") as exc:
            vm.ssh  # noqa: B018
        assert "console tail" in str(exc.value)
    infra = vm.facts().infra
    assert infra is not None and "refused" in infra


def test_an_image_for_the_other_arch_is_refused_before_qemu(
    arch: ArchProfile, debian: tuple[Kernel, GuestImage], tmp_path: Path
) -> None:
    kernel, image = debian
    assert image.rootfs is not None
    other = "arm64" if arch.name == "x86_64" else "x86_64"
    foreign = replace(image, rootfs=replace(image.rootfs, arch=other))
    vm = VM(kernel, foreign, tmp_path / "vm")
    refused = f"is for {other}, not {arch.name}: pass --arch {other}"
    with pytest.raises(UserError, match=refused), vm:
        pass
    assert vm.state.qemu_exit is None  # never started


@pytest.mark.x86_64
def test_the_pytest_plugin_boots_scenarios_on_the_image(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--scenarios",
            "--image", "debian", "--arch", "x86_64", "-k", "dimm-plug-cycle",
            "--artifacts", str(tmp_path / "runs"),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed" in done.stdout
    (console,) = (tmp_path / "runs").glob("**/dimm-plug-cycle-*/console.log")
    assert "memharness: sshd started" in console.read_text()  # it was the Debian image
