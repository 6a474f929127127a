"""Architecture profiles: every difference between x86_64 and arm64 guests, as data.

Code asks a profile (``ARCHES["arm64"].console_tty``) instead of branching on the arch name, so a
new architecture is a new table entry.  Values are the verified recipes of DESIGN.md §3.
"""

import platform
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ArchProfile:
    """How to build for, boot and reason about one guest architecture."""

    name: str  # memharness's name, also the pytest marker
    debian_arch: str  # Debian's name for package downloads
    uname_machine: str  # what `uname -m` prints in the guest
    gnu_triplet: str  # cross toolchain prefix without the trailing dash
    kernel_arch: str  # ARCH= for kbuild
    kernel_image: str  # boot image inside a kbuild tree
    elf_machine: int  # e_machine of vmlinux and modules
    qemu_binary: str
    qemu_package: str  # Debian package that ships qemu_binary
    cross_gcc_package: str  # Debian package of the cross compiler (gnu_triplet-gcc)
    boot_image_kind: str  # what a compressed kernel of this arch is called: bzImage | Image
    image_magic: tuple[int, bytes]  # (offset, bytes) that identify boot_image_kind
    pvh_boot: bool  # QEMU can boot an uncompressed vmlinux directly (x86 PVH entry)
    machine: str  # -machine value
    cpu: str | None  # -cpu value; None keeps QEMU's default
    console_tty: str  # console= for the serial port QEMU logs
    ram_base: int  # guest physical address where boot RAM starts
    default_memory: int  # bytes of RAM for a plain boot
    section_size: int = 128 * MiB  # SECTION_SIZE_BITS=27 on both arches (6.1)
    subsection_size: int = 2 * MiB
    uefi_firmware: tuple[str, ...] = ()  # candidate firmware images, first existing wins
    kvm_host_machine: str = ""  # host `uname -m` on which KVM can run this guest
    acpi_needs_uefi: bool = False  # ACPI (memory-device hotplug) only when booted through UEFI

    @property
    def cross_compile(self) -> str:
        """CROSS_COMPILE prefix: empty when the host runs this arch natively."""
        return "" if platform.machine() == self.uname_machine else f"{self.gnu_triplet}-"

    @property
    def cc(self) -> str:
        return f"{self.cross_compile}gcc"

    @property
    def compiler_package(self) -> str:
        """The Debian package that provides ``cc`` on this host."""
        return self.cross_gcc_package if self.cross_compile else "gcc"

    def firmware(self) -> str | None:
        """The first installed UEFI firmware image, or None when there is none."""
        return next((c for c in self.uefi_firmware if Path(c).is_file()), None)


X86_64 = ArchProfile(
    name="x86_64",
    debian_arch="amd64",
    uname_machine="x86_64",
    gnu_triplet="x86_64-linux-gnu",
    kernel_arch="x86_64",
    kernel_image="arch/x86/boot/bzImage",
    elf_machine=62,  # EM_X86_64
    qemu_binary="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    cross_gcc_package="gcc-x86-64-linux-gnu",
    boot_image_kind="bzImage",
    image_magic=(0x202, b"HdrS"),  # the x86 boot protocol header
    pvh_boot=True,
    machine="q35,nvdimm=on",
    cpu=None,
    console_tty="ttyS0",
    ram_base=0,
    default_memory=1 * GiB,
    kvm_host_machine="x86_64",
)

ARM64 = ArchProfile(
    name="arm64",
    debian_arch="arm64",
    uname_machine="aarch64",
    gnu_triplet="aarch64-linux-gnu",
    kernel_arch="arm64",
    kernel_image="arch/arm64/boot/Image",
    elf_machine=183,  # EM_AARCH64
    qemu_binary="qemu-system-aarch64",
    qemu_package="qemu-system-arm",
    cross_gcc_package="gcc-aarch64-linux-gnu",
    boot_image_kind="Image",
    image_magic=(0x38, b"ARM\x64"),  # arm64 Image header
    pvh_boot=False,
    machine="virt",
    cpu="cortex-a57",  # -cpu max is ~5x slower under TCG (pointer authentication)
    console_tty="ttyAMA0",
    ram_base=0x4000_0000,
    default_memory=1 * GiB,
    uefi_firmware=("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",),
    kvm_host_machine="aarch64",
    acpi_needs_uefi=True,
)

ARCHES: dict[str, ArchProfile] = {p.name: p for p in (X86_64, ARM64)}
ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64"}


def by_elf_machine(machine: int) -> ArchProfile | None:
    """The profile whose vmlinux has this e_machine, if any."""
    return next((p for p in ARCHES.values() if p.elf_machine == machine), None)


def names_and_aliases() -> tuple[str, ...]:
    """Every name ``get_arch`` accepts (for ARCH=VALUE options)."""
    return (*ARCHES, *ALIASES)


def host_arch() -> ArchProfile:
    """The profile of the machine memharness runs on (for host tools such as kbuild's)."""
    return get_arch(platform.machine())


def get_arch(name: str) -> ArchProfile:
    """Looks up a profile by memharness, Debian or uname name."""
    key = ALIASES.get(name, name)
    try:
        return ARCHES[key]
    except KeyError:
        raise UserError(f"unknown arch {name!r}: use one of {', '.join(ARCHES)}") from None


def parse_arches(spec: str) -> list[ArchProfile]:
    """'x86_64,arm64' → profiles, in the order given, without repeats."""
    seen: dict[str, ArchProfile] = {}
    for part in spec.split(","):
        if part.strip():
            profile = get_arch(part.strip())
            seen.setdefault(profile.name, profile)
    if not seen:
        raise UserError("no arch given: use --arch x86_64, --arch arm64 or --arch x86_64,arm64")
    return list(seen.values())
