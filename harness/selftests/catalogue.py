"""Which mm selftests memharness runs and how (harness/selftests/tests.toml), and where a
source tree keeps them."""

from dataclasses import dataclass
from pathlib import Path

from harness.datafile import load_toml, reject_unknown
from harness.errors import UserError

TESTS = Path(__file__).with_name("tests.toml")
# Where the mm selftests live: renamed from vm to mm in 6.3.
DIRECTORIES = ("tools/testing/selftests/mm", "tools/testing/selftests/vm")


@dataclass(frozen=True)
class Selftest:
    name: str  # the binary, as the selftests Makefile names it
    summary: str
    runs: tuple[tuple[str, ...], ...]  # argument lists, one run each (run_vmtests.sh's)
    requires: tuple[str, ...] = ()  # kernel options

    def run_name(self, args: tuple[str, ...]) -> str:
        return " ".join((self.name, *args))


def load_tests(path: Path = TESTS) -> tuple[dict[str, Selftest], tuple[str, ...]]:
    """({name: test}, the default selection)."""
    data = load_toml(path, "selftests table")
    reject_unknown(data, ("default", "tests"), f"selftests table {path}")
    tests = {}
    for name, entry in data["tests"].items():
        reject_unknown(entry, ("summary", "runs", "requires"), f"selftest {name} in {path}")
        runs = tuple(tuple(str(a) for a in run) for run in entry["runs"])
        tests[name] = Selftest(name, entry["summary"], runs, tuple(entry.get("requires", ())))
    return tests, tuple(data["default"])


def choose(names: str | None, path: Path = TESTS) -> list[Selftest]:
    """The tests ``--tests`` names (comma-separated; None: the default), or a one-line error."""
    tests, default = load_tests(path)
    wanted = (
        [n.strip() for n in names.split(",") if n.strip()] if names is not None else list(default)
    )
    unknown = [n for n in wanted if n not in tests]
    if unknown or not wanted:
        raise UserError(
            f"unknown selftest {', '.join(unknown) or '(none given)'}: use any of "
            f"{', '.join(sorted(tests))}"
        )
    return [tests[n] for n in dict.fromkeys(wanted)]


def selftests_dir(tree: Path) -> Path:
    """The tree's mm selftests directory; a one-line error when it has none."""
    for rel in DIRECTORIES:
        if (tree / rel / "Makefile").is_file():
            return tree / rel
    raise UserError(f"{tree} has no {' or '.join(DIRECTORIES)}: pass a kernel tree as --src")


def check_present(tree: Path, tests: list[Selftest], origin: str) -> None:
    """Refuses a test whose source the tree lacks (cow arrived in 6.2, gup_longterm in 6.5):
    the mm selftests of a newer tree run on older kernels, so say which to pass."""
    directory = selftests_dir(tree)
    absent = [t.name for t in tests if not (directory / f"{t.name}.c").is_file()]
    if absent:
        raise UserError(
            f"{origin} has no {', '.join(absent)} in {directory.relative_to(tree)}: pass "
            "--src with a newer tree, e.g. --src debian:6.12 (the mm selftests of a newer "
            "kernel run on older ones and skip what those lack)"
        )
