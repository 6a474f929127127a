"""The HTML report in a real browser: Debian's headless Chromium prints the page of a real run
to PDF, and pdftotext reads back what a person would see (text of the table, the sections, the
SVG memory map's labels).  The run has a passing collision scenario, a hotplug scenario that
fails a step, and seed 002's arm64 bug as a registered known issue."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.cli import memharness

CATALOGUE = """
[[scenario]]
name = "browser-collision"
arch = "x86_64"
summary = "legacy pmem in the lower half of section 8"
layout = { kind = "legacy", memory = "2G", pmem = [{ start = "0x40000000", size = "64M" }] }
modes = ["fsdax-mem"]
walkers = ["kpageflags"]

[[scenario]]
name = "browser-failing"
arch = "x86_64"
summary = "a pc-dimm plugged, then a guest step that fails"
layout = { kind = "hotplug", memory = "1G", slots = 4, maxmem = "4G" }
walkers = ["kpageflags"]
steps = [
  { plug = "pc-dimm", id = "dimm0", size = "128M" },
  { online = "dimm0", zone = "movable" },
  { guest = "echo browser-check; exit 3" },
]

[[scenario]]
name = "browser-known"
arch = "arm64"
summary = "seed 002 without a declared known bug: met as a registered known issue"
layout = { kind = "hotplug", memory = "2G", mem_limit = "1G" }
cmdline = ["rodata=off"]
walkers = ["kpageflags"]
steps = [
  { module = "mh_hotplug" },
  { add_memory = "hp0", start = "0x80000000", size = "1G" },
  { online = "hp0", zone = "movable" },
  { offline_and_remove_memory = "hp0", start = "0x88000000", size = "128M" },
  { guest = "dd if=/dev/zero of=/tmp/mh-fill bs=1M count=256 && rm /tmp/mh-fill" },
]
"""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(*args: str) -> None:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: make setup installs Debian's chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    where = tmp_path_factory.mktemp("browser")
    catalogue = where / "catalogue.toml"
    catalogue.write_text(CATALOGUE)
    page, data = where / "report.html", where / "report.json"
    done = memharness(
        "run",
        "--catalogue", str(catalogue),
        "--artifacts", str(where / "runs"),
        "--html", str(page),
        "--json", str(data),
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-2000:])
    return page, json.loads(data.read_text())


def test_what_a_person_sees(report: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    page, data = report
    pdf = tmp_path / "report.pdf"
    chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    seen = " ".join(text.split())
    for visible in (
        "Scenarios (3)",
        "Failures (1)",
        "browser-failing (x86_64): failed",
        "check failed",  # the failed step, with the command's exit status
        "Known issues (1; they do not fail the run)",
        "seed 002",
        "BUG: unable to handle kernel paging request in clear_page",
        # the SVG memory map: labels of the rows and the shared-section mark
        "section 8 @ 0x40000000",
        "shared: RAM and device memory",
        "device memory (ZONE_DEVICE)",
        # the hotplug picture: one row per memory block
        "memory blocks (rows) after each step",
        "console log",
        "transcript",
        "reproducer",
    ):
        assert visible in seen, f"{visible!r} is not visible in the rendered report"
    results = {r["scenario"]: r for r in data["results"]}  # type: ignore[attr-defined]
    assert results["browser-collision"]["verdict"] == "passed"
    assert results["browser-known"]["verdict"] == "known issue"


def test_links_reach_the_run_directories(report: tuple[Path, dict[str, object]]) -> None:
    page, _ = report
    html = page.read_text()
    hrefs = [h.split("'")[0] for h in html.split("href='")[1:] if not h.startswith("#")]
    assert len(hrefs) >= 9, hrefs
    for href in hrefs:
        assert (page.parent / href).is_file(), href


def test_screenshot_is_not_blank(report: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    page, _ = report
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1300,1100", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, len(data)
