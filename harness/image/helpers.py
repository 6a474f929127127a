"""Static guest helpers (guest-scripts/*.c) compiled for the guest arch, cached by source.

Static linking keeps them independent of the image's libraries and lets one binary serve every
kernel of an arch.  The key is the sources and flags only, so a cached build needs no compiler
at all (a compiler upgrade does not change what these small programs do).
"""

import shutil
from collections.abc import Callable
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import build_once, digest, tree_digest
from harness.debian import DebianArchive, Package
from harness.errors import UserError
from harness.paths import GUEST_SCRIPTS, KMOD_SOURCES

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


GUEST_BIN = "/usr/local/bin"
AGENT = "/sbin/mh-agent"


def guest_files(helpers: dict[str, Path], scripts: Path = GUEST_SCRIPTS) -> list[tuple[Path, str]]:
    """(host file, guest path) of everything memharness puts in a guest, whichever image:
    the agent at /sbin/mh-agent, the other static helpers and guest-scripts (not the C sources,
    not the images' own init scripts) in /usr/local/bin."""
    files = [
        (binary, AGENT if name == "mh-agent" else f"{GUEST_BIN}/{name}")
        for name, binary in helpers.items()
    ]
    files += [
        (script, f"{GUEST_BIN}/{script.name}")
        for script in sorted(scripts.iterdir())
        if script.is_file() and script.suffix != ".c" and not script.name.startswith("init")
    ]
    return files


def guest_files_key(helpers: dict[str, Path]) -> list[object]:
    """What ``guest_files`` puts in a guest, for an image's cache key."""
    return [
        tree_digest(GUEST_SCRIPTS, exclude=(KMOD_SOURCES.name,)),
        sorted(p.parent.name for p in helpers.values()),
    ]


def resolve_packages(
    arch: ArchProfile, names: tuple[str, ...], keep: Callable[[str], bool]
) -> tuple[DebianArchive, list[Package]]:
    """``names`` and the packages of their Depends closure that ``keep`` accepts, with the
    versions the arch's lists have."""
    archive = DebianArchive(arch)
    closure = archive.depends_closure(list(names))
    wanted = sorted(set(names) | {n for n in closure if keep(n)})
    return archive, archive.show(wanted)
