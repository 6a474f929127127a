"""A collision scenario on a booted guest: prove the layout, switch modes, walk, tear down.

A layout the guest does not show, or a walker answer a fixed kernel would not give, is a failed
check; a splat ends the run as kernel-splat.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from harness.collision.modes import MODES, Mode
from harness.guest import probes
from harness.guest import walkers as walk
from harness.guest.record import WALK_TIMEOUT, GuestSteps, Named, StepRecord
from harness.kernel.model import Kernel
from harness.layout.model import Region
from harness.layout.planner import RAM, Plan, render
from harness.vm.machine import VM

NAMESPACE = "namespace0.0"
DEVICE_IOMEM_NAMES = ("Persistent Memory", "pmem", "namespace", "dax")  # what claims pmem
PMEM_DRIVERS = ("nd_pmem", "dax_pmem", "device_dax")  # bind namespaces: loaded after seeding
POISON_STRIDE = 4096  # a handful of pages per section is enough to leave poison behind
RACE_WALKERS = ("kpageflags", "soft-offline")  # what guest-scripts/mh-race can run


class CollisionSpec(Named, Protocol):
    """What a collision run reads of its scenario (the catalogue's Scenario has it)."""

    @property
    def modes(self) -> tuple[str, ...]: ...

    @property
    def poison(self) -> bool: ...

    @property
    def teardown(self) -> bool: ...

    @property
    def cycles(self) -> int: ...

    @property
    def pins(self) -> bool: ...


@dataclass(frozen=True)
class Phase:
    """What one boot of a collision scenario does.

    Walkers that poison pages (soft offline, hwpoison) leave state behind that every later
    step of the same boot runs on: on a kernel with a poison bug the next namespace
    reconfiguration splats, and every mode and teardown after it goes unwalked.  So a scenario
    runs in phases: a ``main`` boot walks every mode, the teardown and the walk after it with
    the walkers that leave nothing behind (the poisoning ones run last, after the teardown,
    where nothing follows them), and a ``poison`` boot per mode (and one as booted) runs the
    poisoning walkers and madvise in that mode and stops.  ``all`` is the single boot of a
    scenario that exists to reproduce one bug (``known_bug``, ``poison``): it runs as written.
    """

    kind: str  # all | main | poison
    mode: Mode | None = None  # poison: the mode to switch to (None: as booted)
    seeded: Mode | None = None  # configure this mode before any driver binds

    @property
    def label(self) -> str:
        parts = [self.seeded.name] if self.seeded else []
        if self.kind == "poison":
            parts.append(f"poison {self.mode.name if self.mode else 'as booted'}")
        return " ".join(parts)


class CollisionRun(GuestSteps):
    """A collision scenario: prove the layout, switch modes, walk, tear down."""

    def __init__(
        self,
        scenario: CollisionSpec,
        kernel: Kernel,
        vm: VM,
        layout_plan: Plan,
        phase: Phase | None = None,
        after_setup: Callable[[VM], None] | None = None,
    ) -> None:
        """``after_setup`` is called once the guest's modules are loaded and its namespace is
        there (the state every boot of this layout reaches alike: run.py saves it for the
        later phases, see harness/vm/snapshot.py).  A VM started from that saved state skips
        the setup, and its record says so."""
        super().__init__(scenario, kernel, vm)
        self.spec = scenario
        self.phase = phase or Phase("all")
        self.seeded = self.phase.seeded  # one mode per boot, configured before drivers bind
        self.plan = layout_plan
        self.after_setup = after_setup

    @property
    def label(self) -> str:
        return self.phase.label

    def _gentle(self) -> list[str]:
        """This kernel's walkers that leave nothing behind, in the scenario's order."""
        return [w for w in self.walkers if not walk.WALKERS[w].poisons]

    def _poisoning(self) -> list[str]:
        return [w for w in self.walkers if walk.WALKERS[w].poisons]

    # -- steps -------------------------------------------------------------------------------
    def load_modules(self) -> None:
        with self._step("modules") as step:
            if self.vm.restored_from is not None:
                step.reason = "restored from the main boot's saved state, setup included"
                step.data["restored_from"] = self.vm.restored_from
                return
            self._load_modules(step)
        if self.after_setup is not None and step.status == "passed" and self.alive:
            self.after_setup(self.vm)

    def _load_modules(self, step: StepRecord) -> None:
        wanted = list(self.plan.modules)
        for mode in self.spec.modes:
            if not self.kernel.missing_options(MODES[mode].requires):
                wanted += MODES[mode].modules
        for name in self.walkers:
            wanted += walk.WALKERS[name].modules
        wanted += [m for mapping in walk.MAPPINGS.values() for m in mapping.modules]
        if self.seeded is not None:
            wanted = [m for m in wanted if m not in PMEM_DRIVERS]  # loaded once seeded
        self.modprobe(step, wanted)
        self._guest(step, f"mh-wait 20 sh -c 'ndctl list -Ni | grep -q {NAMESPACE}'")

    def verify_layout(self) -> None:
        """The guest's iomem and memory blocks must show the planned layout."""
        with self._step("layout") as step:
            self._verify_layout(step)

    def _verify_layout(self, step: StepRecord) -> None:
        sections = " ".join(str(n) for n in self.plan.collisions)
        text = self._guest(
            step,
            "cat /proc/iomem; echo ==; cat "
            "/sys/devices/system/memory/block_size_bytes; for n in "
            f"{sections}; do echo $n $(cat /sys/devices/system/memory/memory$n/"
            "state 2>/dev/null || echo absent); done",
        )
        if text is None:
            return
        iomem_text, _, rest = text.partition("==\n")
        entries = probes.parse_iomem(iomem_text)
        lines = rest.split("\n")
        block = int(lines[0].strip() or "0", 16)
        states = dict(ln.split(maxsplit=1) for ln in lines[1:] if ln.strip())
        step.data = {
            "block_size": block,
            "block_states": states,
            "collision_sections": self.plan.collisions,
        }
        if block != self.plan.section_size:
            self._fail(
                step,
                f"memory block size {block:#x} is not the section size {self.plan.section_size:#x}",
            )
        for n in self.plan.collisions:
            if states.get(str(n)) != "online":
                self._fail(
                    step,
                    f"memory block {n} is {states.get(str(n))!r}, not online: "
                    "its System RAM part did not come up",
                )
        for region in self.plan.device:
            if not probes.covered(region, entries, DEVICE_IOMEM_NAMES):
                self._fail(step, f"/proc/iomem shows no persistent memory at {region}")
        for section in self.plan.sections:
            if not section.collides:
                continue
            for start, count in section.pfns(RAM):
                ram = Region(start * 4096, count * 4096)
                if not probes.covered(ram, entries, ("System RAM",)):
                    self._fail(
                        step, f"/proc/iomem shows no System RAM at {ram} (section {section.number})"
                    )

    def switch(self, mode: Mode) -> bool:
        """Reconfigures the namespace; False when the mode is skipped or failed."""
        with self._step(f"mode {mode.name}") as step:
            return self._switch(step, mode)

    def _switch(self, step: StepRecord, mode: Mode) -> bool:
        absent = self.kernel.missing_options(mode.requires)
        if absent:
            step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
            return False
        command = f"ndctl create-namespace -f -e {NAMESPACE} {mode.ndctl}"
        out = self._guest(step, self._racing(command))
        if out is None:
            return False
        step.data["ndctl"] = json.loads(out) if out.strip().startswith("{") else out
        step.data["racing_walks"] = self._race_count(step)
        return self._check_zone(step, mode)

    def _check_zone(self, step: StepRecord, mode: Mode) -> bool:
        """In a ZONE_DEVICE mode, the Device zone must span the layout's pmem."""
        zones = self._guest(step, "cat /proc/zoneinfo")
        if zones is None:
            return False
        zone = probes.device_zone(probes.parse_zoneinfo(zones))
        step.data["device_zone"] = asdict(zone) if zone else None
        device_pages = sum(r.size for r in self.plan.device) // 4096
        if mode.zone_device and (zone is None or zone.spanned < device_pages):
            self._fail(
                step,
                f"zone Device spans {zone.spanned if zone else 0} pages, the "
                f"layout has {device_pages} pages of pmem: no ZONE_DEVICE mapping",
            )
        return step.status == "passed"

    def seed(self, mode: Mode) -> bool:
        """Gives the namespace its mode through the region's pfn or dax seed, then loads the
        drivers: the pages are mapped once, in that mode, with nothing torn down first."""
        with self._step(f"mode {mode.name} (seeded)") as step:
            absent = self.kernel.missing_options(mode.requires)
            if absent:
                step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
                return False
            kind = "dax" if mode.mapping == "devdax" else "pfn"
            drivers = ["dax_pmem", "device_dax"] if kind == "dax" else ["nd_pmem"]
            device = "/dev/dax0.0" if kind == "dax" else "/dev/pmem0"
            configure = (
                f"cd /sys/bus/nd/devices && seed=$(cat region0/{kind}_seed) && "
                "cat /proc/sys/kernel/random/uuid > $seed/uuid && "
                f"echo {'pmem' if 'map=dev' in mode.ndctl else 'ram'} > $seed/mode && "
                f"echo {NAMESPACE} > $seed/namespace"
            )
            if self._guest(step, configure) is None:
                return False
            self.modprobe(step, drivers)
            if step.status != "passed":
                return False
            script = f"mh-wait 20 test -e {device} && ndctl list -N"
            out = self._guest(step, script)
            if out is None:
                return False
            step.data["ndctl"] = json.loads(out) if out.strip().startswith("[") else out
            return self._check_zone(step, mode)

    def walk_all(self, label: str, walkers: list[str] | None = None) -> None:
        self.walk_sections(label, (s for s in self.plan.sections if s.collides), walkers)

    def madvise_all(self, mode: Mode) -> None:
        """madvise(MADV_SOFT_OFFLINE) on anonymous and file memory, and on the namespace's own
        pages through the mapping this mode offers (an fsdax file or the devdax device)."""
        if "soft-offline" not in self.walkers:
            return
        for name in ("anon", "file", *([mode.mapping] if mode.mapping else [])):
            mapping = walk.MAPPINGS[name]
            with self._step(f"{mode.name}: madvise {name}") as step:
                absent = self.kernel.missing_options(mapping.requires)
                if absent:
                    step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
                    continue
                if mapping.setup and self._guest(step, mapping.setup) is None:
                    continue
                out = self._guest(step, mapping.walk)
                if mapping.cleanup:
                    self._guest(step, mapping.cleanup)
                if out is None:
                    continue
                result = json.loads(out)
                step.data = result
                if result.get("result") != mapping.expect:
                    self._fail(
                        step,
                        f"madvise(MADV_SOFT_OFFLINE) on a {name} mapping gave "
                        f"{result.get('result', result)}, expected {mapping.expect}",
                    )

    def pinned_walk(self, mode: Mode) -> None:
        """Seed 003 on the layout: the mode's own mapping (an fsdax file, the devdax device)
        and an anonymous one pinned by mh-gup (FOLL_PIN longterm where the kernel allows it,
        FOLL_GET always) while kpageflags walks the first shared section; the walk must read
        as it does unpinned, and the pins must still see what the mappings show."""
        if not self.spec.pins or "kpageflags" not in self.walkers:
            return
        section = next((s for s in self.plan.sections if s.collides), None)
        if section is None:
            return
        start, count = section.start // 4096, self.plan.section_size // 4096
        for name in ("anon", *([mode.mapping] if mode.mapping else [])):
            mapping = walk.MAPPINGS[name]
            with self._step(f"{mode.name}: pinned {name}") as step:
                absent = self.kernel.missing_options(("IO_URING", *mapping.requires))
                if absent:
                    step.status, step.reason = "skipped", f"kernel lacks {', '.join(absent)}"
                    continue
                if mapping.setup and self._guest(step, mapping.setup) is None:
                    continue
                # exit 1 is mh-gup's "a check failed": its JSON says which
                held = self.vm.run(
                    mapping.pinned(f"mh-walk kpageflags {start} {count}"),
                    timeout=WALK_TIMEOUT,
                    check=False,
                )
                if mapping.cleanup and self.alive:
                    self._guest(step, mapping.cleanup)
                if held.exit_code not in (0, 1) or not held.text.strip().startswith("{"):
                    if self.alive:
                        self._fail(step, f"mh-gup hold exited {held.exit_code}: {held.text}")
                    continue
                result = json.loads(held.text)
                step.data = {k: v for k, v in result.items() if k != "command_output"}
                for failure in walk.check_pinned(result, section):
                    self._fail(step, failure)

    def teardown(self) -> bool:
        """Disables the namespace: its pages are unmapped (memunmap_pages), the section's
        memmap is cleaned up, and the walkers get to visit what is left."""
        with self._step("teardown") as step:
            ok = self._guest(step, self._racing(f"ndctl disable-namespace {NAMESPACE}"))
            step.data["racing_walks"] = self._race_count(step)
            return ok is not None

    def poison(self) -> None:
        """hwpoisons a few free RAM pages of each shared section and leaves them poisoned, so
        the teardown that follows runs with num_poisoned_pages > 0."""
        with self._step("poison") as step:
            for section in self.plan.sections:
                if section.collides and self.alive:
                    start, count = section.start // 4096, self.plan.section_size // 4096
                    out = self._guest(
                        step, f"mh-walk hwpoison {start} {count} {POISON_STRIDE} keep"
                    )
                    if out is not None:
                        step.data[f"section {section.number}"] = walk.summary(
                            json.loads(out), section
                        )

    def _racing(self, command: str) -> str:
        """``command`` with walkers looping over the first shared section while it runs.  In
        a phased scenario only walkers that leave nothing behind race a reconfiguration: the
        poisoning ones come after the last one."""
        section = next((s for s in self.plan.sections if s.collides), None)
        racers = [w for w in RACE_WALKERS if w in self.walkers]
        if self.phase.kind != "all":
            racers = [w for w in racers if not walk.WALKERS[w].poisons]
        if section is None or not racers:
            return command
        start, count = section.start // 4096, self.plan.section_size // 4096
        return f"MH_RACE_WALKERS='{' '.join(racers)}' mh-race {start} {count} {command}"

    def _race_count(self, step: StepRecord) -> int | None:
        out = self._guest(step, "cat /tmp/mh-race.json 2>/dev/null || echo '{}'")
        return json.loads(out).get("walks") if out else None

    def run(self) -> None:
        self.skip_unsupported_walkers()
        self.load_modules()
        if self.phase.kind == "poison":
            self.run_poison(self.phase.mode)
        elif self.seeded is not None:
            self.run_seeded(self.seeded)
        else:
            self.run_modes()

    def run_modes(self) -> None:
        """As booted, then every mode by reconfiguring, then the teardown."""
        gentle = self._gentle() if self.phase.kind == "main" else self.walkers
        modes = [m for m in self.spec.modes if not self.kernel.missing_options(MODES[m].requires)]
        self.planned_walks = [
            *self.walk_names("as booted", gentle),
            *(n for m in modes for n in self.walk_names(m, gentle)),
            *(self._after_teardown_walks() if self.spec.teardown else []),
        ]
        if self.alive:
            self.verify_layout()
        if self.alive:
            self.walk_all("as booted", gentle)
        for name in self.spec.modes:
            if not self.alive:
                return
            if self.switch(MODES[name]):
                self.walk_all(name, gentle)
                self.pinned_walk(MODES[name])
                if self.phase.kind == "all":
                    self.madvise_all(MODES[name])
        if self.spec.cycles > 1 and self.alive and self.phase.kind != "poison":
            self.cycle(modes)
        self.finish()

    def cycle(self, modes: list[str]) -> None:
        """Seed 004's lifetime loop: the namespace goes through every mode, then is disabled
        and enabled, ``cycles - 1`` more times, each change with the gentle walkers racing it
        over the first shared section (guest-scripts/mh-lifetime)."""
        rounds = self.spec.cycles - 1
        with self._step(f"cycles x{rounds}") as step:
            section = next(s for s in self.plan.sections if s.collides)
            racers = [w for w in RACE_WALKERS if w in self._gentle()]
            start, count = section.start // 4096, self.plan.section_size // 4096
            out = self._guest(
                step,
                f"MH_RACE_WALKERS='{' '.join(racers)}' mh-lifetime namespaces {NAMESPACE} "
                f"{rounds} {start} {count} {' '.join(modes)}",
            )
            if out is not None:
                step.data = json.loads(out)

    def run_seeded(self, mode: Mode) -> None:
        """One mode, configured before the drivers bind, then the teardown."""
        gentle = self._gentle() if self.phase.kind == "main" else self.walkers
        self.planned_walks = [
            *self.walk_names(mode.name, gentle),
            *(self._after_teardown_walks() if self.spec.teardown else []),
        ]
        # The layout is verified once the namespace is bound: some regions (of_pmem) only show
        # in /proc/iomem when their driver claims them.
        if self.alive and self.seed(mode) and self.alive:
            self.verify_layout()
        if self.alive and not any(st.status == "failed" for st in self.steps):
            self.walk_all(mode.name, gentle)
            self.pinned_walk(mode)
            if self.phase.kind == "all":
                self.madvise_all(mode)
        self.finish()

    def run_poison(self, mode: Mode | None) -> None:
        """The poisoning walkers (and madvise) in one mode, on a fresh boot, and nothing after
        them: what they leave behind cannot cut another check short."""
        label = mode.name if mode else (self.seeded.name if self.seeded else "as booted")
        self.planned_walks = self.walk_names(label, self._poisoning())
        if self.seeded is not None:
            if not (self.alive and self.seed(self.seeded) and self.alive):
                return
        elif self.alive:
            self.verify_layout()
        if mode is not None and not (self.alive and self.switch(mode)):
            return
        if self.alive:
            self.walk_all(label, self._poisoning())
        current = mode or self.seeded
        if current is not None and self.alive:
            self.madvise_all(current)

    def _after_teardown_walks(self) -> list[str]:
        """Every walker after the teardown: in the main phase the gentle ones first, the
        poisoning ones last (nothing follows them)."""
        order = self._gentle() + self._poisoning() if self.phase.kind == "main" else self.walkers
        return self.walk_names("after teardown", order)

    def finish(self) -> None:
        if self.spec.poison and self.alive:
            self.poison()
        if self.spec.teardown and self.alive and self.teardown():
            order = [n.split(": ", 1)[1] for n in self._after_teardown_walks()]
            self.walk_all("after teardown", order)

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "collision_sections": self.plan.collisions,
            "layout": render(self.plan),
            "memory_map": self.plan.memory_map(),
        }
