"""Memory hotplug over QMP on real QEMU with the default (Debian) kernels: pc-dimm and nvdimm
on x86_64, virtio-mem on both arches, online/offline churn with racing walkers, seed 002's
arm64 partial hot-remove bug (a known bug with rodata=off, a pass with the default rodata),
and hotplug steps the planner refuses before QEMU starts."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ArchProfile
from harness.catalogue.model import Scenario, load_catalogue
from harness.image.builder import GuestImage
from harness.kernel.model import Kernel
from harness.outcome import Outcome
from harness.result import RunResult
from harness.run import run_scenario
from tests.integration.cli import memharness

Prepared = Callable[[ArchProfile], tuple[Kernel, GuestImage]]
TARGET_SECONDS = 5.0  # issue 6: plug + online, and offline + unplug, per 128 MiB block
VIRTIO_MEM = {"x86_64": "virtio-mem-resize", "arm64": "virtio-mem-resize-arm64"}


def scenario(name: str) -> Scenario:
    (found,) = [s for s in load_catalogue() if s.name == name]
    return found


def run(name: str, arch: ArchProfile, prepared: Prepared, tmp_path: Path) -> RunResult:
    chosen = scenario(name)
    assert chosen.arch == arch.name
    kernel, image = prepared(arch)
    return run_scenario(chosen, kernel, image, tmp_path)


def named(result: RunResult, name: str) -> list[dict[str, Any]]:
    """Every step called ``name``, in order (walks of the same memory repeat their name)."""
    return [s for s in result.details["steps"] if s["name"] == name]


def passed(result: RunResult) -> RunResult:
    assert result.outcome == Outcome.PASS, (result.reason, result.artifacts)
    assert all(s["status"] == "passed" for s in result.details["steps"]), result.details["skipped"]
    return result


@pytest.mark.x86_64
def test_pc_dimm_plug_online_walk_offline_unplug(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    result = passed(run("dimm-plug-cycle", arch, prepared, tmp_path))
    (plug,) = named(result, "plug pc-dimm dimm0 256M")
    assert plug["data"]["ost"]["device"] == "dimm0" and plug["data"]["ost"]["status"] == 0
    assert [v.split()[0] for v in plug["data"]["states"].values()] == ["offline", "offline"]
    (online,) = named(result, "online dimm0")
    assert all(v.startswith("online Movable") for v in online["data"]["states"].values())
    as_online, as_offline = named(result, "walk dimm0: kpageflags")
    assert set(as_online["data"]) == {"section 32", "section 33"}
    for walked in as_online["data"].values():
        assert walked["ram"] and not any("NOPAGE" in k for k in walked["ram"])
    for walked in as_offline["data"].values():
        assert walked["offline"] == {"names=NOPAGE": 32768}
    (offline,) = named(result, "offline dimm0")
    (unplug,) = named(result, "unplug dimm0")
    blocks = 2
    assert (plug["seconds"] + online["seconds"]) / blocks < TARGET_SECONDS
    assert (offline["seconds"] + unplug["seconds"]) / blocks < TARGET_SECONDS
    assert named(result, "unplug dimm1")[0]["status"] == "passed"


def test_virtio_mem_resize_matches_qemu_and_guest(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    result = passed(run(VIRTIO_MEM[arch.name], arch, prepared, tmp_path))
    resizes = [s for s in result.details["steps"] if s["name"].startswith("resize")]
    seen = [
        (s["data"]["query-memory-devices"]["size"], len(s["data"]["guest_blocks"])) for s in resizes
    ]
    assert seen == [(512 << 20, 4), (128 << 20, 1), (768 << 20, 6), (0, 0)]


@pytest.mark.x86_64
def test_nvdimm_hotplug_region_raw_and_fsdax(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    result = passed(run("nvdimm-hotplug", arch, prepared, tmp_path))
    raw, fsdax = named(result, "walk nv0: soft-offline")
    # Raw: no memmap at all, so not even pfn_valid (ENXIO); fsdax: a ZONE_DEVICE memmap (EIO).
    assert {k for w in raw["data"].values() for k in w["pmem"]} == {"result=ENXIO"}
    assert {k for w in fsdax["data"].values() for k in w["pmem"]} == {"result=EIO"}
    (dimm,) = named(result, "walk dimm0: kpageflags")
    assert set(dimm["data"]) == {"section 34"}  # first fit after the nvdimm's 2 sections


@pytest.mark.x86_64
def test_online_offline_churn_with_racing_walkers(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    result = passed(run("hotplug-churn", arch, prepared, tmp_path))
    for dimm in ("dimm0", "dimm1"):
        (churn,) = named(result, f"churn {dimm} x20")
        assert churn["data"]["offlined"] + churn["data"]["refused"] == 20
        assert churn["data"]["offlined"] > 0
        assert churn["data"]["racing_walks"] > 0 and churn["data"]["racing_walk_failures"] == 0


@pytest.mark.arm64
@pytest.mark.allow_splats
def test_seed_002_partial_hot_remove_is_a_known_bug_with_rodata_off(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    chosen = scenario("partial-hot-remove-arm64")
    result = run(chosen.name, arch, prepared, tmp_path)
    assert result.outcome == Outcome.KERNEL_SPLAT, (result.reason, result.artifacts)
    assert result.details["known_bug"] == chosen.known_bug
    assert result.details["known_bug_reproduced"] is True
    assert result.reason.startswith(str(chosen.known_bug))
    console = (result.artifacts / "console.log").read_text(errors="replace")
    assert "level 1 translation fault" in console and "pud=0000000000000000" in console
    (removed,) = named(result, "offline-and-remove-memory hp0 128M@0x88000000")
    assert removed["status"] == "passed"


@pytest.mark.arm64
def test_seed_002_steps_pass_with_the_default_rodata(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    result = passed(run("partial-hot-remove-arm64-rodata", arch, prepared, tmp_path))
    (walk,) = named(result, "walk hp0: kpageflags")
    assert sorted(walk["data"]) == [f"section {n}" for n in (16, 18, 19, 20, 21, 22, 23)]


@pytest.mark.arm64
def test_arm64_pc_dimm_is_a_loud_skip_without_acpi_hotplug(
    arch: ArchProfile, prepared: Prepared, tmp_path: Path
) -> None:
    """The Debian arm64 kernel lacks ACPI_HOTPLUG_MEMORY: skipped, saying how to get one."""
    kernel, _ = prepared(arch)
    if (kernel.config_options() or {}).get("CONFIG_ACPI_HOTPLUG_MEMORY") == "y":
        pytest.skip(f"{kernel.release} can hotplug DIMMs: test_kernel_build runs it")
    result = run("dimm-plug-cycle-arm64", arch, prepared, tmp_path)
    assert result.outcome == Outcome.SKIPPED
    assert "lacks CONFIG_ACPI_HOTPLUG_MEMORY" in result.reason
    assert "memharness kernel build" in result.reason


BAD_STEPS = [
    ('{ plug = "pc-dimm", id = "d0", size = "4G" }', "raise maxmem"),
    ('{ plug = "pc-dimm", id = "d0", size = "128M", addr = "0x104000000" }', "not 128M aligned"),
    ('{ online = "d9" }', "unknown id 'd9'"),
    (
        '{ plug = "nvdimm", id = "n0", size = "128M" }, { unplug = "n0" }',
        "cannot hot-unplug an nvdimm",
    ),
    (", ".join(f'{{ plug = "pc-dimm", id = "d{i}", size = "128M" }}' for i in range(5)), "slots"),
]


@pytest.mark.parametrize(("steps", "needle"), BAD_STEPS, ids=[n for _, n in BAD_STEPS])
def test_bad_hotplug_steps_are_one_line_exit_2(steps: str, needle: str, tmp_path: Path) -> None:
    catalogue = tmp_path / "bad.toml"
    catalogue.write_text(
        '[[scenario]]\nname = "bad-hotplug"\narch = "x86_64"\nsummary = "s"\n'
        'layout = { kind = "hotplug", memory = "1G", slots = 4, maxmem = "4G" }\n'
        f"steps = [{steps}]\n"
    )
    done = memharness(
        "run", "--catalogue", str(catalogue), "--artifacts", str(tmp_path / "a"), timeout=120
    )
    assert done.returncode == 2, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("memharness: error")]
    assert len(errors) == 1 and needle in errors[0] and "bad-hotplug" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "a").exists()  # refused before anything booted


@pytest.mark.arm64
def test_run_exit_code_known_bug_expected_but_bad_for_bisect(
    arch: ArchProfile, tmp_path: Path
) -> None:
    """The main job stays green when a scenario reproduces its declared known bug; `--bisect`
    calls the same kernel bad."""
    args = ["run", "--arch", "arm64", "--scenario", "partial-hot-remove-arm64"]
    done = memharness(*args, "--artifacts", str(tmp_path / "a"), "--json", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "known bug reproduced (expected)" in done.stdout
    assert '"known_bugs_reproduced": 1' in (tmp_path / "r").read_text()
    done = memharness(*args, "--bisect", "--artifacts", str(tmp_path / "b"))
    assert done.returncode == 1, done.stdout + done.stderr
