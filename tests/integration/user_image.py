"""A user's own image for the ``--image PATH`` tests: a busybox root filesystem with an init,
a getty on the serial console and a password on root, nothing of memharness inside.

It stands for what a kernel developer boots: their distribution's disk with its init and a
login on the console.  Built from the arch's Debian busybox-static package, with mke2fs -d
(raw ext4) and qemu-img (qcow2), and cached by its recipe like memharness's own images.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.debian import extract_deb
from harness.image.helpers import resolve_packages
from harness.image.rootfs import make_ext4

PASSWORD = "mh-secret"
APPLETS = (
    "sh", "ash", "cat", "echo", "ls", "mount", "umount", "mkdir", "rm", "cp", "mv", "grep",
    "sed", "head", "tail", "test", "[", "sleep", "uname", "stty", "dmesg", "hostname", "getty",
    "login", "tr", "od", "wc", "sync", "poweroff", "true", "false", "env", "id", "cut",
)  # fmt: skip
RCS = """#!/bin/sh
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
hostname -F /etc/hostname
"""
FORMAT = 1  # bump when the recipe below changes


@dataclass(frozen=True)
class UserImages:
    raw: Path  # ext4 filesystem image, root's password PASSWORD
    qcow2: Path  # the same, as qcow2


def build_user_image(arch: ArchProfile) -> UserImages:
    archive, packages = resolve_packages(arch, ("busybox-static",), lambda _name: False)
    key = digest("user-image", FORMAT, arch.name, [p.deb_name for p in packages], APPLETS)[:24]

    def build(tmp: Path) -> None:
        root = tmp / "root"
        unpacked = tmp / "deb"
        for deb in archive.download(packages):
            extract_deb(deb, unpacked)
        for d in ("bin", "sbin", "etc/init.d", "proc", "sys", "dev", "run", "tmp", "root"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "bin/busybox").write_bytes((unpacked / "bin/busybox").read_bytes())
        (root / "bin/busybox").chmod(0o755)
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        # /sbin/init → an absolute link, as distributions have it (the host check follows it)
        (root / "sbin/init").symlink_to("/bin/busybox")
        tty = arch.console_tty
        (root / "etc/inittab").write_text(
            f"::sysinit:/etc/init.d/rcS\n{tty}::respawn:/bin/getty -L 115200 {tty} vt100\n"
        )
        (root / "etc/init.d/rcS").write_text(RCS)
        (root / "etc/init.d/rcS").chmod(0o755)
        hashed = (
            proc.run(
                [proc.require_tool("openssl", "openssl"), "passwd", "-1", "-salt", "mh", PASSWORD],
                timeout=30,
                what="openssl passwd",
            )
            .stdout.decode()
            .strip()
        )
        (root / "etc/passwd").write_text(f"root:{hashed}:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
        (root / "etc/hostname").write_text("users-box\n")
        make_ext4(root, tmp / "root.ext4", 16)
        qemu_img = proc.require_tool("qemu-img", "qemu-utils")
        proc.run(
            [
                qemu_img,
                "convert",
                "-q",
                "-O",
                "qcow2",
                str(tmp / "root.ext4"),
                str(tmp / "root.qcow2"),
            ],
            timeout=120,
            what="qemu-img convert",
        )
        shutil.rmtree(root)
        shutil.rmtree(unpacked)

    entry = build_once("images", f"test-user-{key}", build)
    return UserImages(entry / "root.ext4", entry / "root.qcow2")
