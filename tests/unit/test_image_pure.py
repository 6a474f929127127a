"""Image building blocks: module selection and apt parsing (pure; the cpio and ELF checks that
run host tools are in tests/integration/test_image_tools.py)."""

from harness.debian import first_dependency, parse_recurse_depends, parse_stanzas
from harness.image import modules

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
