"""A user's own root filesystem (``--image PATH``): checked on the host, booted agent-less.

The image is the user's (their distribution, their init, their tools); memharness adds nothing
to it.  It boots behind memharness's initramfs, which loads this kernel's disk drivers,
mounts the disk (a copy-on-write overlay per run: the image file never changes), checks that
the init is a binary of the guest's arch and switches root to it.  The user's init then runs a
getty on the serial console, and memharness logs in there (harness/vm/console_shell.py).

Everything that can be known before QEMU starts is checked here, each failure one line naming
the fix: the file is missing, unreadable, empty or not a disk image; and, when the image is a
raw ext2/3/4 filesystem (debugfs reads it without root), that its init exists and is an ELF
for the guest's arch.  Other formats and filesystems are checked by the initramfs at boot,
which reports the same sentence on the console.
"""

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import ARCHES, ArchProfile, by_elf_machine
from harness.errors import InfraError, UserError
from harness.image.elf import is_elf

DEFAULT_INIT = "/sbin/init"
LOGIN_ENV = "MEMHARNESS_IMAGE_LOGIN"  # the console login (default root)
PASSWORD_ENV = "MEMHARNESS_IMAGE_PASSWORD"  # its password (default: none asked)
INIT_ENV = "MEMHARNESS_IMAGE_INIT"  # the init to hand over to (default /sbin/init)
# filesystem → (byte offset of its superblock magic, the magic); ext2/3/4 share one
FILESYSTEM_MAGICS: dict[str, tuple[int, bytes]] = {
    "ext4": (1080, b"\x53\xef"),
    "xfs": (0, b"XFSB"),
    "btrfs": (0x10040, b"_BHRfS_M"),
    "squashfs": (0, b"hsqs"),
}
MAGIC_WINDOW = 0x10048
SYMLINK_HOPS = 16


@dataclass(frozen=True)
class UserDisk:
    """A user's disk image as QEMU is to open it, and how to log into it."""

    path: Path
    format: str  # qemu-img's name: raw, qcow2, ...
    init: str
    login: str
    password: str
    init_machine: int | None  # e_machine of the init, when the host could read it

    @property
    def identity(self) -> str:
        stat = self.path.stat()
        return f"user:{self.path}:{stat.st_size}:{stat.st_mtime_ns}"


def looks_like_path(kind: str) -> bool:
    """``--image`` takes a name (initramfs, debian) or a path; a path has a slash or exists."""
    return "/" in kind or Path(kind).exists()


def inspect_user_image(path: Path, arch: ArchProfile) -> UserDisk:
    """The checked ``UserDisk`` of ``path`` for a guest of ``arch`` (UserError otherwise)."""
    path = path.expanduser().resolve()
    if path.is_dir():
        raise UserError(f"image {path} is a directory: pass the path of a disk image file")
    if not path.is_file():
        raise UserError(f"image {path} does not exist: pass the path of a disk image file")
    if not os.access(path, os.R_OK):
        raise UserError(f"image {path} is not readable: fix its permissions")
    if path.stat().st_size == 0:
        raise UserError(f"image {path} is empty: pass a disk image with a root filesystem")
    fmt = image_format(path)
    init = os.environ.get(INIT_ENV, DEFAULT_INIT)
    if not init.startswith("/"):
        raise UserError(f"{INIT_ENV}={init!r} is not an absolute path: name the init to start")
    machine = None
    if fmt == "raw":
        found = raw_filesystem(path)
        if found is None and not has_partition_table(path):
            raise UserError(
                f"image {path} holds neither a filesystem memharness recognises "
                f"({', '.join(FILESYSTEM_MAGICS)}) nor a partition table: pass a disk image "
                "of a root filesystem"
            )
        if found is not None and found[0] == "ext4":
            machine = init_machine(path, found[1], init)
    if machine is not None and machine != arch.elf_machine:
        other = by_elf_machine(machine)
        where = f"{other.name}" if other else f"ELF machine {machine}"
        fix = f"pass --arch {other.name}" if other and other.name in ARCHES else "use another image"
        raise UserError(
            f"image {path} is for {where}, not {arch.name} (its {init}): {fix} or an {arch.name} "
            "image"
        )
    return UserDisk(
        path=path,
        format=fmt,
        init=init,
        login=os.environ.get(LOGIN_ENV, "root"),
        password=os.environ.get(PASSWORD_ENV, ""),
        init_machine=machine,
    )


def image_format(path: Path) -> str:
    """qemu-img's format of ``path``; a file qemu-img cannot open is a one-line error."""
    qemu_img = proc.require_tool("qemu-img", "qemu-utils")
    try:
        result = proc.run(
            [qemu_img, "info", "--output=json", str(path)], timeout=60, what="qemu-img info"
        )
    except InfraError as exc:
        raise UserError(f"image {path} is not a disk image qemu-img can open ({exc})") from None
    fmt = str(json.loads(result.stdout).get("format", ""))
    if fmt == "raw" or fmt in ("qcow2", "qed", "vmdk", "vdi", "vhdx", "vpc"):
        return fmt
    raise UserError(f"image {path} is in format {fmt!r}: convert it with qemu-img to qcow2 or raw")


def raw_filesystem(path: Path) -> tuple[str, int] | None:
    """(filesystem, byte offset) of a raw image: the whole image's filesystem, else the first
    MBR partition's; None when neither holds one of FILESYSTEM_MAGICS."""
    with path.open("rb") as f:
        head = f.read(MAGIC_WINDOW)
        starts = [0, *_mbr_partition_starts(head)]
        for start in starts:
            f.seek(start)
            block = f.read(MAGIC_WINDOW)
            for name, (pos, magic) in FILESYSTEM_MAGICS.items():
                if block[pos : pos + len(magic)] == magic:
                    return name, start
    return None


def has_partition_table(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(512)
    return len(head) == 512 and head[510:512] == b"\x55\xaa"


def _mbr_partition_starts(head: bytes) -> list[int]:
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return []
    starts = []
    for i in range(4):
        entry = 446 + 16 * i
        kind = head[entry + 4]
        lba = struct.unpack_from("<I", head, entry + 8)[0]
        if kind and lba:
            starts.append(lba * 512)
    return starts


def init_machine(path: Path, offset: int, init: str) -> int:
    """e_machine of ``init`` inside the ext filesystem at ``offset`` of ``path`` (symlinks
    followed inside the image); a missing or non-ELF init is a one-line error."""
    device = f"{path}?offset={offset}" if offset else str(path)
    target = init
    for _ in range(SYMLINK_HOPS):
        stat = _debugfs(device, f'stat "{target}"')
        if "File not found" in stat or not stat.strip():
            raise UserError(f"image {path} has no {init}: set {INIT_ENV} to its init")
        kind = re.search(r"Type: (\w+)", stat)
        if kind and kind.group(1) == "symlink":
            link = re.search(r'Fast link dest: "(.*)"', stat)
            dest = link.group(1) if link else _debugfs(device, f'cat "{target}"').strip()
            target = dest if dest.startswith("/") else f"{os.path.dirname(target)}/{dest}"
            continue
        break
    else:
        raise UserError(f"image {path}: {init} is a symlink loop: set {INIT_ENV} to its init")
    head = _debugfs_bytes(device, f'cat "{target}"')[:64]
    if not is_elf(head) or len(head) < 20:
        raise UserError(
            f"image {path}: {init} ({target}) is not an ELF binary: set {INIT_ENV} to its init"
        )
    return int(struct.unpack_from("<H", head, 18)[0])


def _debugfs_bytes(device: str, request: str) -> bytes:
    debugfs = proc.require_tool("debugfs", "e2fsprogs")
    return proc.run([debugfs, "-R", request, device], timeout=120, what="debugfs").stdout


def _debugfs(device: str, request: str) -> str:
    return _debugfs_bytes(device, request).decode(errors="replace")
