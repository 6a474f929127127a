"""pytest plugin: booted guests as fixtures, kernel splats as test failures.

Options: ``--arch x86_64,arm64`` (tests using the ``arch`` fixture run once per arch),
``--kernel [ARCH=]PATH`` (repeatable; default Debian's kernel), ``--artifacts DIR``,
``--accel tcg|kvm|auto``.

Fixtures: ``arch``, ``kernel``, ``guest_image``, ``prepared`` (arch → kernel and image),
``vm`` (a booted guest), ``vm_factory`` (boot guests with custom options), ``scenario_vm``
(a guest laid out as a built-in collision scenario, in a chosen namespace mode).  With
``--scenarios`` the catalogue itself is collected as tests.  A splat printed
while a test runs fails the test with the splat's title and first line, unless the test is
marked ``allow_splats`` (it then asserts on ``vm.splats()`` itself).  Tests marked
``x86_64`` or ``arm64`` run on that arch only.
"""

import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.arch import ARCHES, ArchProfile, parse_arches
from harness.errors import MemharnessError
from harness.image.builder import IMAGE_KINDS, GuestImage, prepare_image
from harness.kernel.model import Kernel
from harness.kernel.resolve import resolve_kernel, spec_for_arch
from harness.vm.machine import VM, VMOptions

VMS_KEY = pytest.StashKey[list[VM]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memharness")
    group.addoption(
        "--arch",
        default=os.environ.get("MEMHARNESS_ARCH", "x86_64,arm64"),
        help="guest arches to test, comma separated (default: %(default)s)",
    )
    group.addoption(
        "--kernel",
        action="append",
        default=[],
        metavar="[ARCH=]PATH",
        help="kernel to boot (repeatable, per arch); default: Debian's package",
    )
    group.addoption(
        "--image",
        default=os.environ.get("MEMHARNESS_IMAGE", "initramfs"),
        metavar="|".join((*IMAGE_KINDS, "PATH")),
        help="guest userspace for the memharness fixtures and --scenarios: a name or the path "
        "of your own disk image (default: %(default)s)",
    )
    group.addoption(
        "--artifacts",
        default=os.environ.get("MEMHARNESS_ARTIFACTS", "memharness-artifacts"),
        help="where each test's run directories go (default: %(default)s)",
    )
    group.addoption(
        "--accel", default=os.environ.get("MEMHARNESS_ACCEL", "tcg"), choices=("tcg", "kvm", "auto")
    )
    group.addoption(
        "--scenarios",
        action="store_true",
        help="collect the scenario catalogue as tests (one per scenario and arch)",
    )
    group.addoption(
        "--catalogue",
        default=None,
        metavar="FILE",
        help="with --scenarios: a catalogue TOML of your own (default: the built-in one)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker in (
        "allow_splats: splats do not fail this test; it checks vm.splats() itself",
        *(f"{name}: runs on the {name} guest only" for name in ARCHES),
    ):
        config.addinivalue_line("markers", marker)
    if config.getoption("--scenarios"):
        # The catalogue joins the files to collect; pytest_collect_file turns it into items.
        config.args.append(str(_catalogue_path(config)))


def selected_arches(config: pytest.Config) -> list[ArchProfile]:
    return parse_arches(str(config.getoption("--arch")))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "arch" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "arch" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test chooses its own arches
    arches = selected_arches(metafunc.config)
    only = {m.name for m in metafunc.definition.iter_markers() if m.name in ARCHES}
    if only:
        arches = [a for a in arches if a.name in only]
    metafunc.parametrize("arch", arches, ids=[a.name for a in arches], scope="session")


def image_kind(config: pytest.Config) -> str:
    """--image: which guest userspace the fixtures and collected scenarios boot."""
    return str(config.getoption("--image"))


@pytest.fixture(scope="session")
def prepared(request: pytest.FixtureRequest) -> Callable[[ArchProfile], tuple[Kernel, GuestImage]]:
    """arch → (kernel, guest image) for the selected --kernel, prepared once per session."""
    cache: dict[str, tuple[Kernel, GuestImage]] = {}

    def get(arch: ArchProfile) -> tuple[Kernel, GuestImage]:
        if arch.name not in cache:
            spec = spec_for_arch([str(v) for v in request.config.getoption("--kernel")], arch)
            try:
                kernel = resolve_kernel(arch, spec)
                cache[arch.name] = (kernel, prepare_image(kernel, image_kind(request.config)))
            except MemharnessError as exc:
                pytest.fail(f"memharness: {exc}", pytrace=False)
        return cache[arch.name]

    return get


@pytest.fixture(scope="session")
def kernel(
    prepared: Callable[[ArchProfile], tuple[Kernel, GuestImage]], arch: ArchProfile
) -> Kernel:
    return prepared(arch)[0]


@pytest.fixture(scope="session")
def guest_image(
    prepared: Callable[[ArchProfile], tuple[Kernel, GuestImage]], arch: ArchProfile
) -> GuestImage:
    return prepared(arch)[1]


def _test_dir(request: pytest.FixtureRequest, arch: ArchProfile) -> Path:
    root = Path(str(request.config.getoption("--artifacts")))
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    return root / "pytest" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _stop_all(started: list[VM]) -> None:
    """Stops and reaps every VM a test booted, and writes their splats."""
    for vm in started:
        vm.stop()
        vm.write_splats()


@pytest.fixture
def vm_factory(
    request: pytest.FixtureRequest, arch: ArchProfile, kernel: Kernel, guest_image: GuestImage
) -> Iterator[Callable[..., VM]]:
    """boot(**VMOptions fields) → a started VM, stopped and reaped after the test."""
    started: list[VM] = []
    request.node.stash[VMS_KEY] = started
    base = _test_dir(request, arch)

    def boot(**options: Any) -> VM:
        options.setdefault("accel", str(request.config.getoption("--accel")))
        vm = VM(kernel, guest_image, base / f"vm{len(started)}", VMOptions(**options))
        started.append(vm)
        vm.start()
        return vm

    try:
        yield boot
    finally:
        _stop_all(started)


@pytest.fixture
def vm(vm_factory: Callable[..., VM]) -> VM:
    """A booted guest of the ``arch`` under test with the selected kernel."""
    machine = vm_factory()
    if not machine.ready:
        pytest.fail(f"guest did not boot: {machine.facts()}", pytrace=False)
    return machine


class ScenarioVM:
    """A booted guest laid out as a built-in (collision) scenario: ``vm``, the ``run`` that
    prepared it (its step record), and the planned map as data (``plan``, the schema of
    `memharness layout --json`; ``shared`` the sections RAM and device memory share)."""

    def __init__(self, vm: VM, run: Any, plan: dict[str, Any]) -> None:
        self.vm, self.run, self.plan = vm, run, plan
        self.shared: list[int] = list(plan["collision_sections"])

    def sh(self, command: str, timeout: float = 120.0) -> str:
        """Runs a shell command in the guest; its stdout, or a test failure with its output."""
        result = self.vm.run(command, timeout=timeout)
        if result.exit_code != 0:
            pytest.fail(f"`{command}` exited {result.exit_code}: {result.stderr!r}")
        return result.stdout.decode(errors="replace")


@pytest.fixture
def scenario_vm(
    request: pytest.FixtureRequest,
    prepared: Callable[[ArchProfile], tuple[Kernel, GuestImage]],
) -> Iterator[Callable[..., ScenarioVM]]:
    """``scenario_vm("legacy-lower-half", mode="devdax-mem")`` boots the guest with that
    scenario's layout, loads its modules, checks the layout is what was planned and switches
    the namespace to ``mode`` (None: as booted).  Stopped and reaped after the test."""
    from harness.arch import get_arch
    from harness.catalogue.model import CATALOGUE, load_catalogue
    from harness.collision.modes import MODES
    from harness.collision.runner import CollisionRun
    from harness.run import plan_scenario, vm_options

    started: list[VM] = []
    request.node.stash[VMS_KEY] = started

    def boot(name: str, mode: str | None = None) -> ScenarioVM:
        by_name = {s.name: s for s in load_catalogue(CATALOGUE)}
        if name not in by_name or by_name[name].hotplug:
            pytest.fail(f"scenario_vm: {name!r} is not a built-in collision scenario")
        scenario = by_name[name]
        arch = get_arch(scenario.arch)
        kernel, image = prepared(arch)
        planned = plan_scenario(scenario, kernel)
        options = vm_options(scenario, planned, str(request.config.getoption("--accel")))
        vm = VM(kernel, image, _test_dir(request, arch) / name, options)
        started.append(vm)
        vm.start()
        if not vm.ready:
            pytest.fail(f"guest did not boot: {vm.facts()}", pytrace=False)
        run = CollisionRun(scenario, kernel, vm, planned.layout)
        run.load_modules()
        run.verify_layout()
        if mode is not None and not run.switch(MODES[mode]):
            pytest.fail(f"could not switch to {mode}: {run.failures}", pytrace=False)
        if run.failures:
            pytest.fail(f"{name}: {run.failures[0]}", pytrace=False)
        return ScenarioVM(vm, run, planned.layout.to_json())

    try:
        yield boot
    finally:
        _stop_all(started)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or item.get_closest_marker("allow_splats"):
        return
    for vm in item.stash.get(VMS_KEY, []):
        splats = vm.splats()
        if splats and not report.failed:
            first = splats[0]
            report.outcome = "failed"
            report.longrepr = (
                f"kernel splat: {first.title}\n{first.first_line}\nartifacts: {vm.artifacts}"
            )
            return


# -- the catalogue as pytest items: `pytest --scenarios [--catalogue FILE] -k collision` ------

RESULTS_KEY = pytest.StashKey[dict[str, Any]]()


class ScenarioItem(pytest.Item):
    """One scenario on one arch with the session's kernel for that arch.  Outcomes map as users
    expect: pass → passed; its own known bug or only registered known issues → xfail with the
    title; a new splat, a failed check or a hang → failed with the title and first lines;
    skipped → skipped with the reason; an infrastructure error → error (raised in setup)."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(scenario.arch)
        kind = "hotplug" if scenario.hotplug else "collision"
        self.extra_keyword_matches.update({kind, scenario.arch})
        self.result: Any = None

    def setup(self) -> None:
        from harness.arch import get_arch
        from harness.errors import InfraError
        from harness.known.registry import load_registry
        from harness.outcome import Outcome
        from harness.run import check_scenarios, run_scenario

        config = self.config
        arch = get_arch(self.scenario.arch)
        spec = spec_for_arch([str(v) for v in config.getoption("--kernel")], arch)
        cache = config.stash.setdefault(RESULTS_KEY, {})
        try:
            if arch.name not in cache:
                kernel = resolve_kernel(arch, spec)
                cache[arch.name] = (kernel, prepare_image(kernel, image_kind(config)))
            kernel, image = cache[arch.name]
            check_scenarios([self.scenario], {arch.name: kernel})
            root = Path(str(config.getoption("--artifacts"))) / "pytest"
            self.result = run_scenario(
                self.scenario,
                kernel,
                image,
                root,
                str(config.getoption("--accel")),
                spec,
                load_registry(),
            )
        except MemharnessError as exc:
            raise InfraError(f"memharness: {exc}") from None
        self.user_properties += [
            ("kernel", kernel.release),
            ("kernel_origin", kernel.origin),
            ("artifacts", str(self.result.artifacts)),
            ("reproducer", self.result.reproducer),
        ]
        if self.result.outcome == Outcome.INFRA_ERROR:
            raise InfraError(f"infrastructure error: {self.result.reason}")

    def runtest(self) -> None:
        from harness.report import summary

        result = self.result
        verdict = summary.verdict(result)
        row = summary.row(result)
        if verdict == summary.PASSED:
            return
        if verdict == summary.SKIPPED:
            pytest.skip(result.reason)
        if verdict in (summary.EXPECTED, summary.KNOWN_ISSUE):
            titles = row["known_issues"] or [row["known_bug"]]
            pytest.xfail(f"{verdict}: {'; '.join(t for t in titles if t)}")
        first = result.splats[0] if result.splats else None
        lines = [f"{verdict}: {result.outcome}: {result.reason}"]
        if row["new_splats"]:
            lines.append(f"new: {'; '.join(row['new_splats'])}")
        if first is not None:
            lines += first.text.splitlines()[:8]
        lines += [f"artifacts: {result.artifacts}", f"reproduce: {result.reproducer}"]
        pytest.fail("\n".join(lines), pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, MemharnessError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario {self.name}"


def _catalogue_path(config: pytest.Config) -> Path:
    from harness.catalogue.model import CATALOGUE

    given = config.getoption("--catalogue")
    return Path(given).resolve() if given else CATALOGUE


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """With --scenarios, the catalogue file is a test file: one item per scenario and arch."""
    config = parent.config
    if config.getoption("--scenarios") and file_path == _catalogue_path(config):
        return CatalogueFile.from_parent(parent, path=file_path)
    return None


class CatalogueFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from harness.catalogue.model import load_catalogue

        arches = {a.name for a in selected_arches(self.config)}
        try:
            catalogue = load_catalogue(self.path)
        except MemharnessError as exc:
            raise pytest.UsageError(f"memharness: {exc}") from None
        for scenario in catalogue:
            if scenario.arch in arches:
                yield ScenarioItem.from_parent(
                    self, name=f"{scenario.name}[{scenario.arch}]", scenario=scenario
                )
