"""The `scenario_vm` fixture as a developer uses it: a new walk against a built-in layout in a
few lines (the README's example)."""

import json
from collections.abc import Callable

import pytest

from harness.pytest_plugin import ScenarioVM

pytestmark = pytest.mark.x86_64


def test_devdax_mode_of_the_shared_section(scenario_vm: Callable[..., ScenarioVM]) -> None:
    guest = scenario_vm("legacy-lower-half", mode="devdax-mem")
    (section,) = guest.shared  # section 8: half ZONE_DEVICE, half System RAM
    assert guest.sh(f"cat /sys/devices/system/memory/memory{section}/state").strip() == "online"
    (namespace,) = json.loads(guest.sh("ndctl list -N"))
    assert namespace["mode"] == "devdax"
    # one kpageflags walk of the section: on a fixed kernel the ZONE_DEVICE half (64 MiB)
    # reads KPF_NOPAGE, the System RAM half does not
    pfns = 128 * 1024 * 1024 // 4096
    walk = json.loads(guest.sh(f"mh-walk kpageflags {section * pfns} {pfns}"))
    assert (walk["count"], walk["nopage"]) == (pfns, pfns // 2), walk
