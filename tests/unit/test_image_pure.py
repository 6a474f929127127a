"""Image building blocks: cpio layout, ELF dynamic info, module selection, apt parsing."""

import subprocess
from pathlib import Path

from harness.debian import first_dependency, parse_recurse_depends, parse_stanzas
from harness.image import modules
from harness.image.cpio import Archive
from harness.image.elf import dynamic_info


def test_cpio_is_readable_by_gnu_cpio_and_deterministic(tmp_path: Path) -> None:
    archive = Archive()
    archive.add_file("/sbin/tool", b"\x7fELF...", 0o755)
    archive.add_symlink("/bin/sh", "busybox")
    archive.add_dir("/proc")
    data = archive.to_bytes()
    assert data == archive.to_bytes() and len(data) % 512 == 0
    listing = (
        subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert listing == ["bin", "bin/sh", "proc", "sbin", "sbin/tool"]
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=data, cwd=tmp_path, check=True
    )
    assert (tmp_path / "sbin/tool").read_bytes() == b"\x7fELF..."
    assert (tmp_path / "sbin/tool").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin/sh").readlink() == Path("busybox")


def test_elf_dynamic_info_of_a_real_binary() -> None:
    info = dynamic_info(Path("/bin/ls").read_bytes())
    assert info.machine == 62
    assert info.interpreter and "ld-linux" in info.interpreter
    assert "libc.so.6" in info.needed


MODULES_DEP = """\
kernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/libnvdimm.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/fs/ext4/ext4.ko.xz:
"""
BUILTIN = "kernel/drivers/dax/dax.ko\nkernel/mm/hwpoison-inject.ko\n"


def test_module_selection_closure_builtin_absent() -> None:
    sel = modules.select(
        ["nd_pmem", "dax", "hwpoison_inject", "of_pmem", "ext4"], MODULES_DEP, BUILTIN
    )
    assert sel.loadable == ("nd_pmem", "ext4")
    assert sel.builtin == ("dax", "hwpoison_inject")
    assert sel.absent == ("of_pmem",)
    assert sel.paths == (
        "kernel/drivers/nvdimm/libnvdimm.ko",
        "kernel/drivers/nvdimm/nd_btt.ko",
        "kernel/drivers/nvdimm/nd_pmem.ko",
        "kernel/fs/ext4/ext4.ko.xz",
    )
    filtered = modules.filtered_modules_dep(MODULES_DEP, sel.paths)
    assert "virtio" not in filtered and filtered.count("\n") == 4


SHOW = """\
Package: linux-image-arm64
Version: 6.1.192-2
Architecture: arm64
Depends: linux-image-6.1.0-56-arm64 (= 6.1.192-2)
Description: Linux for 64-bit ARMv8 machines (meta-package)
 This package depends on the latest Linux kernel.

Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Architecture: arm64
"""


def test_apt_stanzas_and_dependencies() -> None:
    meta, busybox = parse_stanzas(SHOW)
    assert first_dependency(meta["Depends"]) == "linux-image-6.1.0-56-arm64"
    assert meta["Description"].endswith("latest Linux kernel.")
    assert busybox["Version"] == "1:1.35.0-4+deb12u1+b1"
    recurse = (
        "ndctl\n  Depends: libc6\n  Depends: <libfoo>\nlibc6\n  Depends: libgcc-s1\n<perl:any>\n"
    )
    assert parse_recurse_depends(recurse) == ["libc6", "ndctl"]
