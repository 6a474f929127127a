"""Recognise kernel boot images and turn an x86 bzImage into a PVH-bootable vmlinux.

Pure functions over bytes.  Under TCG the x86 kernel's self-decompression dominates boot time
(xz: ~11 s), while the uncompressed vmlinux boots straight through QEMU's PVH loader in ~4 s, so
memharness extracts it once and caches it (DESIGN.md §3).
"""

import bz2
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass

from harness.arch import ARCHES, by_elf_machine
from harness.proc import shielded

ELF_MAGIC = b"\x7fELF"
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point note


@dataclass(frozen=True)
class ImageInfo:
    kind: str  # bzImage | Image | vmlinux | gzip
    elf_machine: int | None  # e_machine for ELF images; None otherwise
    arch_hint: str | None  # x86_64 | arm64 when the format itself says so
    release: str | None  # uname -r when it can be read without booting


def identify(data: bytes) -> ImageInfo | None:
    """What kind of kernel image ``data`` is, or None when it is none we can boot."""
    for arch in ARCHES.values():
        offset, magic = arch.image_magic
        if len(data) > offset + 16 and data[offset : offset + len(magic)] == magic:
            header = arch.boot_image_kind == "bzImage"  # x86 boot protocol: version pointer
            release = bzimage_release(data) if header else banner_release(data)
            return ImageInfo(arch.boot_image_kind, None, arch.name, release)
    if data[:4] == ELF_MAGIC and len(data) > 64:
        machine = struct.unpack_from("<H", data, 18)[0]
        found = by_elf_machine(machine)
        return ImageInfo("vmlinux", machine, found.name if found else None, banner_release(data))
    if data[:2] == b"\x1f\x8b":
        return ImageInfo("gzip", None, None, None)
    return None


def bzimage_release(data: bytes) -> str | None:
    """uname -r from the setup header's kernel_version string."""
    pointer = struct.unpack_from("<H", data, 0x20E)[0]
    if not pointer:
        return None
    start = pointer + 0x200
    text = data[start : start + 256].split(b"\0")[0].decode(errors="replace")
    return text.split()[0] if text else None


def banner_release(data: bytes) -> str | None:
    """uname -r from the 'Linux version X (' banner of an uncompressed kernel."""
    match = re.search(rb"Linux version (\S+) \(", data)
    return match.group(1).decode(errors="replace") if match else None


def bzimage_payload(data: bytes) -> bytes:
    """The compressed vmlinux inside a bzImage (setup header payload_offset/length)."""
    setup_sects = data[0x1F1] or 4
    offset = (setup_sects + 1) * 512
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = offset + payload_offset
    return data[start : start + payload_length]


def decompress(payload: bytes) -> bytes | None:
    """Decompresses a kernel payload; None when the compressor is not available here."""
    if payload[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMADecompressor().decompress(payload)
    if payload[:2] == b"\x1f\x8b":
        return zlib.decompressobj(wbits=31).decompress(payload)
    if payload[:3] == b"BZh":
        return bz2.BZ2Decompressor().decompress(payload)
    if payload[:3] == b"\x5d\x00\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    tool = {b"\x28\xb5\x2f\xfd": "zstd", b"\x02\x21\x4c\x18": "lz4"}.get(payload[:4])
    if tool and shutil.which(tool):
        with shielded():  # a signal during the fork would be lost (see proc.spawn)
            result = subprocess.run(
                [tool, "-dc"], input=payload, capture_output=True, timeout=120, check=False
            )
        return result.stdout if result.returncode == 0 or result.stdout else None
    return None


def has_pvh_note(elf: bytes) -> bool:
    """True when the ELF carries XEN_ELFNOTE_PHYS32_ENTRY, i.e. QEMU can boot it via PVH."""
    if elf[:4] != ELF_MAGIC or elf[4] != 2:  # ELFCLASS64 only
        return False
    phoff = struct.unpack_from("<Q", elf, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        base = phoff + i * phentsize
        p_type = struct.unpack_from("<I", elf, base)[0]
        if p_type != PT_NOTE:
            continue
        offset = struct.unpack_from("<Q", elf, base + 8)[0]
        size = struct.unpack_from("<Q", elf, base + 32)[0]
        if _notes_have(elf[offset : offset + size], b"Xen", XEN_ELFNOTE_PHYS32_ENTRY):
            return True
    return False


def _notes_have(notes: bytes, name: bytes, note_type: int) -> bool:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        pos += 12
        nname = notes[pos : pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        pos += (descsz + 3) & ~3
        if nname == name and ntype == note_type:
            return True
    return False


# What only a generic x86 KASAN kernel prints (arch/x86/mm/kasan_init_64.c), so the string is
# in its .rodata and in no other kernel's.
KASAN_BANNER = b"KernelAddressSanitizer initialized"
NO_PVH_NOTE = "no PVH entry note in the vmlinux"
KASAN_NO_PVH = (
    "a KASAN kernel, whose PVH entry runs instrumented C (xen_prepare_pvh) before KASAN's "
    "shadow memory is mapped: the guest resets silently"
)


def bzimage_note(cause: str) -> str:
    """What a kernel's notes say when ``cause`` (from ``why_not_pvh``) keeps it off PVH."""
    return f"{cause}: booting the bzImage (slower)"


def why_not_pvh(vmlinux: bytes | None) -> str | None:
    """Why this decompressed vmlinux must not be booted through PVH, or None when it can."""
    if vmlinux is None or not has_pvh_note(vmlinux):
        return NO_PVH_NOTE
    if KASAN_BANNER in vmlinux:
        return KASAN_NO_PVH
    return None


def extract_pvh_vmlinux(bzimage: bytes) -> tuple[bytes | None, str | None]:
    """The PVH-bootable vmlinux inside ``bzimage`` (None, with the reason, when there is
    none: no PVH note, an unknown compressor, or a kernel PVH cannot start)."""
    vmlinux = decompress(bzimage_payload(bzimage))
    reason = why_not_pvh(vmlinux)
    return (None, reason) if reason else (vmlinux, None)
