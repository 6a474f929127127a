"""Kernel image recognition, PVH notes, kconfig checks (pure, on constructed real layouts)."""

import lzma
import struct
from pathlib import Path

import pytest

from harness.arch import get_arch
from harness.kernel import kconfig
from harness.kernel.build import boots_through_pvh
from harness.kernel.image_format import (
    KASAN_NO_PVH,
    NO_PVH_NOTE,
    bzimage_payload,
    decompress,
    extract_pvh_vmlinux,
    has_pvh_note,
    identify,
)


def bzimage(release: str, payload: bytes) -> bytes:
    """A bzImage with the real setup-header layout (offsets from Documentation/x86/boot.rst)."""
    setup_sects = 4
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    version_at = 0x400
    struct.pack_into("<H", setup, 0x20E, version_at - 0x200)
    setup[version_at : version_at + len(release) + 40] = (
        f"{release} (builder@host) #1 SMP".encode().ljust(len(release) + 40, b"\0")
    )
    struct.pack_into("<II", setup, 0x248, 0x10, len(payload))
    return bytes(setup) + b"\0" * 0x10 + payload


def elf_with_note(name: bytes, note_type: int, machine: int = 62) -> bytes:
    """A minimal ELF64 with one PT_NOTE segment."""
    desc = b"\0" * 8
    note = struct.pack("<III", len(name) + 1, len(desc), note_type) + name + b"\0"
    note += b"\0" * (-len(note) % 4) + desc
    ehdr = bytearray(64)
    ehdr[:4] = b"\x7fELF"
    ehdr[4], ehdr[5] = 2, 1
    struct.pack_into("<H", ehdr, 18, machine)
    struct.pack_into("<Q", ehdr, 32, 64)  # e_phoff
    struct.pack_into("<HH", ehdr, 54, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(note), len(note), 4)
    return bytes(ehdr) + phdr + note


def test_bzimage_identified_with_release_and_payload() -> None:
    vmlinux = elf_with_note(b"Xen", 18)
    image = bzimage("6.1.0-56-amd64", lzma.compress(vmlinux, format=lzma.FORMAT_XZ))
    info = identify(image)
    assert info is not None
    assert (info.kind, info.arch_hint, info.release) == ("bzImage", "x86_64", "6.1.0-56-amd64")
    assert decompress(bzimage_payload(image)) == vmlinux


def test_pvh_note_detection() -> None:
    assert has_pvh_note(elf_with_note(b"Xen", 18))
    assert not has_pvh_note(elf_with_note(b"Xen", 17))
    assert not has_pvh_note(elf_with_note(b"GNU", 18))


def test_a_kasan_kernel_is_never_booted_through_pvh() -> None:
    """The PVH vmlinux is used only when the note is there and the kernel is not KASAN (whose
    kasan_init prints the banner from its .rodata): for a KASAN bzImage the reason is given."""
    plain = elf_with_note(b"Xen", 18) + b"Linux version 6.1.0\0"
    kasan = elf_with_note(b"Xen", 18) + b"\0KernelAddressSanitizer initialized\n\0"
    for vmlinux, expected in ((plain, (plain, None)), (kasan, (None, KASAN_NO_PVH))):
        image = bzimage("6.1.192", lzma.compress(vmlinux, format=lzma.FORMAT_XZ))
        assert extract_pvh_vmlinux(image) == expected
    noteless = bzimage("6.1.192", lzma.compress(elf_with_note(b"Xen", 17), format=lzma.FORMAT_XZ))
    assert extract_pvh_vmlinux(noteless) == (None, NO_PVH_NOTE)


@pytest.mark.parametrize(
    ("arch", "config", "pvh"),
    [
        ("x86_64", {"CONFIG_PVH": "y"}, True),
        ("x86_64", {"CONFIG_PVH": "y", "CONFIG_KASAN": "y"}, False),
        ("x86_64", {"CONFIG_PVH": "n"}, False),
        ("arm64", {"CONFIG_PVH": "y"}, False),
    ],
)
def test_which_builds_boot_through_pvh(arch: str, config: dict[str, str], pvh: bool) -> None:
    assert boots_through_pvh(get_arch(arch), config) is pvh


def test_arm64_image_and_vmlinux_and_garbage() -> None:
    image = bytearray(0x100)
    image[0x38:0x3C] = b"ARM\x64"
    image += b"Linux version 6.1.0-56-arm64 (debian-kernel@lists.debian.org)"
    info = identify(bytes(image))
    assert info is not None and (info.kind, info.arch_hint, info.release) == (
        "Image",
        "arm64",
        "6.1.0-56-arm64",
    )
    elf = identify(elf_with_note(b"Xen", 18, machine=183))
    assert elf is not None and (elf.kind, elf.arch_hint) == ("vmlinux", "arm64")
    assert identify(b"root:x:0:0:root:/root:/bin/bash\n" * 10) is None


CONFIG = """\
CONFIG_ZONE_DEVICE=y
CONFIG_X86_PMEM_LEGACY=m
# CONFIG_DEBUG_VM is not set
CONFIG_NR_CPUS=64
"""


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ("ZONE_DEVICE", True),
        ("CONFIG_ZONE_DEVICE=y", True),
        ("X86_PMEM_LEGACY", True),
        ("X86_PMEM_LEGACY=y", False),
        ("DEBUG_VM", False),
        ("DEBUG_VM=n", True),
        ("NR_CPUS=64", True),
        ("ACPI_NFIT", False),
    ],
)
def test_requirements(spec: str, ok: bool) -> None:
    options = kconfig.parse_config(CONFIG)
    assert kconfig.Requirement.parse(spec).satisfied_by(options) is ok


def test_fragment_requirements_keep_not_set_lines() -> None:
    reqs = kconfig.fragment_requirements("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n")
    assert [str(r) for r in reqs] == ["CONFIG_A=y", "CONFIG_B=n", "CONFIG_C=m"]


# -- debian:SERIES short names -----------------------------------------------------------------

NAMES = [  # as `apt-cache pkgnames linux-image-` lists them (amd64, bookworm, Dec 2026)
    "linux-image-6.1.0-9-amd64-unsigned",
    "linux-image-6.1.0-57-amd64-unsigned",
    "linux-image-6.1.0-57-amd64",
    "linux-image-6.1.0-57-rt-amd64-unsigned",
    "linux-image-6.1.0-57-cloud-amd64-unsigned",
    "linux-image-6.1.0-57-amd64-dbg",
    "linux-image-6.12.9+deb12-amd64-unsigned",
    "linux-image-6.12.117+deb12-amd64-unsigned",
    "linux-image-6.12.115+deb12-amd64-unsigned",
    "linux-image-6.12.117+deb12-rt-amd64-unsigned",
    "linux-image-6.12-amd64-dbg",
    "linux-image-6.12.117+deb12-arm64-unsigned",
    "linux-image-amd64",
]


@pytest.mark.parametrize(
    ("series", "arch", "newest"),
    [
        ("6.12", "amd64", "linux-image-6.12.117+deb12-amd64-unsigned"),  # not 6.12.9 (text order)
        ("6.1", "amd64", "linux-image-6.1.0-57-amd64-unsigned"),  # the ABI number, not -9
        ("6.12", "arm64", "linux-image-6.12.117+deb12-arm64-unsigned"),
        ("6.2", "amd64", None),
    ],
)
def test_a_series_names_its_newest_plain_kernel(series: str, arch: str, newest: str | None) -> None:
    from harness.kernel.debian import series_packages

    found = series_packages(NAMES, series, arch)
    assert (found[0] if found else None) == newest
    assert not any(x in n for n in found for x in ("-rt-", "-cloud-", "-dbg"))


def test_a_vmlinux_pvh_cannot_start_is_refused_before_qemu_with_the_fix(tmp_path: Path) -> None:
    from harness.errors import UserError
    from harness.kernel.local import local_kernel

    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(
        elf_with_note(b"Xen", 18) + b"Linux version 6.1.192 (u@h) #1\0"
        b"KernelAddressSanitizer initialized\n\0"
    )
    with pytest.raises(
        UserError, match=r"cannot start through .*\(a KASAN kernel.*pass its bzImage"
    ):
        local_kernel(vmlinux, get_arch("x86_64"))
    noteless = tmp_path / "vmlinux-noteless"
    noteless.write_bytes(elf_with_note(b"Xen", 17) + b"Linux version 6.1.192 (u@h) #1\0")
    with pytest.raises(UserError, match=r"\(no PVH entry note in the vmlinux\): pass its bzImage"):
        local_kernel(noteless, get_arch("x86_64"))
