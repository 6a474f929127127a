"""Kernel build inputs: fragment resolution, Kconfig dependency explanations, tree checks."""

from pathlib import Path

import pytest

from harness.arch import ARM64, X86_64
from harness.errors import UserError
from harness.kernel.build import (
    DEFAULT_FRAGMENTS,
    BuildRequest,
    build_command,
    explain_dropped,
    fragment_files,
    kconfig_depends,
)
from harness.kernel.kconfig import Requirement, fragment_requirements
from harness.kernel.source import Source, is_kernel_tree
from harness.paths import KCONFIGS


def test_default_fragments_with_arch_parts() -> None:
    x86 = [
        p.relative_to(KCONFIGS).as_posix() for p in fragment_files(list(DEFAULT_FRAGMENTS), X86_64)
    ]
    assert x86 == [
        "base.config",
        "x86_64/base.config",
        "zone-device.config",
        "x86_64/zone-device.config",
        "hotplug.config",
        "memory-failure.config",
        "x86_64/memory-failure.config",
        "debug-vm.config",
        "memcg.config",
        "userspace.config",
        "gup-test.config",
    ]
    arm = [p.relative_to(KCONFIGS).as_posix() for p in fragment_files(["hotplug"], ARM64)]
    assert arm == ["base.config", "arm64/base.config", "hotplug.config", "arm64/hotplug.config"]


def test_fragment_by_path_and_unknown_name(tmp_path: Path) -> None:
    own = tmp_path / "mine.config"
    own.write_text("CONFIG_KASAN=y\n")
    assert fragment_files([str(own)], X86_64)[-1] == own
    with pytest.raises(UserError, match="fragment 'nope' not found: use one of"):
        fragment_files(["nope"], X86_64)


def test_every_fragment_line_is_a_requirement() -> None:
    for fragment in KCONFIGS.rglob("*.config"):
        text = fragment.read_text()
        asked = [ln for ln in text.splitlines() if ln.startswith("CONFIG_")]
        assert len(fragment_requirements(text)) == len(asked), fragment


KCONFIG = """\
config ZONE_DEVICE
\tbool "Device memory (pmem, HMM, etc...) hotplug support"
\tdepends on MEMORY_HOTPLUG
\tdepends on MEMORY_HOTREMOVE
\tdepends on SPARSEMEM_VMEMMAP
\tselect XARRAY_MULTI

config MEMORY_FAILURE
\tdepends on MMU
\tdepends on ARCH_SUPPORTS_MEMORY_FAILURE
\tbool "Enable recovery from hardware memory errors"
"""


def test_dropped_options_name_their_unmet_dependencies(tmp_path: Path) -> None:
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "Kconfig").write_text(KCONFIG)
    assert kconfig_depends(tmp_path, "ZONE_DEVICE") == [
        "MEMORY_HOTPLUG",
        "MEMORY_HOTREMOVE",
        "SPARSEMEM_VMEMMAP",
    ]
    config = {"CONFIG_MEMORY_HOTPLUG": "y", "CONFIG_SPARSEMEM_VMEMMAP": "y", "CONFIG_MMU": "y"}
    text = explain_dropped(
        tmp_path,
        [
            Requirement.parse("ZONE_DEVICE=y"),
            Requirement.parse("MEMORY_FAILURE=y"),
            Requirement.parse("NOT_THERE=y"),
        ],
        config,
    )
    assert "CONFIG_ZONE_DEVICE=y (now n; depends on: MEMORY_HOTREMOVE)" in text
    assert "CONFIG_MEMORY_FAILURE=y (now n; depends on: ARCH_SUPPORTS_MEMORY_FAILURE)" in text
    assert "CONFIG_NOT_THERE=y (now n; depends on: no Kconfig entry for this arch)" in text


def test_kernel_tree_detection(tmp_path: Path) -> None:
    assert not is_kernel_tree(tmp_path)
    (tmp_path / "arch").mkdir()
    (tmp_path / "Kconfig").write_text("")
    (tmp_path / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")
    assert is_kernel_tree(tmp_path)


def test_build_directories(tmp_path: Path) -> None:
    frags = fragment_files(["zone-device"], X86_64)
    user = BuildRequest(X86_64, Source(tmp_path, "git-a", "t", user_tree=True), frags)
    changed = BuildRequest(X86_64, Source(tmp_path, "git-b", "t", user_tree=True), frags)
    assert user.directory == changed.directory  # one tree, one O=: incremental rebuilds
    assert user.key != changed.key  # ... but the result is not reused
    debian = BuildRequest(X86_64, Source(tmp_path, "linux-source-6.1-6.1.1", "d", False), frags)
    other = BuildRequest(X86_64, Source(tmp_path, "linux-source-6.1-6.1.2", "d", False), frags)
    assert debian.directory != other.directory
    assert user.config_key == changed.config_key


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["CONFIG_KASAN"], ["kasan"]),  # a scenario needing KASAN names the kasan fragment
        (["CONFIG_KASAN", "CONFIG_DEBUG_INFO_DWARF5"], ["debug-info", "kasan"]),
        (["CONFIG_ZONE_DEVICE", "CONFIG_IO_URING"], []),  # the defaults set them
        (["CONFIG_MEMCG=n"], []),  # asked off: no fragment turns options off
    ],
)
def test_the_build_command_names_the_fragments_a_requirement_needs(
    options: list[str], fragments: list[str]
) -> None:
    command = build_command(options, X86_64)
    defaults = "".join(f" --fragment {f}" for f in DEFAULT_FRAGMENTS)
    extra = "".join(f" --fragment {f}" for f in fragments)
    want = "memharness kernel build --arch x86_64" + (defaults + extra if fragments else "")
    assert command == want


def test_an_option_no_fragment_sets_asks_for_a_fragment_of_the_users_own() -> None:
    assert build_command(["CONFIG_NUMA"], X86_64).endswith(" --fragment numa")
    command = build_command(["CONFIG_KSM", "CONFIG_KASAN"], X86_64)
    defaults = "".join(f" --fragment {f}" for f in DEFAULT_FRAGMENTS)
    assert command.startswith(f"memharness kernel build --arch x86_64{defaults} --fragment kasan")
    assert command.endswith(
        " --fragment FILE (FILE: a fragment of yours with CONFIG_KSM; no kconfigs/ topic sets it)"
    )
