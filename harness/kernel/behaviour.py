"""What a kernel does where versions differ (behaviour.toml): asked by name, so a version
difference is one line of data and not an `if version` in a runner."""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from harness.datafile import load_toml, reject_unknown
from harness.errors import UserError
from harness.kernel.model import Kernel
from harness.kernel.version import VersionRange, parse_version

BEHAVIOURS = Path(__file__).with_name("behaviour.toml")


@dataclass(frozen=True)
class Behaviour:
    name: str
    versions: VersionRange
    why: str


@cache
def load_behaviours(path: Path = BEHAVIOURS) -> dict[str, Behaviour]:
    data = load_toml(path, "kernel behaviour table")
    table = {}
    for name, entry in data.items():
        where = f"kernel behaviour table {path}: {name}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: write entries as [name] tables")
        reject_unknown(entry, ("versions", "why", "evidence"), where)
        try:
            versions = VersionRange.parse(str(entry.get("versions", "")))
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        table[name] = Behaviour(name, versions, str(entry.get("why", "")))
    return table


def behaves(kernel: Kernel, name: str) -> bool:
    """Whether ``kernel`` has behaviour ``name``; a release that is not a version number (a
    user's odd build) is taken to be as new as it gets, where every ``>=`` entry holds."""
    try:
        behaviour = load_behaviours()[name]
    except KeyError:
        raise UserError(f"no kernel behaviour {name!r} in {BEHAVIOURS}") from None
    version = parse_version(kernel.release)
    return behaviour.versions.contains(version if version is not None else (999, 0, 0))
