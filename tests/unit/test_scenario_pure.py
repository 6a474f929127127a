"""Guest probes, walker expectations and the catalogue (pure, on text captured from guests)."""

import json
import re

import pytest

from harness.arch import ARM64, X86_64
from harness.catalogue.model import Scenario, load_catalogue, select
from harness.errors import UserError
from harness.guest import probes, walkers
from harness.layout.model import Region
from harness.layout.planner import Section, plan

# /proc/iomem of the legacy-lower-half guest (Debian 6.1.192, q35, memmap=64M!0x40000000).
IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
00100000-3fffffff : System RAM
  01000000-01e01d31 : Kernel code
40000000-43ffffff : Persistent Memory (legacy)
  40000000-43ffffff : namespace0.0
44000000-7ffdffff : System RAM
7ffe0000-7fffffff : Reserved
100000000-8ffffffff : PCI Bus 0000:00
"""

# /proc/zoneinfo excerpt of the same guest in fsdax mode.
ZONEINFO = """\
Node 0, zone    DMA32
  pages free     440191
        spanned  520160
        present  507872
  start_pfn:           4096
Node 0, zone   Device
  pages free     0
        boost    0
        spanned  16384
        present  0
        managed  0
  start_pfn:           262144
"""


def test_iomem_parse_and_cover() -> None:
    entries = probes.parse_iomem(IOMEM)
    assert entries[5] == probes.IomemEntry(
        Region(0x40000000, 64 << 20), "Persistent Memory (legacy)", 0
    )
    assert entries[6].depth == 1 and entries[6].name == "namespace0.0"
    assert probes.covered(Region(0x40000000, 64 << 20), entries, ("Persistent Memory",))
    assert probes.covered(Region(0x44000000, 64 << 20), entries, ("System RAM",))
    assert not probes.covered(Region(0x7FFE0000, 0x20000), entries, ("System RAM",))
    assert not probes.covered(Region(0x3FF00000, 0x200000), entries, ("Persistent Memory",))


def test_zoneinfo_device_zone() -> None:
    zone = probes.device_zone(probes.parse_zoneinfo(ZONEINFO))
    assert zone == probes.Zone(0, "Device", 16384, 0, 262144)
    assert probes.device_zone(probes.parse_zoneinfo(ZONEINFO.split("Node 0, zone   D")[0])) is None


def lower_half() -> Section:
    (s,) = [s for s in load_catalogue() if s.name == "legacy-lower-half"]
    p = plan(s.layout, X86_64)
    return next(sec for sec in p.sections if sec.collides)


def test_fixed_kernel_answers_pass() -> None:
    section = lower_half()
    kpf = {
        "runs": [
            {"pfn": 0x40000, "n": 16384, "flags": "0x100000", "names": "NOPAGE"},
            {"pfn": 0x44000, "n": 16384, "flags": "0x400", "names": "BUDDY"},
        ]
    }
    assert walkers.check("kpageflags", kpf, section) == []
    soft = {
        "runs": [
            {"pfn": 0x40000, "n": 16384, "result": "EIO"},
            {"pfn": 0x44000, "n": 16384, "result": "ok"},
        ]
    }
    assert walkers.check("soft-offline", soft, section) == []
    summary = walkers.summary(kpf, section)
    assert summary["device"] == {"names=NOPAGE": 16384} and summary["ram"] == {"names=BUDDY": 16384}


def test_broken_kernel_answers_fail() -> None:
    section = lower_half()
    kpf = {
        "runs": [
            {"pfn": 0x40000, "n": 8, "flags": "0x400", "names": "BUDDY"},
            {"pfn": 0x40008, "n": 16376, "flags": "0x100000", "names": "NOPAGE"},
            {"pfn": 0x44000, "n": 16384, "flags": "0x100000", "names": "NOPAGE"},
        ]
    }
    failures = walkers.check("kpageflags", kpf, section)
    assert len(failures) == 2
    assert "8 pfns break 'ZONE_DEVICE pfns must read KPF_NOPAGE" in failures[0]
    assert "first 0x40000" in failures[0]
    assert "16384 pfns break 'System RAM pfns" in failures[1]
    soft = {"runs": [{"pfn": 0x40000, "n": 16384, "result": "ok"}]}
    assert (
        "soft offline of ZONE_DEVICE pfns must be EIO"
        in walkers.check("soft-offline", soft, section)[0]
    )
    assert walkers.check("kpageflags", {"error": "/proc/kpageflags: EPERM"}, section) == [
        "kpageflags: /proc/kpageflags: EPERM"
    ]


def test_catalogue_and_selection() -> None:
    catalogue = load_catalogue()
    assert {s.arch for s in catalogue} == {"x86_64", "arm64"}
    assert [s.name for s in select(catalogue, None, [ARM64])] == [
        "dt-after-mem-limit",
        "dt-modes-at-boot",
        "dt-teardown-arm64",
        "poison-then-teardown-arm64",
        "dimm-plug-cycle-arm64",
        "virtio-mem-resize-arm64",
        "partial-hot-remove-arm64",
        "partial-hot-remove-arm64-rodata",
        "dimm-soft-offline-unplug-arm64",
        "gup-pin-fork-migrate-arm64",
        "gup-pin-numa-migrate-arm64",
        "dt-namespace-cycles-arm64",
        "selftests-layout-arm64",
    ]
    assert len(select(catalogue, "legacy-middle,dt-after-mem-limit", [X86_64, ARM64])) == 2
    with pytest.raises(UserError, match="unknown scenario nope"):
        select(catalogue, "nope", [X86_64])
    with pytest.raises(UserError, match="does not run on arm64"):
        select(catalogue, "legacy-middle", [ARM64])


def test_bad_catalogue_entries(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "c.toml"
    bad.write_text(
        '[[scenario]]\nname = "x"\narch = "x86_64"\nsummary = "s"\nmodes = ["fsdax"]\n'
        'layout = { kind = "legacy", memory = "2G" }\n'
    )
    with pytest.raises(UserError, match="unknown mode 'fsdax'"):
        load_catalogue(bad)
    bad.write_text('[[scenario]]\nname = "x"\narch = "x86_64"\n')
    with pytest.raises(UserError, match="missing key 'summary'"):
        load_catalogue(bad)
    bad.write_text(
        '[[scenario]]\nname = "x"\narch = "x86_64"\nsummary = "s"\n'
        'layout = { kind = "hotplug", memory = "1G" }\n'
    )
    with pytest.raises(UserError, match="a hotplug layout needs steps"):
        load_catalogue(bad)
    bad.write_text(
        '[[scenario]]\nname = "x"\narch = "x86_64"\nsummary = "s"\n'
        'layout = { kind = "hotplug", memory = "1G" }\nsteps = [{ plug = "pc-dimm" }]\n'
    )
    with pytest.raises(UserError, match=r"scenario x: step plug: missing \['id', 'size'\]"):
        load_catalogue(bad)


# Which arches each seed's bug class exists on: seed 002 is arm64's linear map; the others are
# generic mm.  Every seed must have a scenario on each of its arches.
SEED_ARCHES = {
    "000": {"x86_64", "arm64"},
    "001": {"x86_64", "arm64"},
    "002": {"arm64"},
    "003": {"x86_64", "arm64"},
    "004": {"x86_64", "arm64"},
}


def test_every_seed_has_a_scenario_on_each_of_its_arches() -> None:
    catalogue = load_catalogue()
    assert all(s.seeds for s in catalogue), [s.name for s in catalogue if not s.seeds]
    covered: dict[str, set[str]] = {}
    for scenario in catalogue:
        for seed in scenario.seeds:
            covered.setdefault(seed, set()).add(scenario.arch)
    assert covered == SEED_ARCHES
    (gup,) = [s for s in catalogue if s.name == "gup-pin-fork-migrate"]
    assert gup.to_json()["seeds"] == ["003"]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"cycles": 0}, "cycles must be 1 to 100"),
        ({"cycles": 101}, "cycles must be 1 to 100"),
        ({"cycles": "5"}, "cycles must be a int"),
        ({"cycles": 3, "seed_modes": True}, "hotplug steps and seeded modes cannot repeat"),
        ({"seeds": ["3"]}, "seed '3' is not a seed number like '003'"),
        ({"seeds": "003"}, "seeds must be a list"),
        ({"pins": "yes"}, "pins must be a bool"),
    ],
)
def test_bad_seed_and_cycle_keys_are_one_line_errors(extra: dict[str, object], error: str) -> None:
    data = {
        "name": "s",
        "arch": "x86_64",
        "summary": "s",
        "layout": {
            "kind": "legacy",
            "memory": "2G",
            "pmem": [{"start": "0x40000000", "size": "64M"}],
        },
        **extra,
    }
    with pytest.raises(UserError, match=re.escape(error)):
        Scenario.from_data(data)


def test_cycles_cannot_repeat_hotplug_steps() -> None:
    data = {
        "name": "h",
        "arch": "x86_64",
        "summary": "h",
        "layout": {"kind": "hotplug", "memory": "1G", "slots": 2, "maxmem": "4G"},
        "steps": [{"plug": "pc-dimm", "id": "d", "size": "128M"}],
        "cycles": 2,
    }
    with pytest.raises(UserError, match="cannot repeat"):
        Scenario.from_data(data)


def test_a_pinned_walk_fails_on_the_helpers_checks_and_on_the_walk() -> None:
    """mh-gup hold's JSON as the guest prints it, with the walk it ran inside."""
    section = lower_half()
    walk_ok = {
        "runs": [
            {"pfn": 0x40000, "n": 16384, "flags": "0x100000", "names": "NOPAGE"},
            {"pfn": 0x44000, "n": 16384, "flags": "0x400", "names": "BUDDY"},
        ]
    }
    held = {
        "helper": "mh-gup",
        "mapping": "devdax",
        "longterm_pin": "EOPNOTSUPP",
        "get_pin": "ok",
        "command_status": 0,
        "command_output": json.dumps(walk_ok),
        "checks": [{"name": "get-pin-coherent", "ok": True, "detail": "same page"}],
    }
    assert walkers.check_pinned(held, section) == []
    stale = {**held, "checks": [{"name": "get-pin-coherent", "ok": False, "detail": "stale"}]}
    assert walkers.check_pinned(stale, section) == ["pinned walk: get-pin-coherent: stale"]
    online = {"runs": [{"pfn": 0x40000, "n": 32768, "flags": "0x400", "names": "BUDDY"}]}
    (failure,) = walkers.check_pinned({**held, "command_output": json.dumps(online)}, section)
    assert failure.startswith("pinned kpageflags section 8: 16384 pfns break 'ZONE_DEVICE")
    assert walkers.check_pinned({**held, "command_status": 1}, section) == [
        "pinned walk: the walk exited 1"
    ]
