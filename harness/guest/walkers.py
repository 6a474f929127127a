"""The pfn walkers a scenario runs, what each needs, and what a fixed kernel answers (pure).

A walker visits every pfn of a section (hwpoison injects at a stride, see below) and reports
runs of equal results; ``check`` compares them with the planner's map: on a fixed kernel the
ZONE_DEVICE pfns of a mixed section have no online struct page (KPF_NOPAGE) and refuse soft
offline with EIO, while the System RAM pfns of the same section are online.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.layout.planner import DEVICE, OFFLINE, PMEM, RAM, Section

KPF_NOPAGE = 1 << 20

# Strides keep a whole-section walk near a second under TCG.  hwpoison injects into every
# 64th eligible pfn: each injection prints a KERN_ERR line on the serial console (~0.4 ms).
# soft-offline visits every pfn without an online struct page but only every 64th RAM pfn:
# migrating a RAM page costs ~0.5 ms, and a few are enough to leave poisoned RAM next to the
# device memory (what clear_hwpoisoned_pages trips over at teardown).
HWPOISON_STRIDE = 64
SOFT_OFFLINE_RAM_STRIDE = 64


@dataclass(frozen=True)
class Walker:
    name: str
    requires: tuple[str, ...]  # kernel options
    modules: tuple[str, ...]  # modules to load first
    argv: str  # guest command; {start} {count} filled in
    poisons: bool = False  # leaves hwpoisoned pages behind (soft offline migrates and poisons)

    def command(self, start: int, count: int) -> str:
        return self.argv.format(start=start, count=count)


WALKERS: dict[str, Walker] = {
    w.name: w
    for w in (
        Walker("kpageflags", ("PROC_PAGE_MONITOR",), (), "mh-walk kpageflags {start} {count}"),
        Walker(
            "soft-offline",
            ("MEMORY_FAILURE",),
            (),
            f"mh-walk soft-offline {{start}} {{count}} {SOFT_OFFLINE_RAM_STRIDE}",
            poisons=True,
        ),
        Walker(
            "hwpoison",
            ("MEMORY_FAILURE", "HWPOISON_INJECT"),
            ("hwpoison_inject",),
            f"mh-walk hwpoison {{start}} {{count}} {HWPOISON_STRIDE}",
            poisons=True,
        ),
        Walker("idle", ("IDLE_PAGE_TRACKING",), (), "mh-walk idle {start} {count}"),
    )
}


KIND_LABELS = {DEVICE: "device", RAM: "ram", OFFLINE: "offline", PMEM: "pmem"}


def _pfn_kinds(section: Section) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for kind in KIND_LABELS:
        out[kind] = {p for start, n in section.pfns(kind) for p in range(start, start + n)}
    return out


def _nopage(run: dict[str, Any]) -> bool | None:
    """KPF_NOPAGE of a kpageflags run; None when /proc/kpageflags did not report the pfns
    (they lie beyond max_pfn)."""
    return None if run["flags"] == "unreported" else bool(int(run["flags"], 16) & KPF_NOPAGE)


# What a fixed kernel answers, per walker and per kind of pfn: (predicate on a run, wording).
Expectation = tuple[Callable[[dict[str, Any]], bool], str]
EXPECTATIONS: dict[str, dict[str, Expectation]] = {
    "kpageflags": {
        DEVICE: (
            lambda r: _nopage(r) is True,
            "ZONE_DEVICE pfns must read KPF_NOPAGE (no online struct page)",
        ),
        RAM: (
            lambda r: _nopage(r) is False,
            "System RAM pfns of the section must be online (not KPF_NOPAGE)",
        ),
    },
    "soft-offline": {
        DEVICE: (lambda r: r["result"] == "EIO", "soft offline of ZONE_DEVICE pfns must be EIO"),
        OFFLINE: (lambda r: r["result"] == "EIO", "soft offline of offline memory must be EIO"),
    },
}
# Offline memory and hot-added pmem have no online struct pages either.  Pmem without a memmap
# (raw mode, nothing else in its sections) is not even pfn_valid: soft offline says ENXIO.
EXPECTATIONS["kpageflags"][OFFLINE] = (
    EXPECTATIONS["kpageflags"][DEVICE][0],
    "pfns of an offline memory block must read KPF_NOPAGE",
)
EXPECTATIONS["kpageflags"][PMEM] = (
    lambda r: _nopage(r) is not False,
    "pmem pfns must read KPF_NOPAGE or, beyond max_pfn, not be reported",
)
EXPECTATIONS["soft-offline"][PMEM] = (
    lambda r: r["result"] in ("EIO", "ENXIO"),
    "soft offline of pmem pfns must be EIO (ZONE_DEVICE) or ENXIO (no memmap)",
)


def check_pinned(result: dict[str, Any], section: Section) -> list[str]:
    """Failures of an ``mh-gup hold ... -- mh-walk kpageflags`` run: the helper's own checks
    (what the pins see is what the mapping shows) and the walk's, which must read the same
    with pages pinned as without."""
    failures = [
        f"pinned walk: {c['name']}: {c['detail']}" for c in result.get("checks", []) if not c["ok"]
    ]
    if "error" in result:
        return [f"pinned walk: {result['error']}"]
    if result.get("command_status") != 0:
        failures.append(f"pinned walk: the walk exited {result.get('command_status')}")
        return failures
    walked = json.loads(result.get("command_output") or "{}")
    return failures + [f"pinned {f}" for f in check("kpageflags", walked, section)]


def check(walker: str, result: dict[str, Any], section: Section) -> list[str]:
    """Failures of ``result`` against the fixed-kernel expectations, one line each."""
    if "error" in result:
        return [f"{walker}: {result['error']}"]
    kinds = _pfn_kinds(section)
    failures = []
    for kind, (ok, wording) in EXPECTATIONS.get(walker, {}).items():
        bad, example = 0, None
        for run in result.get("runs", []):
            pfns = set(range(run["pfn"], run["pfn"] + run["n"])) & kinds[kind]
            if pfns and not ok(run):
                bad += len(pfns)
                example = example or (min(pfns), run)
        if bad and example is not None:
            shown = {k: v for k, v in example[1].items() if k not in ("pfn", "n")}
            failures.append(
                f"{walker} section {section.number}: {bad} pfns break '{wording}' "
                f"(first {example[0]:#x}: {shown})"
            )
    return failures


def summary(result: dict[str, Any], section: Section) -> dict[str, Any]:
    """Per kind of pfn, how many pfns gave which answer (for result.json and the report)."""
    kinds = _pfn_kinds(section)
    out: dict[str, Any] = {"seconds": result.get("seconds")}
    for kind, label in KIND_LABELS.items():
        if not kinds[kind]:
            continue
        counts: dict[str, int] = {}
        for run in result.get("runs", []):
            n = len(set(range(run["pfn"], run["pfn"] + run["n"])) & kinds[kind])
            if n:
                key = ", ".join(
                    f"{k}={v}" for k, v in run.items() if k not in ("pfn", "n", "flags", "refs")
                )
                counts[key] = counts.get(key, 0) + n
        out[label] = counts
    return out


@dataclass(frozen=True)
class Mapping:
    """A mapping soft-offlined through madvise(MADV_SOFT_OFFLINE) and the fixed-kernel answer."""

    name: str
    setup: str  # guest command that prepares the target (empty: none)
    walk: str  # guest command that maps, touches and madvises
    cleanup: str  # guest command that releases the device for the next mode
    expect: str  # the walker's "result" on a fixed kernel
    requires: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    hold: str = ""  # mh-gup hold's KIND PATH: pin this mapping's pages (empty: not pinnable)

    def pinned(self, command: str) -> str:
        """``command`` run by mh-gup while it holds pins (FOLL_PIN longterm and FOLL_GET) on
        this mapping's pages and a child keeps touching them."""
        return f"mh-gup hold {self.hold} -- {command}"


MAPPINGS: dict[str, Mapping] = {
    m.name: m
    for m in (
        Mapping("anon", "", "mh-walk madvise anon", "", "ok", hold="anon -"),
        Mapping("file", "", "mh-walk madvise file /tmp/mh-madvise", "rm -f /tmp/mh-madvise", "ok"),
        # A file on ext4 -o dax: its pages are the namespace's ZONE_DEVICE pages.  DAX needs
        # page-sized blocks; ext4 needs crc32c, a soft dependency modules.dep does not list.
        Mapping(
            "fsdax",
            "mkdir -p /mnt/pmem && mkfs.ext4 -q -F -b 4096 /dev/pmem0 && "
            "mount -t ext4 -o dax /dev/pmem0 /mnt/pmem",
            "mh-walk madvise fsdax /mnt/pmem/mh-madvise",
            "umount /mnt/pmem",
            "EIO",
            ("FS_DAX", "EXT4_FS"),
            ("crc32c_generic", "ext4"),
            hold="file /mnt/pmem/mh-pinned",
        ),
        Mapping(
            "devdax", "", "mh-walk madvise devdax /dev/dax0.0", "", "EIO", hold="devdax /dev/dax0.0"
        ),
    )
}
