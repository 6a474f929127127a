"""`memharness kernel build`: a test kernel from a source tree and kconfigs/ fragments.

tinyconfig for the arch, then merge_config.sh with the fragments, then olddefconfig; every
option a fragment asked for must survive (KUnit's check): a dropped option stops the build
with its name and what it depends on.  The build runs out of tree (O=) in the cache, with
ccache when installed and -j from the core count; its directory holds the build log, vmlinux
(for stack decoding), the .config and a kernel.json manifest, so `--kernel DIR` boots it.
A second build with the same sources and fragments does nothing.
"""

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import digest
from harness.datafile import read_text
from harness.diskspace import GIB, require_free
from harness.errors import InfraError, UserError
from harness.kernel.kconfig import Requirement, fragment_requirements, missing, parse_config
from harness.kernel.local import MANIFEST
from harness.kernel.model import Kernel
from harness.kernel.source import Source
from harness.paths import KCONFIGS, cache_root

DEFAULT_FRAGMENTS = (
    "zone-device",
    "hotplug",
    "memory-failure",
    "debug-vm",
    "memcg",
    "userspace",
    "gup-test",
)
BUILD_TIMEOUT = 4 * 3600.0
BUILD_PREFIX = "mh-build-"  # build directories inside trees memharness owns
# Room a build directory may take: 130-240 MB measured with the default fragments; debug info
# or KASAN take several times more.
BUILD_SPACE = 1 * GIB


def ccache_env() -> dict[str, str]:
    """The environment of a build: ccache must not hash the working directory (the build
    directory's path), so that relative compile commands hit across trees."""
    return {**os.environ, "CCACHE_NOHASHDIR": "1"}


log = logging.getLogger(__name__)
HOST_TOOLS = {"make": "make", "bc": "bc", "bison": "bison", "flex": "flex", "perl": "perl"}


@dataclass(frozen=True)
class BuildRequest:
    arch: ArchProfile
    source: Source
    fragments: tuple[Path, ...]  # in merge order, arch parts included

    @property
    def key(self) -> str:
        """What the result depends on: sources, fragment contents, arch."""
        return digest(
            self.arch.name, self.source.identity, [(f.name, f.read_text()) for f in self.fragments]
        )[:24]

    @property
    def config_key(self) -> str:
        """What the .config depends on besides the tree's Kconfig files."""
        return digest(self.arch.name, [(f.name, f.read_text()) for f in self.fragments])

    @property
    def directory(self) -> Path:
        """The O= directory: stable per user tree (incremental), per version otherwise.

        A tree memharness owns (Debian's source, an exported commit) is built in a direct
        subdirectory of itself: kbuild then calls the source tree ``..`` and every path in a
        compile command is relative, so ccache hits for the same code in another tree (the
        next commit of a bisect, a patched copy).  A user's own tree is never written to: its
        build directory lives in the cache, with absolute paths."""
        if self.source.user_tree:
            where = str(self.source.path)
        else:
            where = self.source.slot or self.source.identity
        names = [f.name for f in self.fragments]
        name = f"{self.arch.name}-{digest(where, names)[:16]}"
        if self.source.user_tree:
            return cache_root() / "builds" / name
        return self.source.path / f"{BUILD_PREFIX}{name}"


def fragment_files(names: list[str], arch: ArchProfile) -> tuple[Path, ...]:
    """base + the named topics (each followed by its arch part), or fragment file paths."""
    files: list[Path] = []
    for name in ["base", *names]:
        path = Path(name)
        if path.suffix == ".config" and path.is_file():
            read_text(path, "kconfig fragment")  # UTF-8, readable: one line otherwise
            files.append(path.resolve())
            continue
        generic, specific = KCONFIGS / f"{name}.config", KCONFIGS / arch.name / f"{name}.config"
        if not generic.is_file() and not specific.is_file():
            topics = sorted(p.stem for p in KCONFIGS.glob("*.config") if p.stem != "base")
            raise UserError(
                f"fragment {name!r} not found: use one of {', '.join(topics)} or "
                "a path to a .config fragment"
            )
        files += [f for f in (generic, specific) if f.is_file()]
    return tuple(dict.fromkeys(files))


def build_command(options: list[str], arch: ArchProfile) -> str:
    """The ``memharness kernel build`` that gives a kernel ``options`` (as missing_options
    names them: 'KASAN', 'MEMCG=n'): the default fragments plus every kconfigs/ topic that
    sets an option the defaults do not.  A KASAN requirement thus names the kasan fragment;
    an option no topic sets is named, for a fragment of the user's own; one asked to be off
    leaves the defaults alone."""
    wanted = {o.removeprefix("CONFIG_") for o in options if "=" not in o}
    topics = sorted(p.stem for p in KCONFIGS.glob("*.config") if p.stem != "base")
    extra: list[str] = []
    provided: set[str] = set()
    for topic in topics:
        sets = {
            r.option.removeprefix("CONFIG_")
            for path in fragment_files([topic], arch)[1:]
            for r in fragment_requirements(path.read_text())
            if r.accepted != ("n",)
        }
        provided |= sets & wanted
        if sets & wanted and topic not in DEFAULT_FRAGMENTS:
            extra.append(topic)
    unset = sorted(wanted - provided)
    chosen = [*DEFAULT_FRAGMENTS, *extra, *(["FILE"] if unset else [])]
    fragments = "".join(f" --fragment {f}" for f in chosen) if extra or unset else ""
    command = f"memharness kernel build --arch {arch.name}{fragments}"
    if unset:
        names = ", ".join(f"CONFIG_{o}" for o in unset)
        return f"{command} (FILE: a fragment of yours with {names}; no kconfigs/ topic sets it)"
    return command


def check_host(arch: ArchProfile) -> list[str]:
    """The make variables for ``arch``; refuses (one line) when a build tool is missing."""
    for tool, package in HOST_TOOLS.items():
        proc.require_tool(tool, package)
    proc.require_tool(arch.cc, arch.compiler_package)
    variables = [f"ARCH={arch.kernel_arch}"]
    if arch.cross_compile:
        variables.append(f"CROSS_COMPILE={arch.cross_compile}")
    if shutil.which("ccache"):
        variables += [f"CC=ccache {arch.cc}", "HOSTCC=ccache gcc"]
    return variables


def explain_dropped(source: Path, dropped: list[Requirement], config: dict[str, str]) -> str:
    """Each dropped option with the dependencies its Kconfig entry names, and their values."""
    parts = []
    for req in dropped:
        name = req.option.removeprefix("CONFIG_")
        deps = kconfig_depends(source, name)
        unmet = [d for d in deps if not _dependency_met(d, config)]
        shown = "; ".join(unmet or deps) or "no Kconfig entry for this arch"
        parts.append(f"{req} (now {config.get(req.option, 'n')}; depends on: {shown})")
    return ", ".join(parts)


def kconfig_depends(source: Path, name: str) -> list[str]:
    """The 'depends on' lines of ``config NAME`` in the tree's Kconfig files."""
    found: list[str] = []
    pattern = re.compile(rf"^\s*(?:menu)?config {re.escape(name)}\s*$")
    for kconfig in list(source.glob("**/Kconfig*"))[:20000]:
        lines = kconfig.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if not pattern.match(line):
                continue
            for following in lines[i + 1 : i + 40]:
                if re.match(
                    r"^\s*(?:menu)?config \w+|^\s*(?:if|endif|menu|endmenu|choice)\b", following
                ):
                    break
                m = re.match(r"^\s*depends on\s+(.*)$", following)
                if m:
                    found.append(m.group(1).strip())
    return list(dict.fromkeys(found))


def _dependency_met(expression: str, config: dict[str, str]) -> bool:
    """A rough evaluation (&&, ||, !, symbols) good enough to point at what is missing."""
    expr = re.sub(
        r"\b([A-Z][A-Z0-9_]+)\b",
        lambda m: "True" if config.get(f"CONFIG_{m.group(1)}", "n") in ("y", "m") else "False",
        expression,
    )
    expr = expr.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    expr = re.sub(r"\s*=\s*(?:y|m)\b", "", expr)
    try:
        return bool(eval(expr, {"__builtins__": {}}, {}))
    except Exception:
        return False


def configure(request: BuildRequest, variables: list[str]) -> dict[str, str]:
    """Writes and validates O=/.config; returns the parsed result."""
    out = request.directory
    out.mkdir(parents=True, exist_ok=True)
    make = ["make", "-C", str(request.source.path), f"O={out}", *variables]
    proc.run([*make, "tinyconfig"], timeout=600, what="make tinyconfig", env=ccache_env())
    merge = request.source.path / "scripts" / "kconfig" / "merge_config.sh"
    env = dict(os.environ)
    for variable in variables:
        name, _, value = variable.partition("=")
        if name in ("ARCH", "CROSS_COMPILE"):
            env[name] = value
    proc.run(
        [
            "sh",
            str(merge),
            "-m",
            "-O",
            str(out),
            str(out / ".config"),
            *map(str, request.fragments),
        ],
        timeout=600,
        cwd=request.source.path,
        env=env,
        what="merge_config.sh",
    )
    proc.run([*make, "olddefconfig"], timeout=600, what="make olddefconfig", env=ccache_env())
    config = parse_config((out / ".config").read_text())
    wanted = [r for f in request.fragments for r in fragment_requirements(f.read_text())]
    dropped = missing(config, wanted)
    if dropped:
        why = explain_dropped(request.source.path, dropped, config)
        raise UserError(
            f"{len(dropped)} option(s) did not survive olddefconfig for {request.arch.name}: "
            f"{why}: add what they depend on to a fragment"
        )
    return config


def build_kernel(
    arch: ArchProfile,
    source: Source,
    fragment_names: list[str],
    config_only: bool = False,
    jobs: int | None = None,
) -> Path:
    """Builds (or finds up to date) and returns the build directory, usable as --kernel."""
    variables = check_host(arch)
    request = BuildRequest(arch, source, fragment_files(fragment_names, arch))
    out = request.directory
    manifest = out / MANIFEST
    if manifest.is_file() and not config_only:
        existing = Kernel.load(manifest)
        pvh_now = boots_through_pvh(arch, parse_config((out / ".config").read_text()))
        # a manifest written under an older rule for the boot image is rewritten below (make
        # then finds nothing to do)
        if existing.identity == f"build-{request.key}" and (existing.boot_kind == "pvh") == pvh_now:
            _say(f"{arch.name} kernel is up to date: {out}")
            return out
    stamp = out / ".memharness-config"
    if stamp.is_file() and stamp.read_text() == request.config_key and not config_only:
        # Same fragments, same arch: the .config stands; make re-syncs it if Kconfig changed.
        config = parse_config((out / ".config").read_text())
    else:
        names = [
            str(f.relative_to(KCONFIGS)) if f.is_relative_to(KCONFIGS) else str(f)
            for f in request.fragments
        ]
        _say(f"configuring {arch.name} kernel from {source.origin} with {', '.join(names)}")
        config = configure(request, variables)
        stamp.write_text(request.config_key)
    if config_only:
        _say(f"configuration validated: {out / '.config'}")
        return out
    manifest.unlink(missing_ok=True)
    require_free(out, BUILD_SPACE, f"building the {arch.name} kernel")
    target = Path(arch.kernel_image).name
    targets = [target, "vmlinux"] + (["modules"] if "=m" in (out / ".config").read_text() else [])
    jobs = jobs or os.cpu_count() or 1
    log = out / "build.log"
    _make(
        ["make", "-C", str(source.path), f"O={out}", *variables, f"-j{jobs}", *targets], log, arch
    )
    release = (out / "include" / "config" / "kernel.release").read_text().strip()
    modules_root = None
    if "modules" in targets:
        modules_root = out / "modroot"
        shutil.rmtree(modules_root, ignore_errors=True)
        proc.run(
            [
                "make",
                "-C",
                str(source.path),
                f"O={out}",
                *variables,
                f"INSTALL_MOD_PATH={modules_root}",
                "modules_install",
            ],
            timeout=1800,
            what="make modules_install",
        )
    vmlinux = out / "vmlinux"
    pvh = boots_through_pvh(arch, config)
    kernel = Kernel(
        arch=arch,
        release=release,
        boot_image=vmlinux if pvh else out / arch.kernel_image,
        boot_kind="pvh" if pvh else Path(arch.kernel_image).name,
        origin=f"built from {source.origin} with {', '.join(fragment_names) or 'base'}",
        identity=f"build-{request.key}",
        modules_root=modules_root,
        config=out / ".config",
        vmlinux=vmlinux,
        build_dir=out,
    )
    kernel.save(manifest)
    _say(f"built {arch.name} kernel {release}: {out}")
    return out


def boots_through_pvh(arch: ArchProfile, config: dict[str, str]) -> bool:
    """Whether the build boots as its vmlinux through QEMU's PVH entry (fast: no
    decompression) rather than its bzImage.  Not a KASAN kernel: PVH's entry runs instrumented
    C before the shadow memory exists (image_format.KASAN_NO_PVH)."""
    return arch.pvh_boot and config.get("CONFIG_PVH") == "y" and config.get("CONFIG_KASAN") != "y"


def _make(argv: list[str], log: Path, arch: ArchProfile) -> None:
    """Runs the build with its output in build.log and a progress line every 30 s."""
    start = time.monotonic()
    with log.open("w") as out:
        child = proc.spawn(argv, stdout=out.fileno(), stderr=subprocess.STDOUT, env=ccache_env())
        try:
            while True:
                try:
                    code = child.wait(30)
                    break
                except subprocess.TimeoutExpired:
                    steps = sum(
                        1
                        for ln in log.read_text(errors="replace").splitlines()
                        if ln.startswith("  CC")
                    )
                    _say(
                        f"building {arch.name}: {steps} files compiled, "
                        f"{time.monotonic() - start:.0f} s"
                    )
                    if time.monotonic() - start > BUILD_TIMEOUT:
                        raise InfraError(f"kernel build exceeded {BUILD_TIMEOUT:.0f} s") from None
        finally:
            proc.kill(child)
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise InfraError(f"kernel build failed (exit {code}); {log}: {' | '.join(tail)}")
    _say(f"{arch.name} build finished in {time.monotonic() - start:.0f} s")


def _say(message: str) -> None:
    log.info(message)
