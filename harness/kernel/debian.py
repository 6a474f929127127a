"""The default kernel: Debian's linux-image package for the guest arch, unpacked and ready.

The metapackage (linux-image-amd64) is followed to the versioned image package; the result is
cached by package name and version, modules are depmod'ed in place, and on x86_64 the PVH
vmlinux is extracted next to the bzImage.
"""

import re
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once
from harness.debian import DebianArchive, Package, extract_deb, first_dependency
from harness.errors import InfraError, UserError
from harness.kernel.image_format import bzimage_note, extract_pvh_vmlinux
from harness.kernel.model import Kernel
from harness.kernel.version import SERIES

MANIFEST = "kernel.json"


def resolve_image_package(archive: DebianArchive, name: str) -> Package:
    """Follows metapackages (linux-image-amd64 → linux-image-6.1.0-NN-amd64)."""
    package = archive.show([name])[0]
    for _ in range(4):
        target = first_dependency(package.depends)
        if not target.startswith("linux-image-"):
            return package
        package = archive.show([target])[0]
    raise InfraError(f"{name}: metapackage chain too long")


def series_packages(names: list[str], series: str, debian_arch: str) -> list[str]:
    """Of ``names``, the plain (not -rt, -cloud, -dbg) kernel images of one series for one
    Debian arch, newest first: linux-image-6.12.117+deb12-amd64-unsigned before ...-115...,
    linux-image-6.1.0-57-amd64-unsigned before -56 (6.1's names carry an ABI number instead
    of the point release)."""
    pattern = re.compile(
        rf"^linux-image-{re.escape(series)}\.(\d+)(?:-(\d+))?(?:\+deb\d+)?-"
        rf"{re.escape(debian_arch)}-unsigned$"
    )
    found = [(m, n) for n in names if (m := pattern.match(n))]
    found.sort(key=lambda mn: (int(mn[0].group(1)), int(mn[0].group(2) or 0)), reverse=True)
    return [n for _, n in found]


def resolve_series(archive: DebianArchive, arch: ArchProfile, series: str) -> str:
    """debian:6.12 → the newest linux-image-6.12.*-<arch>-unsigned this archive has."""
    found = series_packages(archive.names("linux-image-"), series, arch.debian_arch)
    if not found:
        raise UserError(
            f"Debian's {arch.debian_arch} archive has no linux-image-{series}.* kernel: "
            "`apt-cache pkgnames linux-image-` lists what it has (or run `memharness update`)"
        )
    return found[0]


def debian_kernel(arch: ArchProfile, package: str | None = None) -> Kernel:
    """Downloads (once) and unpacks Debian's kernel for ``arch``; ``package`` is a package
    name or a series (``6.12``: its newest package)."""
    archive = DebianArchive(arch)
    if package is not None and SERIES.match(package):
        package = resolve_series(archive, arch, package)
    image_pkg = resolve_image_package(archive, package or f"linux-image-{arch.debian_arch}")
    key = f"debian-{image_pkg.name}-{image_pkg.version}"

    def build(tmp: Path) -> None:
        (deb,) = archive.download([image_pkg])
        root = tmp / "root"
        extract_deb(deb, root)
        releases = [p.name for p in (root / "lib" / "modules").iterdir() if p.is_dir()]
        if len(releases) != 1:
            raise InfraError(f"{deb.name}: expected one lib/modules/<release>, found {releases}")
        release = releases[0]
        proc.require_tool("depmod", "kmod")
        proc.run(["depmod", "-b", str(root), release], timeout=300)
        boot = root / "boot" / f"vmlinuz-{release}"
        boot_image, kind, notes = boot, arch.boot_image_kind, []
        if arch.pvh_boot:
            vmlinux, why_not = extract_pvh_vmlinux(boot.read_bytes())
            if vmlinux is not None:
                boot_image, kind = tmp / "vmlinux-pvh", "pvh"
                boot_image.write_bytes(vmlinux)
            else:
                notes.append(bzimage_note(str(why_not)))
        kernel = Kernel(
            arch=arch,
            release=release,
            boot_image=boot_image,
            boot_kind=kind,
            origin=f"Debian {image_pkg.name} {image_pkg.version}",
            identity=key,
            modules_root=root,
            config=root / "boot" / f"config-{release}",
            notes=tuple(notes),
        )
        kernel.save(tmp / MANIFEST)

    # Modules are many and only loaded by the guest: the boot image and config are checked.
    return Kernel.load(build_once("kernels", key, build, unchecked=("root/lib",)) / MANIFEST)
