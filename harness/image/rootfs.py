"""The Debian guest image (``--image debian``): a bookworm root filesystem per arch on a disk.

The busybox initramfs stays the default; this image exists for what needs a real userspace
(the kernel's mm selftests, an SSH login, ``memharness shell``).  It is built from the arch's
Debian packages without running a maintainer script, because a foreign arch has no binfmt
here: the builder does the little those scripts would do that the image needs (accounts, the
sshd configuration, keys), and guest-scripts/init-rootfs does the rest at boot.  ``fakeroot``
makes every file root's inside the ext4 image without root on the host.

The boot is two-stage: the initramfs (with the kernel's modules part, so bisecting still
rebuilds only that) loads the disk and ext4 drivers, mounts the disk (a copy-on-write overlay
per run, so the cached image never changes) and switches root to it; init-rootfs brings up the
network and sshd and then execs the same mh-agent, so every scenario step runs exactly as on
the initramfs and SSH is one more channel.

The image is cached by recipe hash (packages and versions, guest scripts, helpers, keys'
format); the SSH keys are generated with it, so each image has its own.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.datafile import load_toml, reject_unknown
from harness.debian import extract_deb
from harness.errors import UserError
from harness.image.helpers import build_helpers, guest_files, guest_files_key, resolve_packages
from harness.paths import GUEST_SCRIPTS, IMAGES

RECIPE = IMAGES / "debian.toml"
ROOTFS_FORMAT = 3  # what the builder writes beyond the packages; bump when that changes
STAGE2 = "/sbin/init-rootfs"
# Kernel options the image cannot boot or be reached without (kconfigs/userspace.config).
REQUIRED_OPTIONS = ("VIRTIO_BLK", "VIRTIO_NET", "INET", "UNIX", "UNIX98_PTYS", "EXT4_FS")

SSHD_CONFIG = """\
# memharness guest sshd: root by key only, no PAM (no maintainer script configured it).
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 64
MaxStartups 64
Subsystem sftp /usr/lib/openssh/sftp-server
"""


@dataclass(frozen=True)
class RootfsRecipe:
    packages: tuple[str, ...]
    free_mib: int

    @classmethod
    def load(cls, path: Path = RECIPE) -> "RootfsRecipe":
        data = load_toml(path, "Debian image recipe")
        reject_unknown(data, ("packages", "free_mib"), f"Debian image recipe {path}")
        return cls(tuple(data["packages"]), int(data.get("free_mib", 256)))


@dataclass(frozen=True)
class Rootfs:
    """A built image: the disk (qcow2, only ever a backing file) and its SSH identity."""

    disk: Path
    client_key: Path  # OpenSSH private key root's authorized_keys accepts
    host_key: str  # "ssh-ed25519 AAAA..." the guest's sshd presents; checked on connect
    identity: str
    arch: str  # the arch its binaries are for

    def check(self, arch: str) -> None:
        """A missing or truncated image, or one for another arch, is one line naming the fix,
        before QEMU starts (the guest would otherwise die in its first exec)."""
        if arch != self.arch:
            raise UserError(
                f"the Debian image {self.disk} is for {self.arch}, not {arch}: pass --arch "
                f"{self.arch} or let memharness build the {arch} image"
            )
        for path in (self.disk, self.client_key):
            if not path.is_file() or path.stat().st_size == 0:
                raise UserError(
                    f"Debian image file {path} is missing or empty: remove "
                    f"{path.parent} and run again to rebuild it"
                )


def build_rootfs(arch: ArchProfile, recipe: RootfsRecipe | None = None) -> Rootfs:
    """The Debian image for ``arch``, built once (minutes: downloads, unpacking, mke2fs)."""
    recipe = recipe or RootfsRecipe.load()
    archive, packages = resolve_packages(arch, recipe.packages, lambda _name: True)
    helpers = build_helpers(arch)
    key = digest(
        "rootfs",
        ROOTFS_FORMAT,
        arch.name,
        recipe.packages,
        recipe.free_mib,
        sorted(p.deb_name for p in packages),
        *guest_files_key(helpers),
    )[:32]

    def build(tmp: Path) -> None:
        root = tmp / "root"
        for deb in archive.download(packages):
            extract_deb(deb, root)
        host_public = configure(root, tmp, helpers)
        (tmp / "host_key.pub").write_text(host_public + "\n")
        raw = tmp / "rootfs.ext4"
        make_ext4(root, raw, recipe.free_mib)
        qemu_img = proc.require_tool("qemu-img", "qemu-utils")
        proc.run(
            [qemu_img, "convert", "-q", "-O", "qcow2", str(raw), str(tmp / "rootfs.qcow2")],
            timeout=600,
            what="qemu-img convert",
        )
        raw.unlink()
        shutil.rmtree(root, ignore_errors=True)

    entry = build_once("images", f"rootfs-{arch.name}-{key}", build)
    if not (entry / "host_key.pub").is_file():
        raise UserError(f"Debian image {entry} has no host_key.pub: remove {entry} to rebuild it")
    return Rootfs(
        disk=entry / "rootfs.qcow2",
        client_key=entry / "id_ed25519",
        host_key=(entry / "host_key.pub").read_text().strip(),
        identity=key,
        arch=arch.name,
    )


def configure(root: Path, keys_dir: Path, helpers: dict[str, Path]) -> str:
    """What the image needs that no maintainer script did; returns the host public key."""
    _accounts(root)
    _login_files(root)
    host_public = _ssh(root, keys_dir)
    _memharness_files(root, helpers)
    return host_public


def _accounts(root: Path) -> None:
    """base-passwd's postinst: /etc/passwd and /etc/group from its masters (root's shell bash),
    plus sshd's privilege-separation user and a shadow file."""
    etc = root / "etc"
    master = root / "usr/share/base-passwd"
    passwd = (master / "passwd.master").read_text().replace("/root:/bin/sh", "/root:/bin/bash")
    passwd += "sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n"
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text((master / "group.master").read_text())
    users = [line.split(":", 1)[0] for line in passwd.splitlines() if line]
    # "*": no password login, but not a locked account (sshd refuses keys for "!").
    (etc / "shadow").write_text("".join(f"{u}:*:19000:0:99999:7:::\n" for u in users))
    (etc / "shadow").chmod(0o600)
    (etc / "hostname").write_text("mh-guest\n")
    (etc / "hosts").write_text("127.0.0.1 localhost mh-guest\n")
    (etc / "fstab").write_text("# the mounts are made by /sbin/init-rootfs\n")
    for link, target in (("bin/sh", "dash"), ("usr/bin/awk", "mawk")):
        if not (root / link).exists():
            (root / link).symlink_to(target)


def _login_files(root: Path) -> None:
    """base-files' postinst: /etc/profile (the login PATH, and through /etc/bash.bashrc the
    user@host prompt) and root's dot files."""
    shared = root / "usr/share/base-files"
    for source, dest in (
        ("profile", "etc/profile"),
        ("dot.bashrc", "root/.bashrc"),
        ("dot.profile", "root/.profile"),
    ):
        if (shared / source).is_file():
            (root / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / source, root / dest)


def _ssh(root: Path, keys_dir: Path) -> str:
    """sshd's configuration and host key, and the client key root accepts (kept beside the
    image in ``keys_dir``); returns the host public key."""
    ssh = root / "etc/ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "sshd_config").write_text(SSHD_CONFIG)
    host_private, host_public = new_key()
    write_secret(ssh / "ssh_host_ed25519_key", host_private)
    (ssh / "ssh_host_ed25519_key.pub").write_text(host_public + "\n")
    client_private, client_public = new_key()
    write_secret(keys_dir / "id_ed25519", client_private)
    dot_ssh = root / "root/.ssh"
    dot_ssh.mkdir(parents=True, exist_ok=True)
    dot_ssh.chmod(0o700)
    (dot_ssh / "authorized_keys").write_text(client_public + " memharness\n")
    return host_public


def _memharness_files(root: Path, helpers: dict[str, Path]) -> None:
    """The agent, the static helpers and guest-scripts where the initramfs has them, the
    second-stage init, and the mount points it uses."""
    installed = [(source, root / guest.lstrip("/")) for source, guest in guest_files(helpers)]
    installed.append((GUEST_SCRIPTS / "init-rootfs", root / STAGE2.lstrip("/")))
    for source, dest in installed:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        dest.chmod(0o755)
    for d in ("proc", "sys", "dev", "run", "tmp", "mnt", "sys/kernel/debug", "lib/modules"):
        (root / d).mkdir(parents=True, exist_ok=True)


def new_key() -> tuple[bytes, str]:
    """(OpenSSH private key, "ssh-ed25519 AAAA...") of a fresh Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def make_ext4(root: Path, image: Path, free_mib: int) -> None:
    """An ext4 image of ``root``, every file owned by root (fakeroot), ``free_mib`` spare."""
    size_mib = tree_bytes(root) * 5 // 4 // (1 << 20) + free_mib
    mke2fs = proc.require_tool("mke2fs", "e2fsprogs")
    as_root = [] if os.geteuid() == 0 else [proc.require_tool("fakeroot", "fakeroot")]
    proc.run(
        [
            *as_root,
            mke2fs,
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "mh-root",
            "-d",
            str(root),
            str(image),
            f"{size_mib}M",
        ],
        timeout=600,
        what="mke2fs -d (Debian image)",
    )
