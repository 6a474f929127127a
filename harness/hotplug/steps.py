"""Hotplug steps as scenarios write them (pure).

A step is one inline table whose first key names the action and its subject::

    { plug = "pc-dimm", id = "dimm0", size = "256M" }     # object-add + device_add
    { plug = "pc-dimm", id = "dimm1", size = "256M", node = 1 }   # on NUMA node 1 (layout numa)
    { online = "dimm0", zone = "movable" }                # every memory block of dimm0
    { walk = "dimm0" }                                    # the scenario's walkers over it
    { churn = "dimm0", rounds = 5 }                       # offline/online, walkers racing
    { offline = "dimm0" }
    { unplug = "dimm0" }                                  # device_del + object-del
    { resize = "vmem0", size = "512M" }                   # virtio-mem requested-size
    { module = "mh_hotplug" }                             # insmod a guest-scripts/kmod module
    { add_memory = "hp0", start = "0x80000000", size = "1G" }        # mh_hotplug debugfs
    { offline_and_remove_memory = "hp0", start = "0x88000000", size = "128M" }
    { guest = "shell command" }                           # must exit 0
    { guest = ["prog", "arg 1", "arg2"] }                 # an argument vector, exactly

The schema is a table, so a typo is a one-line error naming the keys that are allowed.
"""

import shlex
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.layout.model import fmt_size, parse_size

# action → (keys it accepts besides its own, keys it requires)
SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "plug": (frozenset({"id", "size", "addr", "node"}), frozenset({"id", "size"})),
    "unplug": (frozenset(), frozenset()),
    "online": (frozenset({"zone"}), frozenset()),
    "offline": (frozenset(), frozenset()),
    "walk": (frozenset(), frozenset()),
    "churn": (frozenset({"rounds", "zone"}), frozenset()),
    "resize": (frozenset({"size"}), frozenset({"size"})),
    "module": (frozenset(), frozenset()),
    "add_memory": (frozenset({"start", "size"}), frozenset({"start", "size"})),
    "offline_and_remove_memory": (frozenset({"start", "size"}), frozenset({"start", "size"})),
    "guest": (frozenset(), frozenset()),
}
# zone → what is written to /sys/devices/system/memory/memoryN/state
ZONES = {"movable": "online_movable", "kernel": "online_kernel", "auto": "online"}
DEFAULT_CHURN_ROUNDS = 3


@dataclass(frozen=True)
class Action:
    action: str  # a SCHEMA key
    subject: str  # plug: device kind; module: its name; guest: the command; else an id
    id: str = ""  # plug: the new device's id
    size: int = 0
    start: int | None = None  # plug: addr (None: first fit); add/remove: physical start
    zone: str = "movable"
    rounds: int = DEFAULT_CHURN_ROUNDS
    node: int | None = None  # plug: the NUMA node (None: QEMU's default, node 0)

    @property
    def target(self) -> str:
        """The id of the memory the step acts on."""
        return self.id if self.action == "plug" else self.subject

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Action":
        actions = [k for k in data if k in SCHEMA]
        if len(actions) != 1:
            raise UserError(
                f"step {data}: name exactly one action of {', '.join(SCHEMA)} "
                f"(found {actions or 'none'})"
            )
        action = actions[0]
        allowed, required = SCHEMA[action]
        extra = set(data) - {action}
        if extra - allowed:
            raise UserError(
                f"step {action}: unknown keys {sorted(extra - allowed)} "
                f"(allowed: {sorted(allowed) or 'none'})"
            )
        if required - extra:
            raise UserError(f"step {action}: missing {sorted(required - extra)}")
        zone = str(data.get("zone", "movable"))
        if zone not in ZONES:
            raise UserError(f"step {action}: zone {zone!r} is not one of {', '.join(ZONES)}")
        rounds = int(data.get("rounds", DEFAULT_CHURN_ROUNDS))
        if rounds < 1:
            raise UserError(f"step {action}: rounds must be at least 1")
        start = data.get("addr", data.get("start"))
        subject = data[action]
        if isinstance(subject, list):  # an argument vector: quoted so it arrives exactly
            if not subject or not all(isinstance(a, str) for a in subject):
                raise UserError(f"step {action}: an argument vector is a non-empty string list")
            subject = shlex.join(subject)
        return cls(
            action=action,
            subject=str(subject),
            id=str(data.get("id", "")),
            size=parse_size(data.get("size", 0)),
            start=None if start is None else parse_size(start),
            zone=zone,
            rounds=rounds,
            node=None if data.get("node") is None else int(data["node"]),
        )

    def describe(self) -> str:
        """A short label for reports: 'plug pc-dimm dimm0 256M'."""
        parts = [self.action.replace("_", "-"), self.subject]
        if self.id:
            parts.append(self.id)
        if self.start is not None and self.action != "plug":
            parts.append(f"{fmt_size(self.size)}@{self.start:#x}")
        elif self.size or self.action == "resize":
            parts.append(fmt_size(self.size) if self.size else "0")
        if self.action == "churn":
            parts.append(f"x{self.rounds}")
        if self.node is not None:
            parts.append(f"node{self.node}")
        return " ".join(parts)
