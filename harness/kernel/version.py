"""Kernel versions as numbers, and version ranges as data ('>=6.1, <6.2'): what the
known-issues registry and the behaviour table (harness/kernel/behaviour.toml) say where they
apply with."""

import re
from dataclasses import dataclass

from harness.errors import UserError

SERIES = re.compile(r"^\d+\.\d+$")  # a kernel series as users name it: 6.1, 6.12
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_BOUND = re.compile(r"^\s*(>=|<=|<|>|==)\s*(\d+(?:\.\d+){0,2})\s*$")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version | None:
    """'6.1.0-57-amd64' → (6, 1, 0); '6.12.117' → (6, 12, 117); None when not a version."""
    m = _VERSION.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class VersionRange:
    """'>=6.1, <6.2': every bound must hold.  Empty: every version."""

    bounds: tuple[tuple[str, Version], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "VersionRange":
        bounds = []
        for part in (p for p in text.split(",") if p.strip()):
            m = _BOUND.match(part)
            if not m:
                raise UserError(f"version bound {part.strip()!r} is not like '>=6.1' or '<6.2'")
            version = parse_version(m.group(2))
            assert version is not None
            bounds.append((m.group(1), version))
        return cls(tuple(bounds))

    def __str__(self) -> str:
        return ", ".join(op + ".".join(map(str, v)) for op, v in self.bounds)

    def contains(self, version: Version) -> bool:
        checks = {
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            "==": lambda a, b: a[: len(b)] == b,
        }
        return all(checks[op](version, bound) for op, bound in self.bounds)
