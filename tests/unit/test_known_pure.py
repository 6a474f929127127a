"""Known-issues registry, JUnit and run comparison (pure: data in, data out)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ARM64, X86_64
from harness.errors import UserError
from harness.kernel.model import Kernel
from harness.kernel.version import VersionRange, parse_version
from harness.known.registry import REGISTRY, load_registry
from harness.outcome import Outcome
from harness.report.compare import compare
from harness.report.junit import to_junit
from harness.result import RunResult
from harness.run import RunReport
from harness.splat.model import Splat

POISON = "VM_BUG_ON_PAGE(PagePoisoned(page)) in clear_hwpoisoned_pages"


def kernel(tmp_path: Path, release: str, options: str, arch: Any = X86_64) -> Kernel:
    config = tmp_path / f"config-{release}-{arch.name}"
    config.write_text(options)
    return Kernel(arch, release, tmp_path, "pvh", "test", "id", config=config)


@pytest.mark.parametrize(
    ("text", "version"),
    [("6.1.0-57-amd64", (6, 1, 0)), ("6.12.117", (6, 12, 117)), ("6.1", (6, 1, 0)), ("x", None)],
)
def test_parse_version(text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == version


def test_version_range() -> None:
    r = VersionRange.parse(">=6.1, <6.2")
    assert r.contains((6, 1, 0)) and r.contains((6, 1, 192))
    assert not r.contains((6, 2, 0)) and not r.contains((6, 0, 9)) and not r.contains((6, 12, 1))
    assert VersionRange.parse("").contains((1, 0, 0))
    with pytest.raises(UserError, match="is not like"):
        VersionRange.parse("~6.1")


def splat(title: str, text: str = "") -> Splat:
    return Splat(title, "BUG", None, text or title)


# The faults as arm64 prints them (from memharness's runs on its 6.1 builds).
VMEMMAP_FAULT = (
    "Unable to handle kernel paging request at virtual address fffffc0001332000\n"
    "  FSC = 0x06: level 2 translation fault\n"
    "[fffffc0001332000] pgd=100000007fddb003, p4d=100000007fddb003, pud=100000007fdda003, "
    "pmd=0000000000000000\n"
)
PUD_FAULT = """Unable to handle kernel paging request at virtual address ffff000040007000
  FSC = 0x05: level 1 translation fault
[ffff000040007000] pgd=180000007fff9003, p4d=180000007fff9003, pud=0000000000000000
"""
PAGING = "BUG: unable to handle kernel paging request in "


def test_the_built_in_registry_applies_by_arch_version_and_config(tmp_path: Path) -> None:
    registry = load_registry(REGISTRY)
    debug = "CONFIG_DEBUG_VM=y\nCONFIG_DEBUG_VM_PGFLAGS=y\nCONFIG_MEMORY_FAILURE=y\n"
    debug += "CONFIG_MEMORY_HOTREMOVE=y\n"
    assert registry.known(splat(POISON), kernel(tmp_path, "6.1.192", debug)) is not None
    # the same title on a kernel without DEBUG_VM cannot be this entry: it is new
    no_debug = kernel(tmp_path, "6.1.192", "CONFIG_MEMORY_FAILURE=y\n")
    assert registry.known(splat(POISON), no_debug) is None
    # nor on another series
    assert registry.known(splat(POISON), kernel(tmp_path, "6.12.117", debug)) is None
    hotremove = "CONFIG_MEMORY_HOTREMOVE=y\n"
    arm = kernel(tmp_path, "6.1.192", hotremove, ARM64)
    # the vmemmap bug is its fault, whichever function met it first
    for function in ("free_hotplug_page_range", "page_zone", "some_future_caller"):
        assert registry.known(splat(PAGING + function, VMEMMAP_FAULT), arm)
    assert (
        registry.known(
            splat(PAGING + "page_zone", VMEMMAP_FAULT), kernel(tmp_path, "6.1.190", hotremove)
        )
        is None
    )  # x86_64
    # ... only without MEMCG (64-byte struct pages cannot have it)
    with_memcg = kernel(tmp_path, "6.1.193", hotremove + "CONFIG_MEMCG=y\n", ARM64)
    assert registry.known(splat(PAGING + "page_zone", VMEMMAP_FAULT), with_memcg) is None
    # seed 002 is a level 1 fault with pud=0, with MEMCG too
    seed = registry.known(splat(PAGING + "__arch_copy_from_user", PUD_FAULT), with_memcg)
    assert seed is not None and "seed 002" in seed.upstream
    # a paging request fault of another kind stays new
    other = "Unable to handle kernel NULL pointer dereference at virtual address 0\n"
    assert registry.known(splat(PAGING + "memunmap_pages", other), arm) is None


def test_possibly_fixed(tmp_path: Path) -> None:
    registry = load_registry(REGISTRY)
    debug = "CONFIG_DEBUG_VM=y\nCONFIG_DEBUG_VM_PGFLAGS=y\nCONFIG_MEMORY_FAILURE=y\n"
    debug += "CONFIG_MEMORY_HOTREMOVE=y\n"
    k = kernel(tmp_path, "6.1.192", debug)
    applicable = {i.id for i in registry.applicable(k)}
    assert POISON in applicable
    assert {i.id for i, _ in registry.possibly_fixed([k], [])} == applicable
    met = {i.id for i, _ in registry.possibly_fixed([k], [("x86_64", splat(POISON))])}
    assert met == applicable - {POISON}
    other_arch = {i.id for i, _ in registry.possibly_fixed([k], [("arm64", splat(POISON))])}
    assert POISON in other_arch  # a splat on another arch does not count for this kernel


def test_a_race_is_known_where_it_fired_and_never_possibly_fixed(tmp_path: Path) -> None:
    """The seed-000 memunmap race, from the console of the run that met it: known on a DEBUG_VM
    ZONE_DEVICE 6.1 kernel, flaky, so a run that missed it does not call it fixed."""
    from harness.splat import parse_log

    log = Path(__file__).parents[1] / "corpora" / "mm" / "stable-page-flags-x86_64-real.log"
    (met,) = [s for s in parse_log(log.read_text()) if "stable_page_flags" in s.title]
    registry = load_registry(REGISTRY)
    config = "CONFIG_DEBUG_VM=y\nCONFIG_ZONE_DEVICE=y\nCONFIG_MEMORY_HOTREMOVE=y\n"
    debug = kernel(tmp_path, "6.1.192", config)
    entry = registry.known(met, debug)
    assert entry is not None and entry.flaky and "seed 000" in entry.name
    assert entry in registry.applicable(debug)
    assert entry not in {i for i, _ in registry.possibly_fixed([debug], [])}
    # the same function faulting on another address is another bug: new
    other = Splat(met.title, met.kind, met.frame, met.text.replace("fffffffffffffffe", "0"))
    assert registry.known(other, debug) is None
    assert registry.known(met, kernel(tmp_path, "6.1.192", "CONFIG_ZONE_DEVICE=y\n")) is None


def test_the_race_under_kasan_is_the_same_known_issue_for_both_of_its_reports(
    tmp_path: Path,
) -> None:
    """On the KASAN build the seed-000 read of the poisoned compound_head is KASAN's wild-read
    report, then a fault inside kasan_report printing that address's (absent) shadow: the
    detector changes with the build, the bug does not, so both splats are the DEBUG_VM
    entry's; KASAN's read of any other address in the same function stays new."""
    from harness.splat import parse_log

    log = Path(__file__).parents[1] / "corpora" / "mm" / "stable-page-flags-kasan-x86_64-real.log"
    report, fault = parse_log(log.read_text())
    assert report.title == "KASAN: out-of-bounds Read in stable_page_flags"
    assert fault.title == "general protection fault in stable_page_flags"
    registry = load_registry(REGISTRY)
    config = "CONFIG_DEBUG_VM=y\nCONFIG_ZONE_DEVICE=y\nCONFIG_MEMORY_HOTREMOVE=y\nCONFIG_KASAN=y\n"
    build = kernel(tmp_path, "6.1.192", config)
    for met in (report, fault):
        entry = registry.known(met, build)
        assert entry is not None and entry.flaky and "seed 000" in entry.name
    for met in (report, fault):
        other = Splat(met.title, met.kind, met.frame, met.text.replace("fffffffffffffffe", "1000"))
        assert registry.known(other, build) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[issue]]\ntitle = "x"\nflaky = "yes"\nupstream = "u"\nwhy = "w"\n', "flaky must be"),
        ('[[issue]]\ntitle = "x"\nupstream = "u"\nwhy = "w"\ntitel = "y"\n', "unknown key 'titel'"),
        ('[[issue]]\ntitle_regex = "("\nupstream = "u"\nwhy = "w"\n', "bad regex"),
        ('[[issue]]\ntitle = "x"\ntext_regex = "["\nupstream = "u"\nwhy = "w"\n', "bad regex"),
        ('[[issue]]\ntitle = "x"\nupstream = "u"\nwhy = "w"\n' * 2, "registered twice: x"),
        ('[[issue]]\ntitle = "x"\nupstream = "u"\n', "why must be a non-empty string"),
        ('[[issue]]\ntitle = "x"\nupstream = "u"\nwhy = "w"\nversions = "6.1"\n', "is not like"),
        ('[[issue]]\nupstream = "u"\nwhy = "w"\n', "exactly one of title and title_regex"),
        ("[issues]\n", "unknown key 'issues'"),
    ],
)
def test_bad_registries_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=needle) as caught:
        load_registry.__wrapped__(path)
    assert "\n" not in str(caught.value)


def run_result(
    name: str, outcome: Outcome, titles: tuple[str, ...] = (), known: tuple[str, ...] = ()
) -> RunResult:
    entry = {"title": "", "upstream": "not reported", "why": "w"}
    details = {
        "failures": [],
        "splat_classes": [
            {
                "title": t,
                "scenario_known_bug": False,
                "known_issue": {**entry, "title": t} if t in known else None,
            }
            for t in titles
        ],
    }
    splats = [Splat(t, "BUG", None, f"{t}\nCall Trace:\n frame+0x1/0x2") for t in titles]
    machine = {"arch": "x86_64", "kernel": {"release": "6.1.192"}, "console_tail": "log\x07"}
    return RunResult(
        name,
        outcome,
        titles[0] if titles else "ok",
        Path("/a"),
        machine,
        splats,
        [],
        "memharness run",
        2.0,
        details,
    )


def test_junit_carries_failures_known_issues_and_skips() -> None:
    report = RunReport(
        results=[
            run_result("a", Outcome.PASS),
            run_result("b", Outcome.KERNEL_SPLAT, ("NEW BUG in x",)),
            run_result("c", Outcome.KERNEL_SPLAT, (POISON,), (POISON,)),
            run_result("d", Outcome.SKIPPED),
            run_result("e", Outcome.INFRA_ERROR),
        ],
        kernels={"x86_64": {"release": "6.1.192", "origin": "built"}},
        catalogue={"sha256": "abc"},
    )
    suite = ET.fromstring(to_junit(report))
    assert suite.attrib["tests"] == "5" and suite.attrib["failures"] == "1"
    assert suite.attrib["errors"] == "1"
    cases = {c.attrib["name"]: c for c in suite.iter("testcase")}
    failure = cases["b"].find("failure")
    assert failure is not None and failure.attrib["message"] == "NEW BUG in x"
    assert "Call Trace" in (failure.text or "")
    skipped = cases["c"].find("skipped")
    assert skipped is not None and POISON in skipped.attrib["message"]
    assert "not reported" in skipped.attrib["message"]
    assert cases["d"].find("skipped") is not None and cases["e"].find("error") is not None
    assert cases["a"].find("failure") is None and cases["a"].find("skipped") is None
    out = cases["a"].find("system-out")
    assert out is not None and out.text == "log\ufffd"  # no control characters in XML
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.find("properties") or []}
    assert props["kernel.x86_64"] == "6.1.192"


def run_json(rows: list[tuple[str, str, str, list[str]]], sha: str = "s") -> dict[str, Any]:
    """(scenario, outcome, verdict, new titles) rows as `run --json` writes them."""
    return {
        "catalogue": {"sha256": sha},
        "results": [
            {
                "scenario": n,
                "arch": "x86_64",
                "outcome": o,
                "verdict": v,
                "reason": "r",
                "new_splats": t,
                "known_issues": [POISON] if v == "known issue" else [],
            }
            for n, o, v, t in rows
        ],
    }


def test_compare_categories() -> None:
    old = run_json(
        [
            ("a", "pass", "passed", []),
            ("b", "kernel-splat", "failed", ["X"]),
            ("c", "kernel-splat", "failed", ["Y"]),
            ("d", "pass", "passed", []),
            ("e", "pass", "passed", []),
        ]
    )
    new = run_json(
        [
            ("a", "kernel-splat", "failed", ["Z"]),
            ("b", "kernel-splat", "failed", ["X"]),
            ("c", "pass", "passed", []),
            ("d", "hang", "failed", []),
            ("e", "kernel-splat", "known issue", []),
        ]
    )
    out = compare(old, new)
    assert [(i["scenario"], i["what"]) for i in out["new"]] == [("a", "Z")]
    assert [i["scenario"] for i in out["still_failing"]] == ["b"]
    assert [i["scenario"] for i in out["fixed"]] == ["c"]
    assert [i["scenario"] for i in out["flaky"]] == ["d"]
    assert [(i["scenario"], i["what"]) for i in out["known"]] == [("e", POISON)]
    assert json.dumps(out)


def test_compare_lists_a_known_title_once() -> None:
    """A scenario's own known bug that is also a registered known issue is one known item."""
    row = {
        "scenario": "p",
        "arch": "arm64",
        "outcome": "kernel-splat",
        "reason": POISON,
        "verdict": "known bug (expected)",
        "known_bug": POISON,
        "new_splats": [],
        "known_issues": [POISON],
    }
    run = {"catalogue": {"sha256": "s"}, "results": [row]}
    assert compare(run, run)["known"] == [{"scenario": "p", "arch": "arm64", "what": POISON}]


def test_compare_refuses_other_catalogues() -> None:
    with pytest.raises(UserError, match="different catalogues"):
        compare(run_json([], "one"), run_json([], "two"))


def test_a_scenarios_known_bug_is_expected_only_where_the_registry_places_it(
    tmp_path: Path,
) -> None:
    """Seed 002 is fixed after 6.1: partial-hot-remove-arm64's declared bug is expected on
    6.1 and not on 6.12, where a pass is a pass (and a reproduction would be new)."""
    registry = load_registry(REGISTRY)
    title = PAGING + "clear_page"  # partial-hot-remove-arm64's known_bug
    hotremove = "CONFIG_MEMORY_HOTREMOVE=y\nCONFIG_MEMCG=y\n"
    assert registry.not_on(title, kernel(tmp_path, "6.1.0-57-arm64", hotremove, ARM64)) is None
    why = registry.not_on(title, kernel(tmp_path, "6.12.117+deb12-arm64", hotremove, ARM64))
    assert why is not None and "seed 002" in why and "<6.2" in why
    # a title nobody registered is the scenario's own business: expected everywhere
    assert registry.not_on("BUG: something else", kernel(tmp_path, "6.12.1", "", ARM64)) is None


@pytest.mark.parametrize(
    ("release", "refuses"),
    [
        ("6.1.0-57-amd64", False),
        ("6.1.192", False),
        ("6.2.0", True),
        ("6.12.117+deb12-amd64", True),
    ],
)
def test_kernel_behaviour_table(tmp_path: Path, release: str, refuses: bool) -> None:
    from harness.kernel.behaviour import behaves

    k = kernel(tmp_path, release, "")
    assert behaves(k, "online_refuses_hwpoisoned_block") is refuses
    with pytest.raises(UserError, match="no kernel behaviour"):
        behaves(k, "made_up")


def test_one_bug_two_spellings_across_versions(tmp_path: Path) -> None:
    """The soft offline / offline race keeps its order in 6.12, but its title names the macro's
    argument (`p` in 6.1, `page` in 6.12): both are the one entry, on both series."""
    from harness.splat import parse_log

    log = Path(__file__).parents[1] / "corpora" / "mm" / "get-hwpoison-page-6.12-x86_64-real.log"
    (met,) = parse_log(log.read_text())
    registry = load_registry(REGISTRY)
    debug = "CONFIG_DEBUG_VM=y\nCONFIG_DEBUG_VM_PGFLAGS=y\nCONFIG_MEMORY_FAILURE=y\n"
    debug += "CONFIG_MEMORY_HOTREMOVE=y\n"
    on_612 = registry.known(met, kernel(tmp_path, "6.12.117", debug))
    old = Splat(met.title.replace("(page)", "(p)"), met.kind, met.frame, met.text)
    on_61 = registry.known(old, kernel(tmp_path, "6.1.192", debug))
    assert on_612 is not None and on_612 is on_61 and "race" in on_612.name
    assert registry.known(met, kernel(tmp_path, "6.13.0", debug)) is None  # not seen there


PIPE = "BUG: unable to handle kernel paging request in page_cache_pipe_buf_release"
BIO = "BUG: unable to handle kernel paging request in __bio_release_pages"


def real_splat(name: str) -> Splat:
    """The first splat of one of memharness's captured logs (tests/corpora/mm)."""
    from harness.splat import parse_log

    log = Path(__file__).parents[1] / "corpora" / "mm" / name
    return parse_log(log.read_text())[0]


def test_a_scenarios_own_bug_is_the_registry_entry_not_only_its_title(tmp_path: Path) -> None:
    """devdax-held-disable declares the 6.1 title (the pipe drops the reference); on 6.12 the
    io_uring buffer drops it first.  One entry recognises both real reports, so both are the
    scenario's own bug where the entry applies, and neither is on a kernel outside its range."""
    registry = load_registry(REGISTRY)
    v61 = kernel(tmp_path, "6.1.0-57-amd64", "CONFIG_ZONE_DEVICE=y\n")
    v612 = kernel(tmp_path, "6.12.117+deb12-amd64", "CONFIG_ZONE_DEVICE=y\n")
    v615 = kernel(tmp_path, "6.15.1", "CONFIG_ZONE_DEVICE=y\n")
    io_uring = real_splat("pin-outlives-devdax-6.12-x86_64-real.log")
    assert io_uring.title == "BUG: unable to handle kernel paging request in io_buffer_unmap"
    assert registry.same_bug(PIPE, real_splat("pipe-ref-outlives-pmem-x86_64-real.log"), v61)
    assert registry.same_bug(PIPE, io_uring, v612)
    assert not registry.same_bug(PIPE, io_uring, v615)  # unplaced there: new
    # a fault on the vmemmap with no reference being dropped is another bug, same title form
    other = real_splat("stable-page-flags-x86_64-real.log")
    assert "paging request in stable_page_flags" in other.title
    assert not registry.same_bug(PIPE, other, v612)
    assert registry.same_bug(other.title, other, v615)  # the title itself, anywhere


@pytest.mark.parametrize(
    "log", ["dio-ref-outlives-pmem-x86_64-real.log", "dio-ref-outlives-pmem-debug-x86_64-real.log"]
)
def test_an_o_direct_read_completing_into_freed_memmap_is_the_same_bug_as_the_pipe(
    tmp_path: Path, log: str
) -> None:
    """fsdax-direct-io-unbind's real 6.1 splats: the block layer's reference of an in-flight
    O_DIRECT read is dropped at completion after nd_pmem's unbind freed the memmap.  Stock 6.1
    faults in __bio_release_pages, the DEBUG_VM build in bio_first_folio (not inlined there):
    both are the scenario's declared bug and the pipe's entry (no pgmap reference)."""
    registry = load_registry(REGISTRY)
    met = real_splat(log)
    v61 = kernel(tmp_path, "6.1.0-57-amd64", "CONFIG_ZONE_DEVICE=y\n")
    entry = registry.known(met, v61)
    assert entry is not None and entry is registry.known(
        real_splat("pipe-ref-outlives-pmem-x86_64-real.log"), v61
    )
    assert registry.same_bug(BIO, met, v61)
    assert registry.known(met, kernel(tmp_path, "6.1.0-58-amd64", "")) is None  # no ZONE_DEVICE
