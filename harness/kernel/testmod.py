"""Test kernel modules (guest-scripts/kmod/NAME.c) built against the kernel they will run on.

A module must match its kernel exactly (vermagic, symbol CRCs), so it is built per kernel:
against the kbuild output tree for kernels memharness built, and against Debian's
linux-headers-<release> for Debian's kernels.  Debian's headers carry their host tools
(fixdep, modpost) in linux-kbuild-<version>, which is taken for the host's arch, so an arm64
module cross-builds on an amd64 host without touching the host's dpkg.  Results are cached by
(kernel, module source); a second run builds nothing.
"""

import shutil
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile, host_arch
from harness.cache import ALL, build_once, digest, file_digest
from harness.debian import DebianArchive, extract_deb, first_dependency
from harness.errors import InfraError, UserError
from harness.kernel.build import check_host
from harness.kernel.model import Kernel
from harness.paths import kmod_dirs, kmod_source

MODULE_BUILD_TIMEOUT = 600.0


def debian_headers(kernel: Kernel) -> Path:
    """linux-headers-<release> of a Debian kernel, unpacked with its kbuild tools (cached)."""
    archive = DebianArchive(kernel.arch)
    (headers,) = archive.show([f"linux-headers-{kernel.release}"])
    deps = [d.strip() for d in headers.depends.split(",")]
    common = first_dependency(next(d for d in deps if "-common" in d))
    kbuild = first_dependency(next(d for d in deps if d.startswith("linux-kbuild-")))
    key = f"{headers.name}-{headers.version}"

    def build(tmp: Path) -> None:
        host = DebianArchive(host_arch())
        debs = archive.download(archive.show([headers.name, common])) + host.download(
            host.show([kbuild])
        )
        for deb in debs:
            extract_deb(deb, tmp)
        tree = tmp / "usr" / "src" / headers.name
        if not tree.is_dir():
            raise InfraError(f"{headers.name}: no usr/src/{tree.name} in the package")
        # The arch tree's Makefile includes the common tree by absolute path; make runs with
        # -C in the arch tree, so a path relative to it works wherever the cache lives.
        makefile = tree / "Makefile"
        makefile.write_text(makefile.read_text().replace("/usr/src/", "../"))

    root = build_once("headers", key, build, unchecked=ALL)  # a build tree, never booted
    return root / "usr" / "src" / headers.name


def module_tree(kernel: Kernel) -> tuple[Path, list[str]]:
    """(kbuild tree to build against, extra make variables) for ``kernel``."""
    if kernel.build_dir is not None and (kernel.build_dir / "Module.symvers").is_file():
        return kernel.build_dir, []
    if kernel.identity.startswith("debian-"):
        # Test modules need no BTF, and pahole (which Debian's 6.12 headers would run for it)
        # is not part of the headers' kbuild tools: leave it out rather than need the host's.
        return debian_headers(kernel), [
            "DEBIAN_KERNEL_NO_CC_VERSION_CHECK=y",
            "CONFIG_DEBUG_INFO_BTF_MODULES=",
        ]
    raise UserError(
        f"kernel {kernel.release} comes without a build tree to build test modules against: "
        "pass its kbuild output directory (with .config and Module.symvers) as --kernel"
    )


def build_test_module(kernel: Kernel, name: str) -> Path:
    """guest-scripts/kmod/NAME.c built for ``kernel``; returns the .ko."""
    source = kmod_source(name)
    if source is None:
        raise UserError(f"no test module {name!r} in {':'.join(map(str, kmod_dirs()))}")
    arch: ArchProfile = kernel.arch
    variables = check_host(arch)
    tree, extra = module_tree(kernel)
    key = digest(
        "kmod", name, kernel.identity, kernel.release, file_digest(source), variables, extra
    )[:32]

    def build(tmp: Path) -> None:
        work = tmp / "src"
        work.mkdir()
        shutil.copy(source, work / source.name)
        (work / "Kbuild").write_text(f"obj-m += {name}.o\n")
        argv = ["make", "-C", str(tree), f"M={work}", *variables, *extra, "modules"]
        done = proc.run_logged(
            argv,
            timeout=MODULE_BUILD_TIMEOUT,
            log=tmp.with_suffix(".log"),
            what=f"test module {name}",
        )
        (tmp / "build.log").write_bytes(done.stdout + done.stderr)
        shutil.move(work / f"{name}.ko", tmp / f"{name}.ko")
        shutil.rmtree(work)

    return build_once("kmods", key, build) / f"{name}.ko"


_FAILED: dict[tuple[str, str], str] = {}  # (kernel identity, module): why it did not build


def build_failure(kernel: Kernel, name: str) -> str | None:
    """None when test module ``name`` builds for ``kernel`` (built now or cached), else why
    not in one line: the scenarios that need it are skipped with that reason and the rest of
    the run goes on.  A failed build is tried once per process.  Bad input (no such module, no
    cross compiler, no build tree) still raises UserError."""
    key = (kernel.identity, name)
    if key not in _FAILED:
        try:
            build_test_module(kernel, name)
        except InfraError as exc:
            _FAILED[key] = str(exc)
            return _FAILED[key]
        return None
    return _FAILED[key]
