"""The catalogue as pytest items (`pytest --scenarios`), run as a user runs it: a pytest
process in an empty directory, a catalogue of one's own, -k selection, --junitxml."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.integration.test_report_browser import CATALOGUE

SKIPPING = """
[[scenario]]
name = "browser-needs-debug-vm"
arch = "x86_64"
summary = "needs DEBUG_VM, which Debian's kernel lacks"
layout = { kind = "legacy", memory = "2G", pmem = [{ start = "0x40000000", size = "64M" }] }
requires = ["DEBUG_VM"]
"""


def test_scenarios_as_pytest_items(tmp_path: Path) -> None:
    catalogue = tmp_path / "mine.toml"
    catalogue.write_text(CATALOGUE + SKIPPING)
    junit = tmp_path / "junit.xml"
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
            "--scenarios", "--catalogue", str(catalogue), "--arch", "x86_64,arm64",
            "-k", "browser and not browser-collision",
            "--artifacts", str(tmp_path / "runs"), f"--junitxml={junit}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out[-3000:]  # one scenario fails
    assert "1 failed" in out and "1 skipped" in out and "1 xfailed" in out, out[-1500:]
    assert "browser-collision" not in out  # -k deselected it
    assert "browser-failing[x86_64]" in out and "check failed" in out
    assert "lacks CONFIG_DEBUG_VM" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {
        "browser-failing[x86_64]",
        "browser-known[arm64]",
        "browser-needs-debug-vm[x86_64]",
    }
    failing = cases["browser-failing[x86_64]"]
    (failure,) = failing.iter("failure")
    assert "reproduce: memharness run" in (failure.get("message", "") + (failure.text or ""))
    props = {p.get("name"): p.get("value", "") for p in failing.iter("property")}
    assert str(props["kernel"]).startswith("6.1") and Path(str(props["artifacts"])).is_dir()
    known = cases["browser-known[arm64]"]
    (skipped,) = known.iter("skipped")  # junit has no xfail: pytest writes it as skipped
    assert "seed 002" in (skipped.get("message") or "") or "clear_page" in str(skipped.attrib)
