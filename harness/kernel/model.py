"""A bootable kernel and what comes with it (its JSON form derived from the dataclass)."""

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.arch import ArchProfile, get_arch
from harness.errors import UserError
from harness.kernel.kconfig import DEFAULT_ACCEPTED, Requirement, missing, parse_config


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel and what comes with it."""

    arch: ArchProfile
    release: str  # uname -r
    boot_image: Path  # what -kernel gets
    boot_kind: str  # pvh | bzImage | Image
    origin: str  # human-readable provenance: package and version, or a path
    identity: str  # stable id for cache keys and reports
    modules_root: Path | None = None  # holds lib/modules/<release>
    config: Path | None = None
    vmlinux: Path | None = None  # ELF with symbols, for stack decoding
    build_dir: Path | None = None  # kbuild output tree, for building test modules
    notes: tuple[str, ...] = field(default=())

    @property
    def modules_dir(self) -> Path | None:
        if self.modules_root is None:
            return None
        path = self.modules_root / "lib" / "modules" / self.release
        return path if path.is_dir() else None

    def config_options(self) -> dict[str, str] | None:
        """Parsed .config, or None when the kernel came without one."""
        if self.config is None or not self.config.is_file():
            return None
        return parse_config(self.config.read_text(errors="replace"))

    def unmet(self, required: Iterable["str | Requirement"]) -> list[Requirement]:
        """Requirements (``OPTION``, ``OPTION=m``, or parsed) this kernel's .config does not
        satisfy; [] when there is no .config (the guest will tell).  The one place memharness
        asks whether a kernel can do something."""
        options = self.config_options()
        if options is None:
            return []
        parsed = [r if isinstance(r, Requirement) else Requirement.parse(r) for r in required]
        return missing(options, parsed)

    def missing_options(self, required: Iterable[str]) -> list[str]:
        """``unmet`` for skip reasons: 'CONFIG_X' when the option is simply absent,
        'CONFIG_X=n' (and the like) when a particular value was asked for."""
        return [
            r.option if r.accepted == DEFAULT_ACCEPTED else str(r) for r in self.unmet(required)
        ]

    def check_requirements(self, required: Iterable["str | Requirement"], purpose: str) -> None:
        """Refuses, in one line, a kernel that lacks options ``purpose`` needs."""
        absent = self.unmet(required)
        if absent:
            names = ", ".join(str(r) for r in absent)
            raise UserError(
                f"kernel {self.release} lacks {names} needed for {purpose}: build one with "
                "memharness kernel build --fragment <topic> and pass it with --kernel"
            )

    def to_json(self, base: Path | None = None) -> dict[str, object]:
        """JSON form; paths under ``base`` are stored relative so the entry can move."""
        data = asdict(self)
        data["arch"] = self.arch.name
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(
                    value.relative_to(base) if base and value.is_relative_to(base) else value
                )
        return data

    @classmethod
    def from_json(cls, data: dict[str, object], base: Path | None = None) -> "Kernel":
        kwargs: dict[str, object] = {}
        for key, value in data.items():
            if key == "arch":
                kwargs[key] = get_arch(str(value))
            elif key in _PATH_FIELDS:
                kwargs[key] = (base / str(value) if base else Path(str(value))) if value else None
            elif key == "notes":
                kwargs[key] = tuple(value) if isinstance(value, list) else ()
            else:
                kwargs[key] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    def save(self, path: Path) -> None:
        """Writes a manifest whose paths are relative to its own directory."""
        path.write_text(json.dumps(self.to_json(path.parent), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Kernel":
        return cls.from_json(json.loads(path.read_text()), path.parent)


_PATH_FIELDS = {"boot_image", "modules_root", "config", "vmlinux", "build_dir"}
