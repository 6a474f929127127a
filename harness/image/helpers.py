"""Static guest helpers (guest-scripts/*.c) compiled for the guest arch, cached by source.

Static linking keeps them independent of the image's libraries and lets one binary serve every
kernel of an arch.  The key is the sources and flags only, so a cached build needs no compiler
at all (a compiler upgrade does not change what these small programs do).
"""

import shutil
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest
from harness.errors import UserError
from harness.paths import GUEST_SCRIPTS

CFLAGS = ["-static", "-O2", "-Wall", "-Wextra", "-Werror"]


def sources(scripts: Path = GUEST_SCRIPTS) -> list[Path]:
    return sorted(scripts.glob("*.c"))


def build_helpers(arch: ArchProfile, scripts: Path = GUEST_SCRIPTS) -> dict[str, Path]:
    """{helper name: static binary} for every guest-scripts/*.c."""
    srcs = sources(scripts)
    key = digest(arch.name, CFLAGS, [(s.name, s.read_bytes()) for s in srcs])

    def build(tmp: Path) -> None:
        cc = shutil.which(arch.cc)
        if cc is None:
            raise UserError(
                f"{arch.cc} not found: install the Debian package "
                f"{arch.compiler_package} (make setup does it)"
            )
        for src in srcs:
            proc.run(
                [cc, *CFLAGS, "-o", str(tmp / src.stem), str(src)],
                timeout=300,
                what=f"compiling {src.name} for {arch.name}",
            )

    entry = build_once("helpers", key[:32], build)
    return {s.stem: entry / s.stem for s in srcs}
