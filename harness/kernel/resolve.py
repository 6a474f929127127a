"""Turns the user's --kernel value into a ``Kernel``: default Debian, debian:PKG, or a path."""

from pathlib import Path

from harness.arch import ArchProfile
from harness.kernel.model import Kernel


def resolve_kernel(
    arch: ArchProfile, spec: str | None = None, modules: str | None = None
) -> Kernel:
    """None → Debian's default kernel; 'debian:linux-image-...' → that package; 'debian:6.12'
    → that series' newest package; else a path."""
    if spec is None or spec in ("", "debian"):
        from harness.kernel.debian import debian_kernel

        return debian_kernel(arch)
    if spec.startswith("debian:"):
        from harness.kernel.debian import debian_kernel

        return debian_kernel(arch, spec.removeprefix("debian:"))
    from harness.kernel.local import local_kernel

    return local_kernel(Path(spec), arch, Path(modules) if modules else None)


def spec_for_arch(values: list[str], arch: ArchProfile) -> str | None:
    """Picks this arch's kernel from repeatable --kernel values: 'ARCH=SPEC' first, then a
    bare SPEC (which then applies to every arch and must match it)."""
    from harness.arch import get_arch, names_and_aliases

    bare = None
    for value in values:
        name, sep, spec = value.partition("=")
        if sep and name in names_and_aliases():
            if get_arch(name).name == arch.name:
                return spec
        elif value:
            bare = value
    return bare
