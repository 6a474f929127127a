"""A guest saved after setup and restored instead of booted (harness/vm/snapshot.py): the
restored guest is the saved one at the save point, independent of it afterwards, its splats are
caught on its own console, and a phased scenario gives the same walks restored as booted."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ArchProfile
from harness.outcome import Outcome, decide
from harness.vm.machine import VM
from tests.integration.cli import memharness


@pytest.mark.allow_splats
def test_restored_guest_is_the_saved_one_at_the_save_point(
    arch: ArchProfile, vm_factory: Callable[..., VM], tmp_path: Path
) -> None:
    saved = vm_factory()
    assert saved.ready
    assert saved.run("echo before-save > /tmp/mark").exit_code == 0
    state = tmp_path / "dir with space" / "setup.state"
    state.parent.mkdir()
    seconds = saved.save_state(state)
    assert 0 < seconds < 60 and state.stat().st_size > 1 << 20
    # the saving guest runs on after the save
    assert saved.run("echo after-save > /tmp/later").exit_code == 0

    restored = vm_factory(incoming=state)
    assert restored.ready, restored.facts()
    assert restored.restored_from == str(state) and saved.restored_from is None
    assert restored.run("cat /tmp/mark").stdout == b"before-save\n"
    assert restored.run("test -e /tmp/later", check=False).exit_code == 1, "saved too late"
    assert restored.run("echo restored-only > /tmp/mine").exit_code == 0
    assert saved.run("test -e /tmp/mine", check=False).exit_code == 1, "the two share state"

    # a splat in the restored guest shows on its own console, not the saved guest's
    restored.run("echo c > /proc/sysrq-trigger", timeout=60, check=False)
    assert decide(restored.facts())[0] == Outcome.KERNEL_SPLAT
    assert saved.run("true").exit_code == 0 and not saved.splats()


def _walks(report: dict[str, Any]) -> dict[str, Any]:
    """Each step's status and, for walks, what they found on the device pages: what must not
    depend on how a boot started (RAM page flags vary from boot to boot anyway)."""
    (result,) = report["results"]
    run = Path(result["artifacts"])
    details = json.loads((run / "result.json").read_text())["details"]
    return {
        s["name"]: (
            s["status"],
            {k: v.get("device") for k, v in s["data"].items() if isinstance(v, dict)},
        )
        for s in details["steps"]
        if not s["name"].endswith("modules")
    }


@pytest.mark.x86_64
def test_phased_scenario_gives_the_same_walks_restored_as_booted(
    arch: ArchProfile, tmp_path: Path
) -> None:
    runs = {}
    for how in ("restored", "fresh"):
        report = tmp_path / f"{how}.json"
        extra = ["--fresh-boots"] if how == "fresh" else []
        done = memharness(
            "run",
            "--arch",
            "x86_64",
            "--scenario",
            "legacy-subsection",
            "--artifacts",
            str(tmp_path / how),
            "--json",
            str(report),
            *extra,
        )
        assert done.returncode == 0, done.stderr
        runs[how] = json.loads(report.read_text())
    (restored,) = runs["restored"]["results"]
    details = json.loads((Path(restored["artifacts"]) / "result.json").read_text())
    modules = [s for s in details["details"]["steps"] if s["name"].endswith("modules")]
    assert [bool(s["data"].get("restored_from")) for s in modules] == [False, True]
    (fresh,) = runs["fresh"]["results"]
    fresh_details = json.loads((Path(fresh["artifacts"]) / "result.json").read_text())
    assert not any(
        s["data"].get("restored_from")
        for s in fresh_details["details"]["steps"]
        if s["name"].endswith("modules")
    )
    assert _walks(runs["restored"]) == _walks(runs["fresh"])
    assert restored["outcome"] == fresh["outcome"] == "pass"
