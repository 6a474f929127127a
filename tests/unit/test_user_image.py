"""The host-side checks of a user's image (``--image PATH``), on real images: ext4 made by
mke2fs -d, the same behind an MBR partition table, a qcow2 from qemu-img, and files that are
not disk images.  The init is the host's own busybox, whichever arch the host is."""

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from harness.arch import ARCHES, X86_64, by_elf_machine
from harness.errors import UserError
from harness.image.user import INIT_ENV, inspect_user_image, raw_filesystem

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(
    BUSYBOX is None or shutil.which("mke2fs") is None, reason="needs busybox and mke2fs"
)
HOST_MACHINE = struct.unpack_from("<H", Path(BUSYBOX or "/dev/null").read_bytes()[:20], 18)[0]
HOST = by_elf_machine(HOST_MACHINE) or X86_64
OTHER = next(a for a in ARCHES.values() if a is not HOST)


def ext4(tmp_path: Path, init: str = "link") -> Path:
    """An ext4 image whose /sbin/init is: an absolute link to /bin/busybox ("link"), a
    relative one ("relative"), a shell script ("script") or absent ("none")."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "sbin").mkdir()
    assert BUSYBOX is not None
    shutil.copy(BUSYBOX, root / "bin/busybox")
    if init == "link":
        (root / "sbin/init").symlink_to("/bin/busybox")
    elif init == "relative":
        (root / "sbin/init").symlink_to("../bin/busybox")
    elif init == "script":
        (root / "sbin/init").write_text("#!/bin/sh\nexec /bin/sh\n")
    image = tmp_path / f"{init}.ext4"
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(root), str(image), "8M"], check=True
    )
    return image


def partitioned(tmp_path: Path, fs: Path) -> Path:
    """``fs`` as the first partition (at 1 MiB) of a disk with an MBR."""
    disk = tmp_path / "disk.img"
    mbr = bytearray(512)
    struct.pack_into("<BBBBBBBBII", mbr, 446, 0x80, 0, 0, 0, 0x83, 0, 0, 0, 2048, 16384)
    mbr[510:512] = b"\x55\xaa"
    disk.write_bytes(bytes(mbr) + bytes(1024 * 1024 - 512) + fs.read_bytes())
    return disk


def test_a_bare_ext4_and_a_partitioned_one_are_found(tmp_path: Path) -> None:
    fs = ext4(tmp_path)
    assert raw_filesystem(fs) == ("ext4", 0)
    assert raw_filesystem(partitioned(tmp_path, fs)) == ("ext4", 1 << 20)


@pytest.mark.parametrize("init", ["link", "relative"])
def test_the_inits_arch_is_read_through_its_links(tmp_path: Path, init: str) -> None:
    fs = ext4(tmp_path, init)
    assert inspect_user_image(fs, HOST).init_machine == HOST.elf_machine
    message = f"is for {HOST.name}, not {OTHER.name} .*pass --arch {HOST.name}"
    with pytest.raises(UserError, match=message):
        inspect_user_image(partitioned(tmp_path, fs), OTHER)


def test_a_qcow2_is_left_to_the_boot(tmp_path: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-O", "qcow2", str(ext4(tmp_path)), str(qcow2)], check=True
    )
    disk = inspect_user_image(qcow2, OTHER)  # the initramfs checks its init at boot
    assert (disk.format, disk.init_machine) == ("qcow2", None)


@pytest.mark.parametrize(
    ("init", "message"),
    [("none", "has no /sbin/init: set MEMHARNESS_IMAGE_INIT"), ("script", "is not an ELF")],
)
def test_an_image_without_a_binary_init(tmp_path: Path, init: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        inspect_user_image(ext4(tmp_path, init), HOST)


def test_another_init_is_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = ext4(tmp_path, "none")
    monkeypatch.setenv(INIT_ENV, "/bin/busybox")
    assert inspect_user_image(fs, HOST).init == "/bin/busybox"
    monkeypatch.setenv(INIT_ENV, "bin/busybox")
    with pytest.raises(UserError, match="not an absolute path"):
        inspect_user_image(fs, HOST)


def test_what_is_not_a_disk_image(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(200_000))
    empty = tmp_path / "empty"
    empty.touch()
    for path, message in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "is a directory"),
        (empty, "is empty"),
        (garbage, "neither a filesystem memharness recognises"),
    ):
        with pytest.raises(UserError, match=message):
            inspect_user_image(path, HOST)
