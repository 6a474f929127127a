"""`memharness selftests` as a user runs it: the kernel's own cow and gup_test on memharness's
6.1 debug build (GUP_TEST on) in the selftests layout, on both arches, each run reported; a
planted COW bug of ours turns cow red while the clean build stays green; a selftests build
failure is one line naming the log, before anything boots.

cow arrived in 6.2, so its source is Debian's 6.12 tree (`--src debian:6.12`): the mm
selftests of a newer kernel run on older ones and skip what those lack.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ArchProfile, get_arch
from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel
from harness.kernel.source import debian_source, user_source
from tests.integration.cli import memharness
from tests.integration.kernel_tree import PLANTED_PATCHES, PlantedTree, commit_patch

pytestmark = pytest.mark.kernel_build


def selftests(
    kernel: Path, arch: ArchProfile, out: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    report = out / "selftests.json"
    done = memharness(
        "selftests", "--arch", arch.name, "--kernel", str(kernel), "--src", "debian:6.12",
        "--tests", "cow,gup_test", "--artifacts", str(out), "--json", str(report),
        "--junit", str(out / "junit.xml"), *extra,
        timeout=2400,
    )  # fmt: skip
    data = json.loads(report.read_text()) if report.is_file() else {}
    return done.returncode, data, done.stdout + done.stderr


def test_cow_and_gup_test_pass_on_the_debug_build(arch: ArchProfile, tmp_path: Path) -> None:
    kernel = build_kernel(arch, debian_source(), list(DEFAULT_FRAGMENTS))
    code, data, output = selftests(kernel, arch, tmp_path)
    assert code == 0, output
    runs = {r["name"]: r for r in data["runs"]}
    assert set(runs) == {"cow", "gup_test -u", "gup_test -a", "gup_test -ct -F 0x1 0 19 0x1000"}
    assert all(r["status"] == "pass" for r in runs.values()), runs
    cow = runs["cow"]["subtests"]
    assert len(cow) > 100 and sum(s["status"] == "pass" for s in cow) > 30
    # GUP_TEST is in the build: gup_test really pinned (its ioctl answered), not skipped
    assert all(r["subtests"] and r["exit_code"] == 0 for n, r in runs.items() if "gup_test" in n)
    assert data["vm"]["outcome"] == "pass" and data["scenario"].startswith("selftests-layout")
    # the table names every run; JUnit has a case each
    for name in runs:
        assert name in output
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("<testcase ") == 4 and "<failure" not in junit
    record = json.loads((Path(data["vm"]["artifacts"]) / "result.json").read_text())
    assert [s["status"] for s in record["details"]["steps"]] == ["passed"] * len(
        record["details"]["steps"]
    )


@pytest.mark.x86_64
def test_a_planted_cow_bug_turns_cow_red(planted_tree: PlantedTree, tmp_path: Path) -> None:
    """COW reuse that counts mappings instead of references (the pre-5.8 logic of
    CVE-2020-29374): a page a pipe still references is reused for the parent's write, and
    the child reads the parent's data through the pipe."""
    arch = get_arch("x86_64")
    commit = commit_patch(planted_tree, PLANTED_PATCHES / "cow-reuse-ignores-references.patch")
    kernel = build_kernel(arch, user_source(planted_tree.path, commit), list(DEFAULT_FRAGMENTS))
    code, data, output = selftests(kernel, arch, tmp_path)
    assert code == 1, output
    runs = {r["name"]: r for r in data["runs"]}
    cow = runs["cow"]
    assert cow["status"] == "fail", cow
    failing = [s["description"] for s in cow["subtests"] if s["status"] == "fail"]
    assert "Leak from parent into child" in failing, cow  # the vmsplice tests
    assert "FAIL" in output and "cow" in output
    junit = (tmp_path / "junit.xml").read_text()
    assert '<failure message="' in junit


@pytest.mark.x86_64
def test_a_selftests_build_failure_is_one_line_before_qemu(tmp_path: Path) -> None:
    tree = tmp_path / "linux"
    (tree / "arch").mkdir(parents=True)
    (tree / "Kconfig").write_text("")
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 99\nheaders:\n\tfalse\n")
    mm = tree / "tools/testing/selftests/mm"
    mm.mkdir(parents=True)
    (mm / "Makefile").write_text("all:\n")
    (mm / "cow.c").write_text("#error planted\n")
    done = memharness(
        "selftests", "--src", str(tree), "--tests", "cow", "--artifacts", str(tmp_path / "art"),
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 125, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("memharness:")]
    assert "make headers (x86_64) does not build" in line and "full log: " in line
    assert not list((tmp_path / "art").glob("selftests-*"))  # nothing booted


@pytest.mark.x86_64
def test_sigint_during_a_run_stops_qemu_and_keeps_the_record(tmp_path: Path) -> None:
    kernel = build_kernel(get_arch("x86_64"), debian_source(), list(DEFAULT_FRAGMENTS))
    child = subprocess.Popen(
        [sys.executable, "-m", "harness", "selftests", "--kernel", str(kernel),
         "--src", "debian:6.12", "--tests", "cow", "--artifacts", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # the layout is up: the binaries go over, cow starts
        logs = list(tmp_path.glob("selftests-*/transcript.log"))
        if logs and "$ mkdir -p /root/selftests" in logs[0].read_text():
            break
        assert child.poll() is None, child.communicate()
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    (record,) = tmp_path.glob("selftests-*/result.json")
    assert json.loads(record.read_text())["outcome"] == "interrupted"
    assert "QEMU stopped" in err or "interrupted" in err
