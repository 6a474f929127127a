"""Kernel .config parsing and requirement checks (pure).

Used twice: before booting, to refuse a kernel that lacks an option a scenario needs (with a
one-line error naming the option and the fix), and after a build, to prove every requested
option survived olddefconfig.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_X=value lines → {'CONFIG_X': 'value'}; '# CONFIG_X is not set' → 'n'."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET.match(line):
            options[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            options[m.group(1)] = "n"
    return options


def normalise(option: str) -> str:
    return option if option.startswith("CONFIG_") else f"CONFIG_{option}"


DEFAULT_ACCEPTED = ("y", "m")


@dataclass(frozen=True)
class Requirement:
    """An option and the values that satisfy it ('y', 'm' or a literal)."""

    option: str
    accepted: tuple[str, ...] = DEFAULT_ACCEPTED

    @classmethod
    def parse(cls, spec: str) -> "Requirement":
        """'ZONE_DEVICE' → y or m; 'DEBUG_VM=y' → y only; 'X86_PMEM_LEGACY=m|y' → m or y."""
        name, _, value = spec.partition("=")
        accepted = tuple(value.split("|")) if value else DEFAULT_ACCEPTED
        return cls(normalise(name.strip()), accepted)

    def satisfied_by(self, options: Mapping[str, str]) -> bool:
        return options.get(self.option, "n") in self.accepted

    def __str__(self) -> str:
        return f"{self.option}={'|'.join(self.accepted)}"


def missing(options: Mapping[str, str], required: Iterable[Requirement]) -> list[Requirement]:
    """The requirements ``options`` does not satisfy, in the order given."""
    return [r for r in required if not r.satisfied_by(options)]


def fragment_requirements(text: str) -> list[Requirement]:
    """What a merge_config.sh fragment asks for: every CONFIG_X=y/m/value line.

    '# CONFIG_X is not set' lines are requests too (the value must stay 'n').
    """
    reqs = []
    for name, value in parse_config(text).items():
        reqs.append(Requirement(name, (value,)))
    return reqs
