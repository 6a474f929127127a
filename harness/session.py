"""One guest session from kernel choice to result: what `memharness boot` and the fixtures use.

Inputs are validated and the kernel and image prepared (downloads and builds happen here, once)
before QEMU starts, so bad input is a one-line error and never a half-booted VM.
"""

import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.arch import ArchProfile
from harness.artifacts import artifacts_dir
from harness.errors import UserError
from harness.image.builder import GuestImage, prepare_image
from harness.kernel.model import Kernel
from harness.kernel.resolve import resolve_kernel
from harness.result import RunResult, bytes_json, finish_run, record_interruption
from harness.vm.channel import CommandResult, argv_script
from harness.vm.machine import VM, VMOptions, require_qemu


def prepare(
    arch: ArchProfile, kernel_spec: str | None, modules: str | None = None, image: str = "initramfs"
) -> tuple[Kernel, GuestImage]:
    """Checks the host and the inputs, then fetches/builds the kernel and image (cached)."""
    require_qemu(arch)
    kernel = resolve_kernel(arch, kernel_spec, modules)
    return kernel, prepare_image(kernel, image)


def image_flags(image: str) -> list[str]:
    """The command-line words that choose ``image`` (none for the default)."""
    return [] if image == "initramfs" else ["--image", image]


def reproducer(subcommand: str, arch: ArchProfile, kernel_spec: str | None, *extra: str) -> str:
    parts = ["memharness", subcommand, "--arch", arch.name]
    if kernel_spec:
        parts += [
            "--kernel",
            str(Path(kernel_spec).resolve()) if Path(kernel_spec).exists() else kernel_spec,
        ]
    return shlex.join([*parts, *extra])


def boot_and_run(
    arch: ArchProfile,
    kernel_spec: str | None,
    modules: str | None,
    argv: Sequence[str],
    timeout: float,
    artifacts_root: Path,
    accel: str = "tcg",
    boot_timeout: float = 180.0,
    image: str = "initramfs",
    over_ssh: bool = False,
) -> tuple[RunResult, CommandResult | None]:
    """Boots, runs ``argv`` once (exactly as exec would get it), stops; returns the run and the
    command's result (``over_ssh``: through an SSH login into the Debian image instead of the
    agent).  A signal stops QEMU and still writes the run's record, with outcome
    ``interrupted`` (``RunInterrupted`` carries it)."""
    if over_ssh and image != "debian":
        raise UserError("--ssh needs --image debian: the initramfs runs no sshd")
    kernel, guest = prepare(arch, kernel_spec, modules, image)
    started = time.monotonic()
    artifacts = artifacts_dir(artifacts_root, "boot", arch.name)
    flags = [*image_flags(image), *(["--ssh"] if over_ssh else [])]
    repro = reproducer("boot", arch, kernel_spec, *flags, "--timeout", f"{timeout:g}", "--", *argv)
    options = VMOptions(accel=accel, boot_timeout=boot_timeout, command_timeout=timeout)
    cmd_result = None
    vm = VM(kernel, guest, artifacts, options)
    try:
        with vm:
            if vm.ready:
                run = vm.ssh_run if over_ssh else vm.run
                cmd_result = run(argv_script(argv), timeout=timeout)
    except KeyboardInterrupt as exc:
        raise record_interruption(
            exc, lambda override: finish_run(vm, "boot", repro, started, override=override)
        ) from None
    return finish_run(vm, "boot", repro, started), cmd_result


def boot_json(result: RunResult, cmd_result: CommandResult | None) -> dict[str, Any]:
    """`memharness boot --json`'s one schema (see the README)."""
    return {
        "outcome": str(result.outcome),
        "exit_code": cmd_result.exit_code if cmd_result else None,
        **bytes_json("stdout", cmd_result.stdout if cmd_result else b""),
        **bytes_json("stderr", cmd_result.stderr if cmd_result else b""),
        "artifacts": str(result.artifacts),
        "boot_seconds": result.boot_seconds,
        "reason": result.reason,
        "splats": [s.title for s in result.splats],
        "arch": result.machine["arch"],
        "kernel": result.machine["kernel"],
        "accel": result.machine["accel"],
        "accel_note": result.machine["accel_note"],
    }
