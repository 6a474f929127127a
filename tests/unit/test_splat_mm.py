"""memharness's own splat cases (tests/corpora/mm): every mm rule, with exact titles."""

from pathlib import Path

import pytest

from harness.splat.corpus import Case, load
from harness.splat.stream import SplatStream, parse_log

MM = Path(__file__).parents[1] / "corpora" / "mm"
CASES = load(MM)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_mm_case(case: Case) -> None:
    splats = parse_log(case.log)
    assert [s.title for s in splats][:1] == case.titles[:1]
    if case.frame:
        assert splats[0].frame == case.frame
    if case.kind and splats:
        assert splats[0].kind == case.kind


def test_poisoned_page_report_is_one_splat_with_its_dump_page_lines() -> None:
    (case,) = [c for c in CASES if c.name == "page-poisoned-format.log"]
    (splat,) = parse_log(case.log)
    assert splat.fatal
    assert "is uninitialized and poisoned" in splat.text.splitlines()[0]
    assert "page dumped because: VM_BUG_ON_PAGE(PagePoisoned(page))" in splat.text
    assert splat.frames[:3] == ("sparse_remove_section", "__remove_pages", "memunmap_pages")


def test_expected_memory_failure_answers_are_not_splats() -> None:
    (case,) = [c for c in CASES if c.name == "memory-failure-expected-format.log"]
    assert parse_log(case.log) == []


def test_a_panic_after_an_oops_is_part_of_it() -> None:
    (case,) = [c for c in CASES if c.name == "arm64-partial-hot-remove-format.log"]
    splats = parse_log(case.log)
    assert len(splats) == 1 and splats[0].fatal


def test_streaming_emits_a_report_as_soon_as_it_is_complete() -> None:
    (case,) = [c for c in CASES if c.name == "kpageflags-oops-format.log"]
    lines = case.log.splitlines(keepends=True)
    end = next(i for i, ln in enumerate(lines) if "---[ end trace" in ln)
    stream = SplatStream()
    early = [s for ln in lines[:end] for s in stream.feed(ln)]
    assert early == []  # still open: the trace may go on
    done = stream.feed(lines[end])
    assert [s.title for s in done] == [case.titles[0]]
    assert stream.finish() == []


def test_same_bug_same_title_across_timestamps_and_addresses() -> None:
    (case,) = [c for c in CASES if c.name == "page-poisoned-format.log"]
    shifted = case.log.replace("[   4", "[ 100").replace("ffffea0004100000", "ffffea0007f00000")
    shifted = shifted.replace("page-flags.h:502", "page-flags.h:498")
    assert parse_log(shifted)[0].title == parse_log(case.log)[0].title


def test_printk_caller_context_keeps_interleaved_reports_apart() -> None:
    log = "\n".join(
        [
            "[   10.000000][  T100] ------------[ cut here ]------------",
            "[   10.000001][  T100] WARNING: CPU: 0 PID: 100 at mm/x.c:1 foo_walk+0x1/0x2",
            "[   10.000002][  T200] unrelated: message from another task",
            "[   10.000003][  T100] Call Trace:",
            "[   10.000004][  T200]  other_task_frame+0x1/0x2",
            "[   10.000005][  T100]  foo_walk+0x1/0x2",
            "[   10.000006][  T100]  walk_pfns+0x1/0x2",
            "[   10.000007][  T100] ---[ end trace 0000000000000000 ]---",
        ]
    )
    (splat,) = parse_log(log)
    assert splat.title == "WARNING in foo_walk"
    assert "other_task_frame" not in splat.frames
    assert "unrelated" not in splat.text


def test_duplicates_are_reported_once_in_order() -> None:
    oops = (
        "[ 1.0] ------------[ cut here ]------------\n"
        "[ 1.1] WARNING: CPU: 0 PID: 1 at mm/x.c:{n} bar+0x1/0x2\n"
        "[ 1.2] Call Trace:\n[ 1.3]  bar+0x1/0x2\n[ 1.4]  caller+0x1/0x2\n"
        "[ 1.5] ---[ end trace 0000000000000000 ]---\n"
    )
    log = oops.format(n=1) + oops.format(n=2) + oops.replace("bar", "baz").format(n=3)
    assert [s.title for s in parse_log(log)] == ["WARNING in bar", "WARNING in baz"]


# Message-only reports: the kernel's own printk formats (net/core/dev.c netdev_wait_allrefs,
# mm/pgtable-generic.c pmd_clear_bad, mm/swapfile.c, fs/file_table.c, kernel/irq/spurious.c,
# mm/filemap.c dio_warn_stale_pagecache), no BUG/WARNING header: bugs all the same.
@pytest.mark.parametrize(
    ("line", "title"),
    [
        (
            "[   13.0] mm/pgtable-generic.c:53: bad pmd 00000000a1b2c3d4(8000000012345067)",
            "BUG: bad pmd in mm/pgtable-generic.c",
        ),
        (
            "[   13.0] mm/pgtable-generic.c:35: bad pgd (____ptrval____)(0)",
            "BUG: bad pgd in mm/pgtable-generic.c",
        ),
        ("[   14.0] swap_free: Bad swap file entry 3c00000000000001", "swap: Bad swap file entry"),
        ("[   14.0] get_swap_device: Bad swap offset entry 0400000", "swap: Bad swap offset entry"),
        ("[   15.0] VFS: Close: file count is 0", "VFS: Close: file count is NUM"),
        (
            '[   16.0] irq 11: nobody cared (try booting with the "irqpoll" option)',
            "irq: nobody cared",
        ),
        (
            "[   17.0] Page cache invalidation failure on direct I/O.  Possible data corruption "
            "due to collision with buffered I/O!",
            "Page cache invalidation failure on direct I/O: possible data corruption",
        ),
    ],
)
def test_message_only_reports(line: str, title: str) -> None:
    (splat,) = parse_log(f"[    1.0] Linux version 6.1.0\n{line}\n[   20.0] next\n")
    assert splat.title == title


def test_message_only_rules_need_a_kernel_line() -> None:
    """A guest command printing the same words (no printk timestamp) is not a kernel report."""
    assert parse_log("VFS: Close: file count is 0\nswap_free: Bad swap file entry 1\n") == []
