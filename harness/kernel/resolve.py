"""Turns the user's --kernel value into a ``Kernel``: default Debian, debian:PKG, or a path."""

from pathlib import Path

from harness.arch import ArchProfile
from harness.kernel import Kernel


def resolve_kernel(
    arch: ArchProfile, spec: str | None = None, modules: str | None = None
) -> Kernel:
    """None → Debian's default kernel; 'debian:linux-image-...' → that package; else a path."""
    if spec is None or spec in ("", "debian"):
        from harness.kernel.debian import debian_kernel

        return debian_kernel(arch)
    if spec.startswith("debian:"):
        from harness.kernel.debian import debian_kernel

        return debian_kernel(arch, spec.removeprefix("debian:"))
    from harness.kernel.local import local_kernel

    return local_kernel(Path(spec), arch, Path(modules) if modules else None)
