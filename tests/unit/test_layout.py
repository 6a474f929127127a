"""Layout planner: every built-in layout's map, and the layouts it must refuse (pure)."""

import pytest

from harness.arch import ARM64, X86_64
from harness.catalogue.model import load_catalogue
from harness.errors import UserError
from harness.layout.model import Layout, Region, fmt_size, parse_size
from harness.layout.planner import DEVICE, RAM, plan, q35_boot_ram, q35_device_memory, render

M = 1 << 20


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64M", 64 * M),
        ("2G", 2 << 30),
        ("0x40000000", 1 << 30),
        ("2m", 2 * M),
        (4096, 4096),
        ("128MiB", 128 * M),
        ("64MB", 64 * M),
        ("0xb", 11),  # B is a hex digit here, not a unit (hypothesis found '0xB' crashing)
        ("0x8000000B", 0x8000000B),
    ],
)
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["0x", "0xB0G", "0xg", "b", "12Q"])
def test_bad_size_is_one_line_naming_the_form(text: str) -> None:
    with pytest.raises(UserError, match=r"^bad size .*: write it like 64M, 2G or 0x40000000$"):
        parse_size(text)


def test_fmt_size() -> None:
    assert [fmt_size(v) for v in (2 << 30, 64 * M, 4096, 1000)] == ["2G", "64M", "4K", "1000"]


def test_q35_memory_split() -> None:
    assert q35_boot_ram(2 << 30) == [Region(0, 2 << 30)]
    assert q35_boot_ram(3 << 30) == [Region(0, 2 << 30), Region(4 << 30, 1 << 30)]
    assert q35_device_memory(2 << 30, 8 << 30) == Region(4 << 30, 6 << 30)
    assert q35_device_memory(3 << 30, 8 << 30).start == 5 << 30


# (scenario, arch, collision sections, the collision section's 64 subsections)
CATALOGUE_MAPS = [
    ("legacy-lower-half", X86_64, [8], DEVICE * 32 + RAM * 32),
    ("legacy-upper-half", X86_64, [8], RAM * 32 + DEVICE * 32),
    ("legacy-middle", X86_64, [8], RAM * 40 + DEVICE * 8 + RAM * 16),
    ("legacy-subsection", X86_64, [8], RAM * 48 + DEVICE + RAM * 15),
    ("nfit-next-to-boot-ram", X86_64, [32], DEVICE * 32 + RAM * 32),
    ("dt-after-mem-limit", ARM64, [16], RAM * 32 + DEVICE * 32),
]


@pytest.mark.parametrize(("name", "arch", "collisions", "subsections"), CATALOGUE_MAPS)
def test_catalogue_layouts(
    name: str, arch: object, collisions: list[int], subsections: str
) -> None:
    (scenario,) = [s for s in load_catalogue() if s.name == name]
    p = plan(scenario.layout, arch)  # type: ignore[arg-type]
    assert p.collisions == collisions
    (section,) = [s for s in p.sections if s.collides]
    assert section.subsections == subsections
    assert f"{collisions[0]:>7}" in render(p) and "collision" in render(p)


def test_legacy_plan_details() -> None:
    layout = Layout.from_data(
        {"kind": "legacy", "memory": "2G", "pmem": [{"start": "0x44000000", "size": "64M"}]}
    )
    p = plan(layout, X86_64)
    assert p.cmdline == ("memmap=64M!0x44000000",)
    assert p.qemu_args == () and p.modules == ("nd_e820", "nd_pmem")
    assert [str(r.option) for r in p.requirements] == [
        "CONFIG_X86_PMEM_LEGACY",
        "CONFIG_LIBNVDIMM",
        "CONFIG_BLK_DEV_PMEM",
    ]
    assert [s.number for s in p.sections] == [7, 8, 9]
    (section,) = [s for s in p.sections if s.collides]
    assert section.pfns(DEVICE) == [(0x44000, 16384)] and section.pfns(RAM) == [(0x40000, 16384)]


def test_nfit_plan_devices_and_cmdline() -> None:
    (scenario,) = [s for s in load_catalogue() if s.name == "nfit-next-to-boot-ram"]
    p = plan(scenario.layout, X86_64)
    assert p.cmdline == ("memmap=64M@0x104000000",)
    assert "nvdimm,id=nvdimm0,memdev=mhnv0,addr=0x100000000" in p.qemu_args
    assert "pc-dimm,id=dimm0,memdev=mhdimm0,addr=0x104000000" in p.qemu_args


def test_dt_plan_node() -> None:
    (scenario,) = [s for s in load_catalogue() if s.name == "dt-after-mem-limit"]
    p = plan(scenario.layout, ARM64)
    assert p.cmdline == ("mem=1088M",)
    (node,) = p.dt_nodes
    assert node.dts() == (
        '\tpmem@84000000 {\n\t\tcompatible = "pmem-region";\n'
        "\t\treg = <0x0 0x84000000 0x0 0xc000000>;\n\t};\n"
    )


LEGACY = {"kind": "legacy", "memory": "2G"}
NFIT = {"kind": "nfit", "memory": "2G", "slots": 4, "maxmem": "8G"}
DT = {"kind": "dt", "memory": "1280M", "mem_limit": "1088M"}
HOTPLUG = {"kind": "hotplug", "memory": "1G"}


def pmem(start: str, size: str) -> list[dict[str, str]]:
    return [{"start": start, "size": size}]


@pytest.mark.parametrize(
    ("data", "arch", "needle"),
    [
        ({**LEGACY, "pmem": pmem("0x40100000", "64M")}, X86_64, "not 2 MiB aligned"),
        ({**LEGACY, "pmem": pmem("0x40000000", "3M")}, X86_64, "not 2 MiB aligned"),
        ({**LEGACY, "pmem": pmem("0x7c000000", "128M")}, X86_64, "outside the boot RAM"),
        (
            {**LEGACY, "pmem": [*pmem("0x40000000", "64M"), *pmem("0x42000000", "64M")]},
            X86_64,
            "overlaps",
        ),
        ({**LEGACY, "pmem": pmem("0x40000000", "128M")}, X86_64, "no device memory in a section"),
        ({**LEGACY, "pmem": pmem("0x40000000", "64M")}, ARM64, "cannot be produced on arm64"),
        ({**DT, "pmem": pmem("0x84000000", "64M")}, X86_64, "cannot be produced on x86_64"),
        ({**DT, "pmem": pmem("0x88000000", "192M")}, ARM64, "not inside the RAM"),
        (
            {"kind": "dt", "memory": "1280M", "pmem": pmem("0x84000000", "64M")},
            ARM64,
            "needs mem_limit",
        ),
        ({**NFIT, "nvdimms": pmem("0x80000000", "64M")}, X86_64, "device-memory window"),
        (
            {**NFIT, "maxmem": "2G", "nvdimms": pmem("0x100000000", "64M")},
            X86_64,
            "device-memory window",
        ),
        (
            {
                **NFIT,
                "slots": 1,
                "nvdimms": pmem("0x100000000", "64M"),
                "dimms": pmem("0x104000000", "64M"),
            },
            X86_64,
            "slots >= 2",
        ),
        ({**NFIT, "nvdimms": pmem("0x100000000", "64M")}, X86_64, "no device memory in a section"),
        ({"kind": "cxl", "memory": "2G"}, X86_64, "unknown layout kind"),
        ({**HOTPLUG, "cxl": "1G"}, ARM64, "a cxl layout needs x86_64"),
        ({**HOTPLUG, "cxl": "1G", "maxmem": "4G", "slots": 2}, X86_64, "no maxmem, slots"),
        ({**HOTPLUG, "cxl": "100M"}, X86_64, "multiple of 128M"),
        ({**HOTPLUG, "cxl": "8G"}, X86_64, "at most 4G"),
        ({**LEGACY, "pmem": pmem("0x40000000", "64M"), "hugepages": 2}, X86_64, "unknown keys"),
        ({**LEGACY, "pmem": pmem("0x40000000", "64M"), "numa": 2}, X86_64, "list each node's"),
        (
            {**LEGACY, "pmem": pmem("0x40000000", "64M"), "numa": ["1G", "1G"]},
            X86_64,
            "numa is a hotplug layout's key, not legacy's",
        ),
        ({**HOTPLUG, "slow_disk": 3}, X86_64, "give a latency with its unit"),
        ({**HOTPLUG, "slow_disk": "3 sec"}, X86_64, "give a latency with its unit"),
        ({**HOTPLUG, "slow_disk": "-1s"}, X86_64, "give a latency with its unit"),
    ],
)
def test_refused_layouts(data: dict[str, object], arch: object, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        plan(Layout.from_data(data), arch)  # type: ignore[arg-type]


def test_cxl_layout_qemu_arguments() -> None:
    """One host bridge, root port and type-3 device with its label area, one fixed window
    aimed at the bridge: the topology QEMU 7.2 documents, with the machine's cxl switch."""
    args = plan(Layout.from_data({**HOTPLUG, "cxl": "1G"}), X86_64).qemu_args
    assert list(args[:2]) == ["-machine", "cxl=on"]
    assert "memory-backend-ram,id=cxl-mem0,size=1073741824" in args
    assert "cxl-type3,bus=cxl-rp0,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0" in args
    assert args[-2:] == ("-machine", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4294967296")
    assert len(args) == 14 and all(a.startswith("-") for a in args[::2])  # option, value


@pytest.mark.parametrize(("latency", "ns"), [("3s", "3000000000"), ("250ms", "250000000")])
def test_slow_disk_is_a_delaying_null_block_device_any_kind_can_have(latency: str, ns: str) -> None:
    """slow_disk adds a null-co disk (reads are zeros, each request delayed in QEMU) behind
    virtio-blk with the serial mh-gup --direct looks for, and needs the guest's VIRTIO_BLK."""
    data = {**LEGACY, "pmem": pmem("0x40000000", "64M"), "slow_disk": latency}
    planned = plan(Layout.from_data(data), X86_64)
    args = planned.qemu_args
    assert args[-4] == "-blockdev" and f"latency-ns={ns}," in args[-3]
    assert "driver=null-co" in args[-3] and "read-zeroes=on" in args[-3]
    assert args[-2:] == ("-device", "virtio-blk-pci,drive=mhslow,serial=mh-slow")
    assert "virtio_blk" in planned.modules
    assert "CONFIG_VIRTIO_BLK" in [r.option for r in planned.requirements]
    without = plan(Layout.from_data({**LEGACY, "pmem": pmem("0x40000000", "64M")}), X86_64)
    assert not any("null-co" in a for a in without.qemu_args)
