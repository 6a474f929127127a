"""Scenarios as data (catalogue.toml), validated when loaded (pure).

A scenario names a layout and either collision modes or hotplug steps; this package composes
the two kinds and depends on both, while neither depends on it.
"""

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast

from harness.arch import ArchProfile, get_arch
from harness.collision.modes import DEFAULT_MODES, MODES
from harness.datafile import load_toml, reject_unknown
from harness.errors import UserError
from harness.guest.walkers import WALKERS
from harness.hotplug.steps import Action
from harness.layout.model import Layout

CATALOGUE = Path(__file__).with_name("catalogue.toml")
T = TypeVar("T")


DEFAULT_WALKERS = tuple(WALKERS)
MAX_CYCLES = 100
SEED_ID = re.compile(r"\d{3}")  # ../shared/seeds/NNN_*.txt


@dataclass(frozen=True)
class Scenario:
    name: str
    arch: str
    summary: str
    layout: Layout
    modes: tuple[str, ...] = DEFAULT_MODES
    walkers: tuple[str, ...] = DEFAULT_WALKERS
    teardown: bool = True
    requires: tuple[str, ...] = ()  # kernel options without which the scenario is skipped
    poison: bool = False  # hwpoison free RAM pages of each shared section before teardown
    known_bug: str | None = None  # the splat title this scenario reproduces on a buggy kernel
    seed_modes: bool = False  # one boot per mode, configured before any driver maps the pmem
    steps: tuple[Action, ...] = ()  # hotplug steps (layout kind hotplug), played in order
    cmdline: tuple[str, ...] = ()  # extra kernel arguments (e.g. rodata=off)
    seeds: tuple[str, ...] = ()  # the ../shared/seeds threads whose bug class it provokes
    cycles: int = 1  # collision: rounds of every mode, disable and enable, walkers racing
    pins: bool = True  # collision: in each mode, walk while mh-gup pins the mode's mapping

    @property
    def hotplug(self) -> bool:
        return bool(self.steps)

    def to_json(self) -> dict[str, Any]:
        """The scenario's one JSON schema (``memharness scenarios --json``)."""
        return {
            "name": self.name,
            "arch": self.arch,
            "summary": self.summary,
            "kind": self.layout.kind,
            "modes": list(self.modes),
            "walkers": list(self.walkers),
            "steps": [a.describe() for a in self.steps],
            "requires": list(self.requires),
            "known_bug": self.known_bug,
            "seeds": list(self.seeds),
            "cycles": self.cycles,
            "pins": self.pins,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Scenario":
        # printable in one-line errors, whatever the name holds (a newline, a control char)
        name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(data.get("name", "?")))
        reject_unknown(data, SCENARIO_KEYS, f"scenario {name}")
        try:
            scenario = cls(
                name=_typed(data, "name", str),
                arch=get_arch(_typed(data, "arch", str)).name,
                summary=_typed(data, "summary", str),
                layout=Layout.from_data(dict(_typed(data, "layout", dict))),
                modes=_strings(data, "modes", () if "steps" in data else DEFAULT_MODES),
                walkers=_strings(data, "walkers", DEFAULT_WALKERS),
                teardown=_typed(data, "teardown", bool, True),
                requires=_strings(data, "requires", ()),
                poison=_typed(data, "poison", bool, False),
                known_bug=_typed(data, "known_bug", str, None),
                seed_modes=_typed(data, "seed_modes", bool, False),
                steps=tuple(Action.from_data(dict(d)) for d in _typed(data, "steps", list, [])),
                cmdline=_strings(data, "cmdline", ()),
                seeds=_strings(data, "seeds", ()),
                cycles=_typed(data, "cycles", int, 1),
                pins=_typed(data, "pins", bool, True),
            )
        except UserError as exc:
            raise UserError(f"scenario {name}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(
                f"scenario {name}: malformed value ({type(exc).__name__}: {exc})"
            ) from None
        if (scenario.layout.kind == "hotplug") != scenario.hotplug:
            raise UserError(
                f"scenario {name}: a hotplug layout needs steps, and steps need a hotplug layout"
            )
        if not 1 <= scenario.cycles <= MAX_CYCLES:
            raise UserError(f"scenario {name}: cycles must be 1 to {MAX_CYCLES}")
        if scenario.cycles > 1 and (scenario.hotplug or scenario.seed_modes):
            raise UserError(
                f"scenario {name}: cycles reconfigure a collision layout's namespace; "
                "hotplug steps and seeded modes cannot repeat"
            )
        for seed in scenario.seeds:
            if not SEED_ID.fullmatch(seed):
                raise UserError(f"scenario {name}: seed {seed!r} is not a seed number like '003'")
        for mode in scenario.modes:
            if mode not in MODES:
                raise UserError(f"scenario {name}: unknown mode {mode!r} (use {', '.join(MODES)})")
        for walker in scenario.walkers:
            if walker not in WALKERS:
                raise UserError(
                    f"scenario {name}: unknown walker {walker!r} (use {', '.join(WALKERS)})"
                )
        return scenario


def load_catalogue(path: Path = CATALOGUE) -> list[Scenario]:
    data = load_toml(path, "catalogue")
    reject_unknown(data, ("scenario",), f"catalogue {path}")
    tables = data.get("scenario", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UserError(f"catalogue {path}: write scenarios as [[scenario]] tables")
    try:
        scenarios = [Scenario.from_data(s) for s in tables]
    except UserError as exc:
        raise UserError(f"catalogue {path}: {exc}") from None
    names = [s.name for s in scenarios]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise UserError(f"{path}: scenario names used twice: {', '.join(sorted(dupes))}")
    return scenarios


def select(
    catalogue: list[Scenario], names: str | None, arches: list[ArchProfile]
) -> list[Scenario]:
    """The scenarios asked for (all by default) that run on one of ``arches``."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    if wanted:
        known = {s.name for s in catalogue}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise UserError(
                f"unknown scenario {', '.join(unknown)}: `memharness scenarios` lists them"
            )
    arch_names = {a.name for a in arches}
    chosen = [s for s in catalogue if (wanted is None or s.name in wanted) and s.arch in arch_names]
    if wanted and not chosen:
        raise UserError(
            f"scenario {', '.join(wanted)} does not run on "
            f"{', '.join(sorted(arch_names))}: pick its arch with --arch"
        )
    return chosen


SCENARIO_KEYS = tuple(f.name for f in fields(Scenario))
_MISSING = object()


def _typed(data: dict[str, Any], key: str, kind: type[T], default: Any = _MISSING) -> T:
    """data[key] if it is a ``kind``; a one-line error for a missing or mistyped value (a
    string where a boolean belongs must not read as true)."""
    if key not in data:
        if default is _MISSING:
            raise UserError(f"missing key {key!r}")
        return cast(T, default)
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{key} must be a {kind.__name__}, not {type(value).__name__} {value!r}")
    return value


def _strings(data: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values = _typed(data, key, list, list(default))
    if not all(isinstance(v, str) for v in values):
        raise UserError(f"{key} must be a list of strings, not {values!r}")
    return tuple(values)
