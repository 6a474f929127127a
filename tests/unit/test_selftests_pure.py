"""mm selftests: KTAP parsing on real output, run verdicts, registry lookups, the tests table,
and the Debian image's pure parts (SSH keys, port leases, the shell's ssh command line).

The fixtures under data/selftests are real output of 6.12's selftests on memharness's 6.1
debug build (x86_64), captured by `memharness selftests` (its per-run logs without the command
and exit lines it frames them with).  Their counts are checked against
the kernel's own "# Totals:" line, not against what this parser once said.
"""

import re
import shlex
from pathlib import Path

import pytest

from harness.arch import X86_64
from harness.errors import UserError
from harness.image.rootfs import RootfsRecipe, new_key
from harness.kernel.model import Kernel
from harness.known.registry import load_registry
from harness.selftests import ktap
from harness.selftests.catalogue import check_present, choose, load_tests
from harness.selftests.runner import judge_run
from harness.vm.channel import argv_script
from harness.vm.ports import lease_port
from harness.vm.ssh import parse_public_key

DATA = Path(__file__).parent / "data" / "selftests"
TOTALS = re.compile(r"# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+)")
# Those that ran to the end (split_huge_page_test bails out before any result).
FIXTURES = sorted(f for f in DATA.glob("*.log") if TOTALS.search(f.read_text()))


THP = "CONFIG_TRANSPARENT_HUGEPAGE=y\n"


def kernel(tmp_path: Path, release: str, options: str = THP) -> Kernel:
    config = tmp_path / f"config-{release}"
    config.write_text(options)
    return Kernel(X86_64, release, tmp_path, "pvh", "test", "id", config=config)


@pytest.mark.parametrize("log", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_parse_agrees_with_the_kernels_own_totals(log: Path) -> None:
    text = log.read_text()
    totals = TOTALS.search(text)
    assert totals is not None
    parsed = ktap.parse(text)
    counted = [sum(s.status == k for s in parsed.subtests) for k in ("pass", "fail", "xfail")]
    assert counted == [int(totals.group(i)) for i in (1, 2, 3)]
    assert sum(s.status == "skip" for s in parsed.subtests) == int(totals.group(5))
    assert len(parsed.subtests) == parsed.planned


def test_cow_output_is_a_pass_with_its_skips_and_reasons() -> None:
    parsed = ktap.parse((DATA / "cow-6.12-on-6.1-x86_64.log").read_text())
    assert ktap.verdict(0, parsed) == "pass"
    skipped = [s for s in parsed.subtests if s.status == "skip"]
    assert skipped and all(s.reason for s in skipped)
    assert any(s.reason == "PIN_LONGTERM_TEST_START failed" for s in skipped)
    assert all(not s.description.startswith("#") for s in parsed.subtests)


@pytest.mark.parametrize(
    ("exit_code", "text", "expected"),
    [
        (0, "TAP version 13\n1..2\nok 1 a\nok 2 b\n", "pass"),
        (0, "TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n", "fail"),  # exit 0 does not undo it
        (1, "TAP version 13\n1..3\nok 1 a\n", "fail"),  # fewer results than planned
        (0, "1..3\nok 1 a\n", "fail"),  # a crash after a plan, even with exit 0
        (4, "1..2\nok 1 # SKIP no x\nok 2 # SKIP no y\n", "skip"),
        (0, "1..2\nok 1 # SKIP no x\nok 2 # SKIP no y\n", "skip"),
        (0, "1..1\nok 1 # XFAIL expected\n", "pass"),
        (0, "1..1\nok 1 # XPASS unexpected\n", "fail"),
        (0, "no TAP here\n", "pass"),  # 6.1's gup_test: the exit status says it all
        (1, "no TAP here\n", "fail"),
        (4, "", "skip"),
        (None, "1..1\nok 1 a\n", "fail"),  # never finished (timeout, guest died)
        (139, "", "fail"),  # killed by a signal
    ],
)
def test_verdict(exit_code: int | None, text: str, expected: str) -> None:
    assert ktap.verdict(exit_code, ktap.parse(text)) == expected


def test_last_message_skips_tap_lines() -> None:
    text = (DATA / "split_huge_page_test-6.12-on-6.1-x86_64.log").read_text()
    assert ktap.last_message(text).startswith("Incorrect RssAnon value. Before:")
    assert ktap.last_message("1..1\nBail out! cannot open x\n# Totals: pass:0\n") == "cannot open x"


def test_a_registered_failure_is_known_only_on_the_kernels_it_names(tmp_path: Path) -> None:
    registry = load_registry()
    tests, _ = load_tests()
    text = (DATA / "split_huge_page_test-6.12-on-6.1-x86_64.log").read_text()
    test = tests["split_huge_page_test"]
    old = judge_run(test, (), 1, text, [], {}, registry, kernel(tmp_path, "6.1.192"))
    assert old.status == "known" and old.known, old
    new = judge_run(test, (), 1, text, [], {}, registry, kernel(tmp_path, "6.12.117"))
    assert new.status == "fail" and new.reason.startswith("Incorrect RssAnon value"), new


def test_a_splat_fails_a_passing_run_unless_registered(tmp_path: Path) -> None:
    registry = load_registry()
    tests, _ = load_tests()
    text = (DATA / "gup_test_-u-6.12-on-6.1-x86_64.log").read_text()
    k = kernel(tmp_path, "6.1.192")
    title = "WARNING in try_grab_folio"
    red = judge_run(tests["gup_test"], ("-u",), 0, text, [title], {}, registry, k)
    assert red.status == "fail" and title in red.reason
    known = judge_run(tests["gup_test"], ("-u",), 0, text, [title], {title: "entry"}, registry, k)
    assert known.status == "known" and known.known == ["entry"]


def test_unregistered_failing_subtest_names_itself(tmp_path: Path) -> None:
    tests, _ = load_tests()
    text = (
        "1..2\n# [RUN] fork ... with base page\nok 1 No leak from parent into child\n"
        "# [RUN] vmsplice() + unmap in child ... with base page\n"
        "not ok 2 Leak from parent into child\n"
    )
    k = kernel(tmp_path, "6.1.192")
    record = judge_run(tests["cow"], (), 1, text, [], {}, load_registry(), k)
    assert record.status == "fail"
    assert record.reason == (
        "1 failing subtest(s), first: [RUN] vmsplice() + unmap in child ... with base page: "
        "Leak from parent into child"
    )


def test_tests_table_and_choice() -> None:
    tests, default = load_tests()
    assert set(default) <= set(tests) and "cow" in default and "gup_test" in default
    assert tests["gup_test"].requires == ("GUP_TEST",)
    assert [t.name for t in choose("gup_test, cow,cow")] == ["gup_test", "cow"]
    with pytest.raises(UserError, match="unknown selftest nope: use any of"):
        choose("cow,nope")
    for empty in (" , ", ""):
        with pytest.raises(UserError, match="none given"):
            choose(empty)


def test_a_tree_without_the_test_names_a_newer_source(tmp_path: Path) -> None:
    vm = tmp_path / "tools/testing/selftests/vm"
    vm.mkdir(parents=True)
    (vm / "Makefile").write_text("# 6.1\n")
    (vm / "gup_test.c").write_text("")
    tests, _ = load_tests()
    check_present(tmp_path, [tests["gup_test"]], "linux 6.1")
    with pytest.raises(UserError, match=r"linux 6.1 has no cow in tools/testing/selftests/vm: "):
        check_present(tmp_path, [tests["cow"], tests["gup_test"]], "linux 6.1")
    with pytest.raises(UserError, match="has no tools/testing/selftests/mm or"):
        check_present(tmp_path / "nothing", [tests["cow"]], "x")


def test_generated_keys_are_what_openssh_and_paramiko_read() -> None:
    private, public = new_key()
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.startswith("ssh-ed25519 ")
    assert parse_public_key(public + " comment").get_name() == "ssh-ed25519"
    assert new_key()[1] != public


def test_rootfs_recipe_has_what_the_image_needs() -> None:
    recipe = RootfsRecipe.load()
    assert {"openssh-server", "openssh-sftp-server", "ndctl", "busybox-static"} <= set(
        recipe.packages
    )
    assert recipe.free_mib >= 128


def test_port_leases_never_hand_out_a_held_port(tmp_path: Path) -> None:
    leases = [lease_port(tmp_path) for _ in range(20)]
    ports = [lease.port for lease in leases]
    assert len(set(ports)) == len(ports)
    for lease in leases:
        lease.release()
        lease.release()  # idempotent


def test_ssh_command_arrives_as_argv() -> None:
    """ssh joins its remote arguments into one shell line: the shell quotes them first."""
    argv = ("sh", "-c", "echo \"$0  x\" 'y'", "a b")
    assert shlex.split(argv_script(argv)) == list(argv)
