"""Hotplug steps: parsing, the planner's addresses, blocks and QMP commands, and every step it
must refuse before QEMU starts (pure)."""

from typing import Any

import pytest

from harness.arch import ARM64, X86_64, ArchProfile
from harness.catalogue.model import load_catalogue
from harness.errors import UserError
from harness.guest.walkers import check, summary
from harness.hotplug.plan import HotplugPlan, plan_steps
from harness.hotplug.steps import Action
from harness.layout.model import Layout, Region
from harness.layout.planner import OFFLINE, PMEM, RAM, Section, plan, render

M, G = 1 << 20, 1 << 30
X86_DIMMS = {"kind": "hotplug", "memory": "1G", "slots": 4, "maxmem": "4G"}
ARM_VIRTIO = {
    "kind": "hotplug",
    "memory": "1G",
    "maxmem": "4G",
    "online": "online_movable",
    "virtio_mem": [{"id": "vmem0", "size": "1G"}],
}
ARM_HIDDEN = {"kind": "hotplug", "memory": "2G", "mem_limit": "1G"}


def planned(layout: dict[str, Any], arch: ArchProfile, *steps: dict[str, Any]) -> HotplugPlan:
    layout_plan = plan(Layout.from_data(layout), arch)
    return plan_steps(layout_plan, tuple(Action.from_data(s) for s in steps))


def catalogue_plan(name: str) -> HotplugPlan:
    (scenario,) = [s for s in load_catalogue() if s.name == name]
    arch = X86_64 if scenario.arch == "x86_64" else ARM64
    return plan_steps(plan(scenario.layout, arch), scenario.steps)


def test_dimm_cycle_addresses_blocks_and_qmp() -> None:
    hp = catalogue_plan("dimm-plug-cycle")
    plug0, online, walk, offline, walk2, unplug, plug1, online1, unplug1 = hp.steps
    assert offline.state == "offline" and online1.state == "online" and unplug1.gone == (40,)
    # q35 with -m 1G: the device-memory window starts at 4 GiB; first fit puts dimm0 there.
    assert plug0.region == Region(4 * G, 256 * M) and plug0.blocks == (32, 33)
    assert plug0.state == "offline"  # the layout says nothing: plugged blocks come up offline,
    # and the command line says so, whatever the kernel's own default (6.12 onlines them)
    (scenario,) = [s for s in load_catalogue() if s.name == "dimm-plug-cycle"]
    assert "memhp_default_state=offline" in plan(scenario.layout, X86_64).cmdline
    assert plug0.qmp == (
        ("object-add", {"qom-type": "memory-backend-ram", "id": "mem-dimm0", "size": 256 * M}),
        (
            "device_add",
            {"driver": "pc-dimm", "id": "dimm0", "memdev": "mem-dimm0", "addr": 4 * G},
        ),
    )
    assert online.sysfs_state == "online_movable" and online.state == "online"
    assert walk.state == "online" and walk2.state == "offline"
    assert unplug.gone == (32, 33)
    assert unplug.qmp == (("device_del", {"id": "dimm0"}), ("object-del", {"id": "mem-dimm0"}))
    assert plug1.region == Region(0x140000000, 128 * M) and plug1.blocks == (40,)
    assert hp.requires == ("ACPI_HOTPLUG_MEMORY", "MEMORY_HOTREMOVE")
    assert not hp.uefi and hp.ports == 1 and hp.test_modules == ()


def test_arm64_dimms_need_uefi_and_churn_needs_a_second_session() -> None:
    assert catalogue_plan("dimm-plug-cycle-arm64").uefi
    assert catalogue_plan("dimm-plug-cycle-arm64").steps[0].region == Region(2 * G, 256 * M)
    assert catalogue_plan("hotplug-churn").ports == 2


def test_virtio_mem_plan() -> None:
    layout_plan = plan(Layout.from_data(ARM_VIRTIO), ARM64)
    # arm64 virt: RAM at 1G..2G, device memory from the next 1 GiB boundary.
    assert layout_plan.boot_devices == (("vmem0", Region(2 * G, G)),)
    assert "memhp_default_state=online_movable" in layout_plan.cmdline
    assert any("memaddr=0x80000000" in a for a in layout_plan.qemu_args)
    assert "virtio-mem vmem0: 1G@0x80000000" in render(layout_plan)
    hp = catalogue_plan("virtio-mem-resize-arm64")
    sizes = [(s.size, s.blocks, s.gone) for s in hp.steps if s.step.action == "resize"]
    assert sizes == [
        (512 * M, (16, 17, 18, 19), ()),
        (128 * M, (16,), (17, 18, 19)),
        (768 * M, (16, 17, 18, 19, 20, 21), ()),
        (0, (), (16, 17, 18, 19, 20, 21)),
    ]
    assert hp.steps[0].qmp == (
        (
            "qom-set",
            {"path": "/machine/peripheral/vmem0", "property": "requested-size", "value": 512 * M},
        ),
    )
    assert hp.modules == ("virtio_mem",) and "VIRTIO_MEM" in hp.requires


def test_partial_hot_remove_plan() -> None:
    hp = catalogue_plan("partial-hot-remove-arm64")
    _, add, _, remove, _, walk = hp.steps
    assert hp.test_modules == ("mh_hotplug",)
    assert add.region == Region(2 * G, G) and add.blocks == tuple(range(16, 24))
    assert remove.gone == (17,) and walk.blocks == (16, 18, 19, 20, 21, 22, 23)


def test_first_fit_reuses_the_space_an_unplug_freed() -> None:
    hp = planned(
        X86_DIMMS,
        X86_64,
        {"plug": "pc-dimm", "id": "a", "size": "128M"},
        {"plug": "pc-dimm", "id": "b", "size": "128M"},
        {"unplug": "a"},
        {"plug": "pc-dimm", "id": "c", "size": "128M"},
    )
    assert [s.region for s in hp.steps] == [
        Region(4 * G, 128 * M),
        Region(4 * G + 128 * M, 128 * M),
        Region(4 * G, 128 * M),
        Region(4 * G, 128 * M),
    ]


def test_nvdimm_pages_are_device_memory() -> None:
    hp = catalogue_plan("nvdimm-hotplug")
    plug, walk = hp.steps[:2]
    assert plug.state == "device" and plug.blocks == () and walk.region == Region(4 * G, 256 * M)
    assert set(hp.modules) == {"nfit", "nd_pmem"}


@pytest.mark.parametrize(
    ("layout", "arch", "steps", "needle"),
    [
        (X86_DIMMS, X86_64, [{"plug": "pc-dimm", "id": "d", "size": "4G"}], "raise maxmem"),
        (
            X86_DIMMS,
            X86_64,
            [{"plug": "pc-dimm", "id": f"d{i}", "size": "128M"} for i in range(5)],
            "all 4 slots are in use",
        ),
        (
            X86_DIMMS,
            X86_64,
            [{"plug": "pc-dimm", "id": "d", "size": "128M", "addr": "0x104000000"}],
            "not 128M aligned: Linux hot-adds whole 128 MiB memory blocks",
        ),
        (
            X86_DIMMS,
            X86_64,
            [{"plug": "pc-dimm", "id": "d", "size": "128M", "addr": "0x80000000"}],
            "outside the device-memory window",
        ),
        (X86_DIMMS, X86_64, [{"plug": "pc-dimm", "id": "d", "size": "100M"}], "not 128M aligned"),
        (X86_DIMMS, X86_64, [{"online": "nope"}], "unknown id 'nope'"),
        (
            X86_DIMMS,
            X86_64,
            [
                {"plug": "pc-dimm", "id": "d", "size": "128M"},
                {"plug": "pc-dimm", "id": "d", "size": "128M"},
            ],
            "already plugged",
        ),
        (
            X86_DIMMS,
            X86_64,
            [{"plug": "nvdimm", "id": "n", "size": "128M"}, {"unplug": "n"}],
            "QEMU cannot hot-unplug an nvdimm",
        ),
        (
            X86_DIMMS,
            X86_64,
            [{"plug": "nvdimm", "id": "n", "size": "128M"}, {"online": "n"}],
            "not System RAM",
        ),
        (X86_DIMMS, ARM64, [{"plug": "nvdimm", "id": "n", "size": "128M"}], "cannot hotplug"),
        (X86_DIMMS, X86_64, [{"plug": "virtio-mem", "id": "v", "size": "128M"}], "declared in"),
        (X86_DIMMS, X86_64, [{"plug": "ram-stick", "id": "v", "size": "128M"}], "unknown device"),
        (ARM_VIRTIO, ARM64, [{"resize": "vmem0", "size": "2G"}], "1G at most"),
        (ARM_VIRTIO, ARM64, [{"resize": "vmem0", "size": "0"}], "already has that size"),
        (ARM_VIRTIO, ARM64, [{"resize": "vmem0", "size": "3M"}], "not 2M aligned"),
        (ARM_VIRTIO, ARM64, [{"unplug": "vmem0"}], "use { resize = ID, size = 0 }"),
        (
            {"kind": "hotplug", "memory": "1G"},
            X86_64,
            [{"plug": "pc-dimm", "id": "d", "size": "128M"}],
            "set slots and maxmem",
        ),
        (
            ARM_HIDDEN,
            ARM64,
            [{"add_memory": "hp0", "start": "0x80000000", "size": "1G"}],
            "load the test module first",
        ),
        (
            ARM_HIDDEN,
            ARM64,
            [{"module": "mh_hotplug"}, {"add_memory": "hp0", "start": "0xc0000000", "size": "1G"}],
            "not RAM that QEMU has and the kernel does not use",
        ),
        (
            ARM_HIDDEN,
            ARM64,
            [
                {"module": "mh_hotplug"},
                {"add_memory": "hp0", "start": "0x80000000", "size": "256M"},
                {"offline_and_remove_memory": "hp0", "start": "0x90000000", "size": "128M"},
            ],
            "not part of what is left of hp0",
        ),
        (ARM_HIDDEN, ARM64, [{"module": "no_such_module"}], "no test module 'no_such_module'"),
    ],
)
def test_refused_steps(
    layout: dict[str, Any], arch: ArchProfile, steps: list[dict[str, Any]], needle: str
) -> None:
    with pytest.raises(UserError) as err:
        planned(layout, arch, *steps)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"plug": "pc-dimm", "size": "128M"}, "missing ['id']"),
        ({"plug": "pc-dimm", "id": "d", "size": "128M", "zone": "movable"}, "unknown keys"),
        ({"online": "d", "offline": "d"}, "exactly one action"),
        ({"size": "1G"}, "exactly one action"),
        ({"online": "d", "zone": "highmem"}, "zone 'highmem'"),
        ({"churn": "d", "rounds": 0}, "rounds must be at least 1"),
        ({"resize": "v", "size": "lots"}, "bad size"),
    ],
)
def test_refused_step_syntax(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(UserError) as err:
        Action.from_data(data)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ({**ARM_VIRTIO, "online": ""}, "needs plugged memory onlined"),
        ({**ARM_VIRTIO, "maxmem": "0"}, "set maxmem"),
        ({**ARM_VIRTIO, "maxmem": "1G"}, "must be above -m"),
        ({**ARM_VIRTIO, "virtio_mem": [{"id": "v", "size": "100M"}]}, "multiple of 128M"),
        ({**ARM_VIRTIO, "virtio_mem": [{"id": "v", "size": "4G"}]}, "raise maxmem"),
        ({**ARM_VIRTIO, "online": "sometimes"}, "is not one of"),
        ({**X86_DIMMS, "pmem": [{"start": "0x40000000", "size": "64M"}]}, "remove pmem"),
        ({**X86_DIMMS, "numa": ["1G"]}, "at least two nodes"),
        ({**X86_DIMMS, "numa": ["512M", "256M"]}, "add up to 768M, not the layout's memory 1G"),
        ({**X86_DIMMS, "numa": ["0", "1G"]}, "node 0 needs boot memory"),
        ({**X86_DIMMS, "numa": ["960M", "64M"]}, "multiple of 128M"),
        (
            {**ARM_VIRTIO, "virtio_mem": [{"id": "v", "size": "1G", "node": 1}]},
            "node 1 is not one of the layout's NUMA nodes",
        ),
    ],
)
def test_refused_hotplug_layouts(layout: dict[str, Any], needle: str) -> None:
    with pytest.raises(UserError) as err:
        plan(Layout.from_data(layout), ARM64)
    assert needle in str(err.value)


def test_walk_expectations_for_hotplugged_memory() -> None:
    """Online RAM must read as online, offline blocks as NOPAGE; pmem beyond max_pfn is
    'unreported', which only pmem may be."""
    online, offline, pmem = Section(32, RAM * 64), Section(32, OFFLINE * 64), Section(32, PMEM * 64)
    pfn = 32 * 32768

    def runs(flags: str) -> dict[str, Any]:
        return {"runs": [{"pfn": pfn, "n": 32768, "flags": flags, "names": "", "refs": 0}]}

    nopage, buddy, unreported = hex(1 << 20), hex(1 << 10), "unreported"
    assert check("kpageflags", runs(buddy), online) == []
    assert check("kpageflags", runs(nopage), online)
    assert check("kpageflags", runs(nopage), offline) == []
    assert check("kpageflags", runs(buddy), offline)
    assert check("kpageflags", runs(unreported), offline)
    assert check("kpageflags", runs(unreported), pmem) == []
    assert check("kpageflags", runs(buddy), pmem)
    soft = {"runs": [{"pfn": pfn, "n": 32768, "result": "ENXIO"}]}
    assert check("soft-offline", soft, pmem) == [] and check("soft-offline", soft, offline)
    assert summary(runs(nopage), offline)["offline"] == {"names=": 32768}


def test_numa_nodes_and_a_dimm_on_the_memory_less_one() -> None:
    hp = catalogue_plan("gup-pin-numa-migrate")
    (scenario,) = [s for s in load_catalogue() if s.name == "gup-pin-numa-migrate"]
    args = plan(scenario.layout, X86_64).qemu_args
    # node 0 carries all of -m 1G from its own backend; node 1 starts without memory
    assert args[-6:] == (
        "-object",
        f"memory-backend-ram,id=mhnode0,size={G}",
        "-numa",
        "node,nodeid=0,memdev=mhnode0",
        "-numa",
        "node,nodeid=1",
    )
    plug = hp.steps[0]
    assert plug.qmp[1] == (
        "device_add",
        {"driver": "pc-dimm", "id": "dimm0", "memdev": "mem-dimm0", "addr": 4 * G, "node": 1},
    )
    assert plug.step.describe() == "plug pc-dimm dimm0 256M node1"
    with pytest.raises(UserError, match="node 2 is not one of the layout's 2 NUMA nodes"):
        planned(
            {**X86_DIMMS, "numa": ["1G", "0"]},
            X86_64,
            {"plug": "pc-dimm", "id": "d", "size": "128M", "node": 2},
        )
    with pytest.raises(UserError, match="node 1 is not one of the layout's 1 NUMA nodes"):
        planned(X86_DIMMS, X86_64, {"plug": "pc-dimm", "id": "d", "size": "128M", "node": 1})


def test_arm64_virtio_mem_on_a_node_with_boot_memory() -> None:
    (scenario,) = [s for s in load_catalogue() if s.name == "gup-pin-numa-migrate-arm64"]
    args = plan(scenario.layout, ARM64).qemu_args
    devices = [args[i + 1] for i, a in enumerate(args) if a == "-device"]
    assert any(d.startswith("virtio-mem-pci,id=vmem0,") and d.endswith(",node=1") for d in devices)
    half = 512 * M
    assert f"memory-backend-ram,id=mhnode1,size={half}" in args
    assert "node,nodeid=1,memdev=mhnode1" in args
