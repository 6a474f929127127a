"""One guest session from kernel choice to result: what `memharness boot` and the fixtures use.

Inputs are validated and the kernel and image prepared (downloads and builds happen here, once)
before QEMU starts, so bad input is a one-line error and never a half-booted VM.
"""

import shlex
import time
from pathlib import Path

from harness.arch import ArchProfile
from harness.image.builder import GuestImage, build_guest_image
from harness.kernel import Kernel
from harness.kernel.resolve import resolve_kernel
from harness.result import RunResult, artifacts_dir, finish_run
from harness.vm.channel import CommandResult
from harness.vm.machine import VM, VMOptions, require_qemu


def prepare(
    arch: ArchProfile, kernel_spec: str | None, modules: str | None = None
) -> tuple[Kernel, GuestImage]:
    """Checks the host and the inputs, then fetches/builds the kernel and image (cached)."""
    require_qemu(arch)
    kernel = resolve_kernel(arch, kernel_spec, modules)
    return kernel, build_guest_image(kernel)


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
    command: str,
    timeout: float,
    artifacts_root: Path,
    accel: str = "tcg",
    boot_timeout: float = 180.0,
) -> tuple[RunResult, CommandResult | None]:
    """Boots, runs ``command`` once, stops; returns the run and the command's result."""
    kernel, image = prepare(arch, kernel_spec, modules)
    started = time.monotonic()
    artifacts = artifacts_dir(artifacts_root, "boot", arch.name)
    repro = reproducer("boot", arch, kernel_spec, "--timeout", f"{timeout:g}", "--", command)
    options = VMOptions(accel=accel, boot_timeout=boot_timeout, command_timeout=timeout)
    cmd_result = None
    with VM(kernel, image, artifacts, options) as vm:
        if vm.ready:
            cmd_result = vm.run(command, timeout=timeout)
    return finish_run(vm, "boot", repro, started), cmd_result
