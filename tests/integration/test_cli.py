"""The `memharness boot` contract that scripts depend on, through the real CLI process."""

import json
import os
from pathlib import Path

import pytest

from harness.arch import ArchProfile
from harness.kernel.model import Kernel
from tests.integration.cli import boot_json, memharness


def test_boot_prints_stdout_and_exits_with_status(arch: ArchProfile, tmp_path: Path) -> None:
    done = memharness(
        "boot",
        "--arch",
        arch.name,
        "--artifacts",
        str(tmp_path),
        "--",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    )
    assert done.returncode == 3
    assert done.stdout == "hello\n"
    assert "oops" in done.stderr
    assert "command-failed" in done.stderr


def test_boot_json(arch: ArchProfile, tmp_path: Path) -> None:
    done = memharness(
        "boot", "--arch", arch.name, "--json", "--artifacts", str(tmp_path), "--", "uname", "-m"
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"outcome", "exit_code", "stdout", "artifacts", "boot_seconds"} <= set(data)
    assert data["outcome"] == "pass" and data["exit_code"] == 0
    assert data["stdout"].strip() == arch.uname_machine
    artifacts = Path(data["artifacts"])
    for name in (
        "qemu.argv",
        "console.log",
        "qmp.log",
        "transcript.log",
        "result.json",
        "splats.json",
        "reproduce.sh",
    ):
        assert (artifacts / name).is_file(), name
    assert "memharness boot" in (artifacts / "reproduce.sh").read_text()


def test_boot_panic_exits_1_with_splat(arch: ArchProfile, tmp_path: Path) -> None:
    done = boot_json(arch, tmp_path, "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["outcome"] == "kernel-splat"
    assert data["splats"][0].startswith("kernel panic: sysrq triggered crash")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kernel", "/nonexistent/bzImage"], "does not exist"),
        (["--kernel", "/etc/hostname"], "is not a kernel image"),
        (["--arch", "sparc"], "unknown arch"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    done = memharness("boot", *args, "--artifacts", str(tmp_path), "--", "true", timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not list(tmp_path.iterdir()), "nothing may start before input is validated"


def test_kernel_for_the_other_arch_is_refused(
    kernel: Kernel, arch: ArchProfile, tmp_path: Path
) -> None:
    other = "arm64" if arch.name == "x86_64" else "x86_64"
    image = (
        kernel.modules_root / "boot" / f"vmlinuz-{kernel.release}"
        if kernel.modules_root
        else kernel.boot_image
    )
    done = memharness(
        "boot",
        "--arch",
        other,
        "--kernel",
        str(image),
        "--artifacts",
        str(tmp_path),
        "--",
        "true",
        timeout=60,
    )
    assert done.returncode == 2
    assert f"not {other}" in done.stderr and done.stderr.count("\n") == 1


def test_missing_qemu_is_one_line_exit_2(arch: ArchProfile, tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH, QEMU included
    done = memharness(
        "boot",
        "--arch",
        arch.name,
        "--artifacts",
        str(tmp_path / "a"),
        "--",
        "true",
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert arch.qemu_binary in done.stderr and "install" in done.stderr
    assert done.stderr.count("\n") == 1


def test_scenarios_and_layout_json() -> None:
    listed = json.loads(memharness("scenarios", "--json", timeout=60).stdout)
    assert {"legacy-lower-half", "dt-after-mem-limit"} <= {s["name"] for s in listed}
    done = memharness(
        "layout", "--arch", "x86_64", "--scenario", "legacy-lower-half", "--json", timeout=60
    )
    data = json.loads(done.stdout)
    assert data["collision_sections"] == [8] and data["cmdline"] == ["memmap=64M!0x40000000"]
    text = memharness(
        "layout", "--arch", "arm64", "--scenario", "dt-after-mem-limit", timeout=60
    ).stdout
    assert "16  0x0080000000-0x0087ffffff" in text and "collision" in text


def test_run_writes_table_json_and_html(arch: ArchProfile, tmp_path: Path) -> None:
    scenario = {"x86_64": "legacy-subsection", "arm64": "dt-after-mem-limit"}[arch.name]
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    done = memharness(
        "run",
        "--arch",
        arch.name,
        "--scenario",
        scenario,
        "--artifacts",
        str(tmp_path / "a"),
        "--json",
        str(out),
        "--html",
        str(page),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert scenario in done.stdout and "pass" in done.stdout
    assert "SKIPPED" in done.stdout  # idle tracking is off in Debian's kernels: said loudly
    report = json.loads(out.read_text())
    assert report["passed"] == report["total"] == 1
    assert report["results"][0]["collision_sections"]
    assert "<pre>" in page.read_text() and scenario in page.read_text()


def bad_catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[scenario]]\nname = "off-by-one-meg"\narch = "x86_64"\nsummary = "s"\n'
        'layout = { kind = "legacy", memory = "2G", pmem = [{ start = "0x40100000",'
        ' size = "64M" }] }\n'
    )
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["--scenario", "nope"],
        ["--catalogue", "BAD"],
        ["--arch", "x86_64", "--scenario", "dt-after-mem-limit"],
    ],
)
def test_run_bad_input_is_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    args = [str(bad_catalogue(tmp_path)) if a == "BAD" else a for a in args]
    done = memharness("run", *args, "--artifacts", str(tmp_path / "a"), timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("memharness: error")]
    assert len(errors) == 1
    assert not (tmp_path / "a").exists()


@pytest.mark.x86_64
def test_kernel_without_a_needed_option_is_refused_before_qemu(
    kernel: Kernel, tmp_path: Path
) -> None:
    assert kernel.modules_root is not None and kernel.config is not None
    tree = tmp_path / "linux"
    boot = tree / "arch/x86/boot"
    boot.mkdir(parents=True)
    (boot / "bzImage").write_bytes(
        (kernel.modules_root / "boot" / f"vmlinuz-{kernel.release}").read_bytes()
    )
    config = kernel.config.read_text().replace(
        "CONFIG_X86_PMEM_LEGACY=m", "# CONFIG_X86_PMEM_LEGACY is not set"
    )
    (tree / ".config").write_text(config)
    done = memharness(
        "run",
        "--arch",
        "x86_64",
        "--scenario",
        "legacy-lower-half",
        "--kernel",
        str(tree),
        "--artifacts",
        str(tmp_path / "a"),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "lacks CONFIG_X86_PMEM_LEGACY" in done.stderr
        and "scenario legacy-lower-half" in done.stderr
    )
    assert not (tmp_path / "a").exists()
