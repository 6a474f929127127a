"""Scenarios and namespace modes as data (catalogue.toml), validated when loaded (pure)."""

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.arch import ArchProfile, get_arch
from harness.errors import UserError
from harness.hotplug.steps import Step
from harness.layout.model import Layout
from harness.scenario.walkers import WALKERS

CATALOGUE = Path(__file__).with_name("catalogue.toml")


@dataclass(frozen=True)
class Mode:
    """A namespace configuration: what ndctl is asked for, what the kernel needs."""

    name: str
    ndctl: str  # create-namespace arguments
    requires: tuple[str, ...]
    modules: tuple[str, ...]
    zone_device: bool  # the namespace's pages are ZONE_DEVICE in this mode
    mapping: str = ""  # the madvise mapping this mode adds: fsdax (a file on -o dax) or devdax


_DAX = ("ZONE_DEVICE", "NVDIMM_DAX", "DEV_DAX_PMEM")
_DAX_MODULES = ("dax_pmem", "device_dax")
MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("fsdax-mem", "-m fsdax --map=mem", ("ZONE_DEVICE", "NVDIMM_PFN"), (), True, "fsdax"),
        Mode("fsdax-dev", "-m fsdax --map=dev", ("ZONE_DEVICE", "NVDIMM_PFN"), (), True, "fsdax"),
        Mode("devdax-mem", "-m devdax --map=mem", _DAX, _DAX_MODULES, True, "devdax"),
        Mode("devdax-dev", "-m devdax --map=dev", _DAX, _DAX_MODULES, True, "devdax"),
        # raw: no pfn/dax device.  Legacy (e820) regions still map their pages in raw mode.
        Mode("raw", "-m raw", (), (), False),
    )
}
DEFAULT_MODES = ("fsdax-mem", "fsdax-dev", "devdax-mem", "devdax-dev")
DEFAULT_WALKERS = tuple(WALKERS)


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
    steps: tuple[Step, ...] = ()  # hotplug steps (layout kind hotplug), played in order
    cmdline: tuple[str, ...] = ()  # extra kernel arguments (e.g. rodata=off)

    @property
    def hotplug(self) -> bool:
        return bool(self.steps)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Scenario":
        name = str(data.get("name", "?"))
        try:
            scenario = cls(
                name=name,
                arch=get_arch(str(data["arch"])).name,
                summary=str(data["summary"]),
                layout=Layout.from_data(dict(data["layout"])),
                modes=tuple(data.get("modes", () if "steps" in data else DEFAULT_MODES)),
                walkers=tuple(data.get("walkers", DEFAULT_WALKERS)),
                teardown=bool(data.get("teardown", True)),
                requires=tuple(data.get("requires", ())),
                poison=bool(data.get("poison", False)),
                known_bug=data.get("known_bug"),
                seed_modes=bool(data.get("seed_modes", False)),
                steps=tuple(Step.from_data(dict(d)) for d in data.get("steps", [])),
                cmdline=tuple(str(a) for a in data.get("cmdline", [])),
            )
        except KeyError as exc:
            raise UserError(f"scenario {name}: missing key {exc}") from None
        except UserError as exc:
            raise UserError(f"scenario {name}: {exc}") from None
        if (scenario.layout.kind == "hotplug") != scenario.hotplug:
            raise UserError(
                f"scenario {name}: a hotplug layout needs steps, and steps need a hotplug layout"
            )
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
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read catalogue {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"catalogue {path} is not valid TOML: {exc}") from None
    scenarios = [Scenario.from_data(s) for s in data.get("scenario", [])]
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
