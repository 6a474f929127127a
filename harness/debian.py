"""Debian archive access for any guest arch without touching the host's dpkg state.

Each arch gets private apt lists and caches under the memharness cache (the recipe of
DESIGN.md §3: ``-oAPT::Architecture=arm64 -oDir::State::Lists=...``), so arm64 packages are
fetched without ``dpkg --add-architecture``.  Lookups are memoised per lists generation, which
keeps a second run offline and fast; a download that fails because the mirror moved on refreshes
the lists once and retries.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.arch import ArchProfile
from harness.cache import digest, locked
from harness.errors import InfraError
from harness.paths import cache_root

APT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str  # amd64 | arm64 | all
    depends: str  # raw Depends field (for metapackage resolution)

    @property
    def deb_name(self) -> str:
        """The file name apt-get download writes (epoch colon escaped as %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Parses apt-cache show output (RFC 822 stanzas; continuation lines are folded in)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
                current = {}
            continue
        if line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_recurse_depends(text: str) -> list[str]:
    """Package names from ``apt-cache depends --recurse`` (top-level lines, no virtuals)."""
    names = []
    for line in text.splitlines():
        if line and not line.startswith(" ") and not line.startswith("<"):
            names.append(line.strip())
    return sorted(set(names))


def first_dependency(depends: str) -> str:
    """'linux-image-6.1.0-56-arm64 (= 6.1.192-2), foo' → 'linux-image-6.1.0-56-arm64'."""
    first = depends.split(",")[0].split("|")[0].strip()
    return re.sub(r"\s*\(.*\)", "", first).split(":")[0]


class DebianArchive:
    """Private apt state for one Debian architecture."""

    def __init__(self, arch: ArchProfile) -> None:
        self.debian_arch = arch.debian_arch
        self.root = cache_root() / "apt" / arch.debian_arch
        self.lists = self.root / "lists"
        self.debs = cache_root() / "debs" / arch.debian_arch

    def _options(self) -> list[str]:
        status = self.root / "status"
        opts = [
            f"-oAPT::Architecture={self.debian_arch}",
            f"-oAPT::Architectures={self.debian_arch}",
            f"-oDir::State::Lists={self.lists}",
            f"-oDir::State::status={status}",
            f"-oDir::Cache={self.root / 'cache'}",
            "-oDebug::NoLocking=1",
            "-oAcquire::Retries=3",
        ]
        if os.geteuid() == 0:
            opts.append("-oAPT::Sandbox::User=root")
        return opts

    def _apt(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        proc.require_tool(tool, "apt")
        result = proc.run(
            [tool, "-q", *self._options(), *args], timeout=APT_TIMEOUT, cwd=cwd, what=tool
        )
        return result.stdout.decode(errors="replace")

    def _generation(self) -> str:
        """Identifies the current lists; memoised lookups are only valid within one."""
        files = sorted(self.lists.glob("*_Packages*"))
        return digest([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])

    def update(self) -> None:
        """Fetches fresh package lists for this arch (network)."""
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        try:
            self._apt("apt-get", "update")
        except InfraError as exc:
            raise InfraError(
                f"cannot fetch Debian {self.debian_arch} package lists: {exc}"
            ) from exc
        if not list(self.lists.glob("*_Packages*")):
            raise InfraError(
                f"apt-get update gave no {self.debian_arch} package lists: check the deb "
                "sources in /etc/apt/sources.list(.d)"
            )

    def _ensure_lists(self) -> None:
        with locked(self.root / "update.lock"):
            if not list(self.lists.glob("*_Packages*")):
                self.update()

    def _memo(self, what: str, args: list[str]) -> Path:
        return self.root / "memo" / f"{what}-{digest(args, self._generation())[:24]}.json"

    def show(self, names: list[str]) -> list[Package]:
        """Candidate versions of ``names`` (memoised per lists generation)."""
        self._ensure_lists()
        memo = self._memo("show", sorted(names))
        if memo.exists():
            return [Package(**p) for p in json.loads(memo.read_text())]
        text = self._apt("apt-cache", "show", "--no-all-versions", *names)
        found = {
            s["Package"]: Package(
                s["Package"], s["Version"], s["Architecture"], s.get("Depends", "")
            )
            for s in parse_stanzas(text)
            if "Package" in s
        }
        missing = [n for n in names if n not in found]
        if missing:
            raise InfraError(f"Debian {self.debian_arch} has no package {', '.join(missing)}")
        packages = [found[n] for n in names]
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps([p.__dict__ for p in packages]))
        return packages

    def names(self, prefix: str) -> list[str]:
        """Every package name starting with ``prefix`` (memoised per lists generation)."""
        self._ensure_lists()
        memo = self._memo("names", [prefix])
        if memo.exists():
            return list(json.loads(memo.read_text()))
        found = sorted(self._apt("apt-cache", "pkgnames", prefix).split())
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(found))
        return found

    def depends_closure(self, names: list[str]) -> list[str]:
        """Names of ``names`` and everything they depend on (no recommends), memoised."""
        self._ensure_lists()
        memo = self._memo("closure", sorted(names))
        if memo.exists():
            return list(json.loads(memo.read_text()))
        text = self._apt(
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *names,
        )
        closure = parse_recurse_depends(text)
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(closure))
        return closure

    def download(self, packages: list[Package]) -> list[Path]:
        """The .deb files of ``packages``, downloading only what the cache lacks."""
        self.debs.mkdir(parents=True, exist_ok=True)
        with locked(self.debs / ".lock"):
            missing = [p for p in packages if not (self.debs / p.deb_name).exists()]
            if missing:
                specs = [f"{p.name}={p.version}" for p in missing]
                try:
                    self._apt("apt-get", "download", *specs, cwd=self.debs)
                except InfraError as exc:
                    raise InfraError(
                        f"downloading {', '.join(specs)} failed ({exc}); if the mirror moved on, "
                        "run: memharness update"
                    ) from exc
        paths = [self.debs / p.deb_name for p in packages]
        absent = [p.name for p in paths if not p.exists()]
        if absent:
            raise InfraError(f"apt-get download did not produce {', '.join(absent)}")
        return paths


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpacks a .deb's data into ``dest`` (dpkg-deb -x; no maintainer scripts run)."""
    proc.require_tool("dpkg-deb", "dpkg")
    proc.run(["dpkg-deb", "-x", str(deb), str(dest)], timeout=300)
