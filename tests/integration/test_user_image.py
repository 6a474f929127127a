"""A user's own image (``--image PATH``) on real QEMU, both arches, Debian's kernels: no agent
and no sshd, only a getty on the serial console.  memharness logs in over the console
(pexpect), runs commands with their exit status, plays a layout scenario, reports a splat,
hands the console to a person (`memharness shell`), and refuses a bad image in one line."""

import json
import os
import time
from pathlib import Path

import pexpect
import pytest

from harness.arch import ArchProfile
from harness.image.user import PASSWORD_ENV
from tests.integration.cli import memharness, qemus, run_json, spawn_shell
from tests.integration.test_shell import UNTIL
from tests.integration.user_image import PASSWORD, UserImages, build_user_image

LAYOUT_SCENARIO = {"x86_64": "dimm-plug-cycle", "arm64": "virtio-mem-resize-arm64"}
OTHER = {"x86_64": "arm64", "arm64": "x86_64"}


@pytest.fixture(scope="module")
def images(arch: ArchProfile) -> UserImages:
    return build_user_image(arch)


def login_env(password: str = PASSWORD) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: password}


def test_a_command_over_the_console_with_its_status(
    arch: ArchProfile, images: UserImages, tmp_path: Path
) -> None:
    script = "echo 'a  b'; echo to-stderr >&2; dmesg | grep -c . >/dev/null; uname -m; exit 3"
    done = memharness(
        "boot", "--arch", arch.name, "--image", str(images.raw), "--artifacts", str(tmp_path),
        "--json", "--", "sh", "-c", script,
        env=login_env(),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    data = json.loads(done.stdout)
    # one serial line: stderr arrives merged into stdout, in order
    assert data["stdout"] == f"a  b\nto-stderr\n{arch.uname_machine}\n"
    assert (data["outcome"], data["exit_code"], data["stderr"]) == ("command-failed", 3, "")
    (console,) = tmp_path.glob("boot-*/console.log")
    text = console.read_text(errors="replace")
    assert "users-box login: root" in text  # QEMU's own log of the console is complete
    assert "memharness: user image /dev/vda mounted, switching to /sbin/init" in text


def test_a_layout_scenario_runs_as_on_the_initramfs(
    arch: ArchProfile, images: UserImages, tmp_path: Path
) -> None:
    scenario = LAYOUT_SCENARIO[arch.name]
    before = images.qcow2.stat().st_mtime_ns
    done, report = run_json(
        tmp_path, "--arch", arch.name, "--scenario", scenario, "--image", str(images.qcow2),
        env=login_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = report["results"]
    assert (result["scenario"], result["outcome"]) == (scenario, "pass"), result
    assert images.qcow2.stat().st_mtime_ns == before  # the overlay took every write


@pytest.mark.x86_64
def test_a_splat_on_the_console_fails_the_run(images: UserImages, tmp_path: Path) -> None:
    done = memharness(
        "boot", "--arch", "x86_64", "--image", str(images.raw), "--artifacts", str(tmp_path),
        "--json", "--", "sh", "-c", "echo c > /proc/sysrq-trigger",
        env=login_env(),
    )  # fmt: skip
    data = json.loads(done.stdout)
    assert data["outcome"] == "kernel-splat", data
    assert done.returncode == 1
    assert any("sysrq" in title.lower() for title in data["splats"]), data["splats"]


def test_shell_hands_over_the_console_after_a_step(
    arch: ArchProfile, images: UserImages, tmp_path: Path
) -> None:
    scenario, step, command, shows = UNTIL[arch.name]
    child = spawn_shell(
        tmp_path, "--arch", arch.name, "--image", str(images.raw), "--scenario", scenario,
        "--until", step,
        env=login_env(),
    )  # fmt: skip
    child.expect(f"stopped after step {step}")
    child.expect("Ctrl-] leaves")
    child.expect("# ")
    child.sendline(command)  # the guest as the step left it, typed by hand
    child.expect(shows.replace("cannot access", ""))  # busybox's ls says it its own way
    child.sendline("echo $((6 * 7)) $(uname -m)")
    child.expect(f"42 {arch.uname_machine}")
    child.send("\x1d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert qemus(tmp_path) == []
    (record,) = tmp_path.glob("shell-*/result.json")
    data = json.loads(record.read_text())
    assert data["outcome"] == "pass"
    assert str(images.raw) in data["reproducer"]


def test_bad_images_are_one_line(arch: ArchProfile, images: UserImages, tmp_path: Path) -> None:
    other = build_user_image_for(OTHER[arch.name])
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(os.urandom(1 << 20))
    cases = [
        (str(tmp_path / "missing.img"), PASSWORD, "does not exist"),
        (str(garbage), PASSWORD, "neither a filesystem memharness recognises"),
        # raw ext4: read on the host, refused before QEMU starts
        (str(other.raw), PASSWORD, f"is for {OTHER[arch.name]}, not {arch.name}"),
        # qcow2: refused by the initramfs at boot, the same fix named
        (str(other.qcow2), PASSWORD, "pass the other --arch or an image of this arch"),
        (str(images.raw), "wrong", "login as 'root' was refused"),
    ]
    for image, password, message in cases:
        started = time.monotonic()
        done = memharness(
            "boot", "--arch", arch.name, "--image", image, "--artifacts", str(tmp_path / "art"),
            "--", "true",
            env=login_env(password),
        )  # fmt: skip
        assert done.returncode == 2, (image, done.stderr)
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("memharness: error:")]
        assert len(lines) == 1 and message in lines[0], (image, done.stderr)
        assert time.monotonic() - started < 120
    assert qemus(tmp_path) == []


def build_user_image_for(arch_name: str) -> UserImages:
    from harness.arch import ARCHES

    return build_user_image(ARCHES[arch_name])
