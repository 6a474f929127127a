"""A user's own kernel: a bzImage, Image or vmlinux file, or a build directory.

Everything is checked before QEMU starts: the file exists and is readable, it is a kernel
image, and it is for the requested arch.  Each problem is one line naming the fix.
"""

from pathlib import Path

from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.errors import UserError
from harness.kernel.image_format import (
    NO_PVH_NOTE,
    bzimage_note,
    decompress,
    extract_pvh_vmlinux,
    identify,
    why_not_pvh,
)
from harness.kernel.model import Kernel

MANIFEST = "kernel.json"  # written by `memharness kernel build` into its output directory


def local_kernel(path: Path, arch: ArchProfile, modules: Path | None = None) -> Kernel:
    """Validates and wraps a kernel the user points at."""
    path = path.expanduser()
    if not path.exists():
        raise UserError(f"kernel {path} does not exist: pass --kernel a bzImage, Image or vmlinux")
    if path.is_dir():
        return _from_directory(path, arch, modules)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(
            f"kernel {path} is not readable ({exc.strerror}): fix its permissions"
        ) from None
    info = identify(data)
    if info is not None and info.kind == "gzip":
        inner = decompress(data)
        info = identify(inner) if inner else None
        if info is not None:
            data = inner  # type: ignore[assignment]
    if info is None:
        raise UserError(f"{path} is not a kernel image: pass a bzImage, Image or vmlinux")
    if info.arch_hint != arch.name:
        other = info.arch_hint or "an unknown arch"
        raise UserError(
            f"{path} is a {info.kind} for {other}, not {arch.name}: pass --arch {other} "
            f"or a kernel built for {arch.name}"
        )
    if info.kind == "vmlinux" and not arch.pvh_boot:
        raise UserError(
            f"{path} is an {arch.name} vmlinux ELF, which QEMU cannot boot: pass "
            f"{arch.kernel_image}"
        )
    release = info.release or "unknown"
    modules_root = _modules_root(modules, release) if modules else None
    identity = f"local-{digest(data)[:16]}"  # full content: bisect must never reuse a stale PVH
    boot_image, kind, notes = path, (info.kind if arch.pvh_boot else arch.boot_image_kind), []
    if info.kind == "bzImage":
        pvh, why_not = _cached_pvh(data, identity)
        if pvh is not None:
            boot_image, kind = pvh, "pvh"
        else:
            notes.append(bzimage_note(why_not))
    elif info.kind == "vmlinux":
        cause = why_not_pvh(data)
        if cause is not None:  # QEMU boots an x86 vmlinux through PVH only
            raise UserError(
                f"{path} cannot start through QEMU's PVH entry ({cause}): pass its bzImage"
            )
        kind = "pvh"
    config = _sibling(path, ".config")
    return Kernel(
        arch=arch,
        release=release,
        boot_image=boot_image,
        boot_kind=kind,
        origin=str(path),
        identity=identity,
        modules_root=modules_root,
        config=config,
        vmlinux=_sibling(path, "vmlinux"),
        notes=tuple(notes),
    )


def _from_directory(path: Path, arch: ArchProfile, modules: Path | None) -> Kernel:
    manifest = path / MANIFEST
    if manifest.is_file():
        kernel = Kernel.load(manifest)
        if kernel.arch.name != arch.name:
            raise UserError(
                f"{path} holds a {kernel.arch.name} kernel, not {arch.name}: "
                f"pass --arch {kernel.arch.name}"
            )
        return kernel
    image = path / arch.kernel_image
    if image.is_file():
        return local_kernel(image, arch, modules)
    raise UserError(
        f"{path} is neither a memharness kernel build nor a kbuild tree with {arch.kernel_image}: "
        "pass --kernel an image file or a build directory"
    )


def _modules_root(modules: Path, release: str) -> Path:
    """Accepts ROOT (with lib/modules/<release>), lib/modules, or the <release> dir itself."""
    for root in (modules, modules.parent.parent, modules.parent.parent.parent):
        if (root / "lib" / "modules" / release).is_dir():
            return root
    raise UserError(
        f"{modules} holds no lib/modules/{release}: pass --modules the INSTALL_MOD_PATH "
        "used with make modules_install"
    )


def _sibling(image: Path, name: str) -> Path | None:
    """Finds ``name`` in the kbuild tree an image came from (arch/*/boot/ is 3 levels down)."""
    for parent in list(image.resolve().parents)[:4]:
        candidate = parent / name
        if candidate.is_file():
            return candidate
    return None


def _cached_pvh(bzimage: bytes, identity: str) -> tuple[Path | None, str]:
    """The PVH vmlinux extracted once per image, or None and the reason there is none."""

    def build(tmp: Path) -> None:
        vmlinux, why_not = extract_pvh_vmlinux(bzimage)
        if vmlinux is not None:
            (tmp / "vmlinux-pvh").write_bytes(vmlinux)
        else:
            (tmp / "why-not-pvh").write_text(str(why_not))

    entry = build_once("pvh", identity, build)
    out = entry / "vmlinux-pvh"
    if out.exists():
        return out, ""
    reason = entry / "why-not-pvh"
    return None, reason.read_text() if reason.exists() else NO_PVH_NOTE
