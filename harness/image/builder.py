"""Builds the guest initramfs: base part per arch, modules part per kernel, concatenated.

The base part holds busybox, ndctl/daxctl/mke2fs with their shared-library closure (from the
arch's Debian packages), the static helpers, /init and guest-scripts.  The modules part holds
the recipe's modules of one kernel.  The kernel unpacks both archives in turn, so bisecting
over kernels rebuilds only the small modules part.
"""

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest, file_digest
from harness.datafile import load_toml, reject_unknown
from harness.debian import extract_deb
from harness.errors import InfraError
from harness.image import modules as modsel
from harness.image.cpio import Archive
from harness.image.elf import dynamic_info, is_elf
from harness.image.helpers import build_helpers, guest_files, guest_files_key, resolve_packages
from harness.image.rootfs import REQUIRED_OPTIONS, Rootfs, build_rootfs
from harness.image.user import UserDisk, inspect_user_image, looks_like_path
from harness.kernel.model import Kernel
from harness.kernel.testmod import build_test_module
from harness.paths import GUEST_SCRIPTS, IMAGES

RECIPE = IMAGES / "guest.toml"
TEST_MODULE_DIR = "/lib/mh"


@dataclass(frozen=True)
class Recipe:
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    links: dict[str, str]
    boot_modules: tuple[str, ...]
    extra_modules: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = RECIPE) -> "Recipe":
        data = load_toml(path, "image recipe")
        reject_unknown(data, ("packages", "binaries", "links", "modules"), f"image recipe {path}")
        reject_unknown(data.get("modules", {}), ("boot", "extra"), f"image recipe {path} [modules]")
        return cls(
            packages=tuple(data["packages"]),
            binaries=tuple(data["binaries"]),
            links=dict(data.get("links", {})),
            boot_modules=tuple(data["modules"]["boot"]),
            extra_modules=tuple(data["modules"]["extra"]),
        )

    def key(self) -> object:
        return [
            self.packages,
            self.binaries,
            sorted(self.links.items()),
            self.boot_modules,
            self.extra_modules,
        ]


@dataclass(frozen=True)
class GuestImage:
    initrd: Path
    identity: str
    boot_modules: tuple[str, ...]  # loadable modules /init must modprobe (mh.modules=)
    modules: tuple[str, ...]  # every recipe module the guest can modprobe
    builtin: tuple[str, ...]  # recipe modules compiled into the kernel
    absent: tuple[str, ...]  # recipe modules this kernel does not have
    test_modules: tuple[str, ...] = ()  # guest-scripts/kmod modules, at TEST_MODULE_DIR/NAME.ko
    rootfs: Rootfs | None = None  # the Debian image's disk (None: the initramfs is the root)
    user: UserDisk | None = None  # a user's own image (--image PATH), reached over the console

    @property
    def name(self) -> str:
        """What --image says to choose this image again."""
        if self.user is not None:
            return str(self.user.path)
        return "debian" if self.rootfs else "initramfs"

    @property
    def disk(self) -> tuple[Path, str] | None:
        """(file, qemu format) of the root disk the guest boots into (None: the initramfs)."""
        if self.rootfs is not None:
            return self.rootfs.disk, "qcow2"
        if self.user is not None:
            return self.user.path, self.user.format
        return None


def _wanted_library_package(name: str) -> bool:
    """Shared-library packages of the closure; perl and tools are never needed in the guest."""
    return bool(re.match(r"^(lib|zlib)", name)) and "perl" not in name


def build_base(arch: ArchProfile, recipe: Recipe) -> tuple[Path, str]:
    """(base.cpio, its key) for ``arch``."""
    archive, packages = resolve_packages(arch, recipe.packages, _wanted_library_package)
    helpers = build_helpers(arch)
    key = digest(
        "base",
        arch.name,
        recipe.key(),
        sorted(p.deb_name for p in packages),
        *guest_files_key(helpers),
    )[:32]

    def build(tmp: Path) -> None:
        root = tmp / "debs"
        for deb in archive.download(packages):
            extract_deb(deb, root)
        cpio = Archive()
        for d in (
            "/proc",
            "/sys",
            "/dev",
            "/tmp",
            "/run",
            "/mnt",
            "/root",
            "/etc",
            "/usr/bin",
            "/usr/sbin",
            "/sys/kernel/debug",
        ):
            cpio.add_dir(d)
        _add_binaries(cpio, root, recipe.binaries, arch)
        for link, target in recipe.links.items():
            cpio.add_symlink(link, target)
        for source, guest_path in guest_files(helpers):
            cpio.add_file(guest_path, source.read_bytes(), 0o755)
        cpio.add_file("/init", (GUEST_SCRIPTS / "init").read_bytes(), 0o755)
        cpio.add_file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        cpio.add_file("/etc/group", b"root:x:0:\n")
        (tmp / "base.cpio").write_bytes(cpio.to_bytes())
        shutil.rmtree(root, ignore_errors=True)

    return build_once("images", f"base-{key}", build) / "base.cpio", key


def _add_binaries(cpio: Archive, root: Path, binaries: tuple[str, ...], arch: ArchProfile) -> None:
    """Copies binaries plus the transitive DT_NEEDED closure and the dynamic loader."""
    index = _library_index(root, arch)
    pending = [root / b for b in binaries]
    seen: set[str] = set()
    while pending:
        path = pending.pop()
        if not path.is_file():
            raise InfraError(f"guest image: {path.relative_to(root)} is in no recipe package")
        data = path.resolve().read_bytes()
        guest_path = "/" + str(path.relative_to(root))
        cpio.add_file(guest_path, data, 0o755)
        if not is_elf(data):
            continue
        info = dynamic_info(data)
        if info.machine != arch.elf_machine:
            raise InfraError(f"guest image: {guest_path} is not a {arch.name} binary")
        if info.interpreter and info.interpreter not in cpio:
            interp = index.get(Path(info.interpreter).name)
            if interp is None:
                raise InfraError(f"guest image: dynamic loader {info.interpreter} not found")
            cpio.add_file(info.interpreter, interp.resolve().read_bytes(), 0o755)
        for soname in info.needed:
            if soname in seen:
                continue
            seen.add(soname)
            lib = index.get(soname)
            if lib is None:
                raise InfraError(
                    f"guest image: {soname} (needed by {guest_path}) is in no package of the "
                    "closure: add its package to images/guest.toml"
                )
            pending.append(lib)
    # Libraries land where the packages put them; make sure the loader searches there.
    libdirs = sorted({str(Path(p).parent) for p in cpio.entries if ".so" in Path(p).name})
    cpio.add_file("/etc/ld.so.conf", ("\n".join(libdirs) + "\n").encode())


def _library_index(root: Path, arch: ArchProfile) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for sub in (f"lib/{arch.gnu_triplet}", f"usr/lib/{arch.gnu_triplet}", "lib", "usr/lib"):
        directory = root / sub
        if directory.is_dir():
            for f in directory.iterdir():
                if ".so" in f.name and (f.is_file() or f.is_symlink()):
                    index.setdefault(f.name, f)
    return index


def build_modules_part(kernel: Kernel, recipe: Recipe) -> tuple[Path, str, modsel.ModuleSelection]:
    """(modules.cpio, its key, the selection) for ``kernel``."""
    requested = list(recipe.boot_modules) + list(recipe.extra_modules)
    modules_dir = kernel.modules_dir
    dep_text, builtin_text = modsel.read_tree(modules_dir) if modules_dir else ("", "")
    selection = modsel.select(requested, dep_text, builtin_text)
    # Content, not names: two builds may share an identity (the same commit built in a git
    # worktree and exported has a different localversion) but never these bytes.
    contents = [(r, file_digest(modules_dir / r)) for r in selection.paths] if modules_dir else []
    key = digest(
        "modules", MODULES_FORMAT, kernel.identity, kernel.release, contents, dep_text, builtin_text
    )[:32]

    def build(tmp: Path) -> None:
        cpio = Archive()
        base = f"/lib/modules/{kernel.release}"
        cpio.add_dir(base)
        if modules_dir is not None:
            for rel in selection.paths:
                cpio.add_file(f"{base}/{rel}", (modules_dir / rel).read_bytes())
            cpio.add_file(
                f"{base}/modules.dep",
                modsel.filtered_modules_dep(dep_text, selection.paths).encode(),
            )
            cpio.add_file(f"{base}/modules.builtin", builtin_text.encode())
            for name, data in module_indexes(kernel.release, modules_dir, selection.paths, tmp):
                cpio.add_file(f"{base}/{name}", data)
        (tmp / "modules.cpio").write_bytes(cpio.to_bytes())

    return build_once("images", f"modules-{key}", build) / "modules.cpio", key, selection


INDEX_SOURCES = ("modules.builtin", "modules.builtin.modinfo", "modules.order")
MODULES_FORMAT = 2  # what a modules part holds; 2: depmod's binary indexes too


def module_indexes(
    release: str, modules_dir: Path, paths: tuple[str, ...], tmp: Path
) -> list[tuple[str, bytes]]:
    """depmod's binary indexes (modules.dep.bin, modules.builtin.bin, ...) of the copied
    modules.  libkmod, which daxctl and ndctl load drivers through, finds modules, and knows
    a built-in one from a missing one, only through these: without modules.builtin.bin,
    `daxctl reconfigure-device --mode=system-ram` fails on a kernel with kmem built in."""
    tree = tmp / "depmod" / "lib" / "modules" / release
    for rel in (*paths, *INDEX_SOURCES):
        if (modules_dir / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(modules_dir / rel, tree / rel)
    tree.mkdir(parents=True, exist_ok=True)
    depmod = proc.require_tool("depmod", "kmod")
    proc.run([depmod, "-b", str(tmp / "depmod"), release], timeout=120, what="depmod")
    return [(p.name, p.read_bytes()) for p in sorted(tree.glob("modules.*.bin"))]


def build_guest_image(kernel: Kernel, recipe: Recipe | None = None) -> GuestImage:
    """The initrd for ``kernel`` (base + modules), building only what the cache lacks."""
    recipe = recipe or Recipe.load()
    base, base_key = build_base(kernel.arch, recipe)
    modules, mod_key, selection = build_modules_part(kernel, recipe)
    key = digest(base_key, mod_key)[:32]

    def build(tmp: Path) -> None:
        (tmp / "initrd.cpio").write_bytes(base.read_bytes() + modules.read_bytes())

    initrd = build_once("images", f"initrd-{key}", build) / "initrd.cpio"
    boot = tuple(m for m in recipe.boot_modules if m in selection.loadable)
    return GuestImage(initrd, key, boot, selection.loadable, selection.builtin, selection.absent)


def with_test_modules(image: GuestImage, kernel: Kernel, names: tuple[str, ...]) -> GuestImage:
    """``image`` plus test modules built for ``kernel`` (a third, small archive)."""
    if not names:
        return image
    built = {name: build_test_module(kernel, name) for name in names}
    key = digest(image.identity, sorted((n, file_digest(p)) for n, p in built.items()))[:32]

    def build(tmp: Path) -> None:
        cpio = Archive()
        cpio.add_dir(TEST_MODULE_DIR)
        for name, path in built.items():
            cpio.add_file(f"{TEST_MODULE_DIR}/{name}.ko", path.read_bytes())
        (tmp / "initrd.cpio").write_bytes(image.initrd.read_bytes() + cpio.to_bytes())

    initrd = build_once("images", f"initrd-{key}", build) / "initrd.cpio"
    return replace(image, initrd=initrd, identity=key, test_modules=tuple(built))


IMAGE_KINDS = ("initramfs", "debian")


def with_rootfs(image: GuestImage, kernel: Kernel) -> GuestImage:
    """``image`` booting into the Debian image; refuses, in one line and before anything is
    built, a kernel that could not mount it or be reached over SSH."""
    from harness.errors import UserError
    from harness.kernel.build import build_command

    missing = kernel.missing_options(REQUIRED_OPTIONS)
    if missing:
        raise UserError(
            f"kernel {kernel.release} lacks {', '.join(missing)} for --image debian: build one "
            f"with {build_command(missing, kernel.arch)} and pass it with --kernel"
        )
    rootfs = build_rootfs(kernel.arch)
    rootfs.check(kernel.arch.name)
    return replace(image, rootfs=rootfs, identity=digest(image.identity, rootfs.identity)[:32])


# What a kernel needs to boot into a user's image from the initramfs (the disk; the
# filesystem is the image's business: its driver is loaded if it is a module).
USER_IMAGE_OPTIONS = ("VIRTIO_BLK",)


def with_user_image(image: GuestImage, kernel: Kernel, user: UserDisk) -> GuestImage:
    """``image`` booting into the user's own (checked) image; refuses, in one line, a kernel
    that cannot reach its disk."""
    from harness.errors import UserError
    from harness.kernel.build import build_command

    missing = kernel.missing_options(USER_IMAGE_OPTIONS)
    if missing:
        raise UserError(
            f"kernel {kernel.release} lacks {', '.join(missing)} to boot --image {user.path}: "
            f"build one with {build_command(missing, kernel.arch)} and pass it with --kernel"
        )
    return replace(image, user=user, identity=digest(image.identity, user.identity)[:32])


def prepare_image(kernel: Kernel, kind: str = "initramfs") -> GuestImage:
    """The guest image of ``kind`` (IMAGE_KINDS, or the path of a user's image) for
    ``kernel``."""
    from harness.errors import UserError

    if kind not in IMAGE_KINDS and not looks_like_path(kind):
        raise UserError(
            f"unknown image {kind!r}: use one of {', '.join(IMAGE_KINDS)} or the path of a "
            "disk image (./NAME for a file in this directory)"
        )
    # a bad path fails before anything is built
    user = None if kind in IMAGE_KINDS else inspect_user_image(Path(kind), kernel.arch)
    image = build_guest_image(kernel)
    if kind == "debian":
        return with_rootfs(image, kernel)
    if user is not None:
        return with_user_image(image, kernel, user)
    return image
