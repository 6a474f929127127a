"""Builds mm selftests of a kernel source tree for the guest arch, statically, cached.

Static binaries need nothing from the guest image, so one build serves every kernel of an arch
(the selftests check what the running kernel offers at run time).  The tree is never written
to: its selftests, tools/include and the mm headers they include are copied to a scratch tree
(check_config.sh writes its probe results into the selftests directory, and those differ per
compiler), and the uapi headers come from ``make headers`` into a scratch output directory.
"""

import shutil
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.errors import InfraError, UserError
from harness.kernel.source import Source
from harness.selftests.catalogue import Selftest, selftests_dir

BUILD_FORMAT = 1
EXTRA_CFLAGS = "-static"
BUILD_TIMEOUT = 900.0
COPIED = ("tools/testing/selftests", "tools/include", "tools/arch", "mm")


def _copy_tree(tree: Path, scratch: Path) -> None:
    for rel in COPIED:
        src = tree / rel
        if not src.exists():
            continue
        if rel == "mm":  # only the headers selftests include (gup_test.h), not mm/*.c
            (scratch / rel).mkdir(parents=True, exist_ok=True)
            for header in src.glob("*.h"):
                shutil.copyfile(header, scratch / rel / header.name)
            continue
        shutil.copytree(src, scratch / rel, symlinks=True)


def build_selftests(source: Source, arch: ArchProfile, tests: list[Selftest]) -> dict[str, Path]:
    """{test name: static binary for ``arch``}; a build failure is an InfraError quoting the
    compiler's first error (the whole log is kept next to the cache entry)."""
    directory = selftests_dir(source.path).relative_to(source.path)
    names = sorted(t.name for t in tests)
    key = digest("selftests", BUILD_FORMAT, arch.name, source.identity, names, EXTRA_CFLAGS)[:32]
    cc = shutil.which(arch.cc)
    if cc is None:
        raise UserError(
            f"{arch.cc} not found: install the Debian package {arch.compiler_package} "
            "(make setup does it)"
        )

    def build(tmp: Path) -> None:
        scratch, headers, out = tmp / "src", tmp / "headers", tmp / "bin"
        _copy_tree(source.path, scratch)
        out.mkdir()
        log = tmp.parent / f"selftests-{arch.name}-{key}.log"  # outlives a failed build
        variables = [f"ARCH={arch.kernel_arch}"]
        steps = [
            (
                "make headers",
                ["make", "-s", "-C", str(source.path), f"O={headers}", *variables, "headers"],
            ),
            (
                f"building {', '.join(names)}",
                [
                    "make",
                    "-C",
                    str(scratch / directory),
                    f"OUTPUT={out}",
                    f"CC={cc}",
                    *variables,
                    f"MACHINE={arch.kernel_arch}",
                    f"EXTRA_CFLAGS={EXTRA_CFLAGS}",
                    f"KHDR_INCLUDES=-isystem {headers / 'usr/include'}",
                    *(str(out / n) for n in names),
                ],
            ),
        ]
        for what, argv in steps:
            proc.run_logged(argv, timeout=BUILD_TIMEOUT, log=log, what=f"{what} ({arch.name})")
        for name in names:
            if not (out / name).is_file():
                raise InfraError(f"selftests build made no {name}; log {log}")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(headers, ignore_errors=True)

    entry = build_once("selftests", f"{arch.name}-{key}", build)
    return {name: entry / "bin" / name for name in names}
