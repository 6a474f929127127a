"""The memharness command line: parses arguments into typed requests, calls the library, renders
the result.  No orchestration lives here (see harness/run.py and harness/session.py).

Exit codes: a user error (bad input) is 2 with one line naming the fix, printed before QEMU
starts.  ``boot`` exits with the guest command's own status; when the run ends in another way it
follows ``git bisect run``: 1 for a kernel splat or a hang, 125 for an infrastructure error.
``run`` exits 0 when every scenario passed or reproduced its declared known bug, 1 when any
failed or passed unexpectedly, 125 when none could run; ``run --bisect`` counts any splat as
bad (see harness/report/summary.py).  A signal ends any command with 128 + the signal (130 for
SIGINT, 143 for SIGTERM) after QEMU is stopped and what finished is written.
"""

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import log as logsetup
from harness import proc
from harness.arch import ARCHES, get_arch, parse_arches
from harness.catalogue.model import CATALOGUE
from harness.errors import InfraError, UserError
from harness.kernel.build import DEFAULT_FRAGMENTS
from harness.known.registry import REGISTRY
from harness.outcome import BISECT_EXIT, Outcome

if TYPE_CHECKING:
    from harness.result import RunResult
    from harness.vm.channel import CommandResult

DEFAULT_ARTIFACTS = Path(os.environ.get("MEMHARNESS_ARTIFACTS", "memharness-artifacts"))
MAX_SECONDS = 7 * 24 * 3600.0  # a week: anything longer is a typo, not a plan
log = logging.getLogger("harness.cli")


# -- argument types: every number is checked when parsed, before anything starts --------------


def seconds(text: str) -> float:
    """A finite, positive number of seconds, at most a week."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text} is not a usable timeout: give seconds above 0 and at most {MAX_SECONDS:.0f}"
        )
    return value


def count(low: int, high: int) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value

    parse.__name__ = f"count {low}..{high}"
    return parse


class Parser(argparse.ArgumentParser):
    """argparse with memharness's error form: one line naming the fix, exit 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"memharness: error: {self.prog}: {message}\n")


def _add_catalogue(p: argparse.ArgumentParser) -> None:
    """--catalogue: every command that names scenarios reads them from the same place."""
    p.add_argument(
        "--catalogue",
        type=Path,
        default=CATALOGUE,
        help="scenario catalogue TOML (default: the built-in one)",
    )


def _add_registry(p: argparse.ArgumentParser) -> None:
    """--registry: every command that classifies splats reads known issues from one place."""
    p.add_argument(
        "--registry",
        type=Path,
        default=REGISTRY,
        help="known-issues registry TOML (default: the built-in one)",
    )


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    # SUPPRESS: a subcommand's default must not undo `memharness -v run`.
    group.add_argument(
        "-v",
        "--verbose",
        action="store_const",
        const=1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="also debug lines on stderr",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=-1,
        dest="verbosity",
        default=argparse.SUPPRESS,
        help="only warnings and errors on stderr",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel",
        metavar="[ARCH=]PATH",
        action="append",
        default=[],
        help="bzImage/Image/vmlinux, a build dir, debian:PKG, or debian:SERIES (debian:6.12: "
        "that series' newest package); repeat as ARCH=PATH for several arches (default: "
        "Debian's kernel package, 6.1)",
    )
    p.add_argument("--modules", metavar="DIR", help="INSTALL_MOD_PATH of --kernel's modules")
    _add_image(p)
    p.add_argument(
        "--keep",
        metavar="N",
        type=count(1, 1_000_000),
        help="after the run, keep only the N newest run directories under --artifacts",
    )
    _add_artifacts_and_accel(p)


def _add_image(p: argparse.ArgumentParser) -> None:
    from harness.image.builder import IMAGE_KINDS

    p.add_argument(
        "--image",
        default="initramfs",
        metavar="|".join((*IMAGE_KINDS, "PATH")),
        help="guest userspace: the busybox initramfs (default), a Debian bookworm root "
        "filesystem on a disk, reachable over SSH (needs kconfigs/userspace.config in the "
        "kernel), or the PATH of your own disk image (raw or qcow2; a getty on the serial "
        "console; login from MEMHARNESS_IMAGE_LOGIN, MEMHARNESS_IMAGE_PASSWORD; commands run "
        "over the console, stdout and stderr merged)",
    )


def _add_debian_guest(p: argparse.ArgumentParser, scenario_help: str) -> None:
    """What `shell` and `selftests` share: one arch, a kernel, the Debian image, a scenario."""
    p.add_argument("--arch", default="x86_64", help=f"one of {', '.join(ARCHES)}")
    _add_common(p)
    p.set_defaults(image="debian")
    p.add_argument("--scenario", help=scenario_help)
    _add_catalogue(p)


def _add_artifacts_and_accel(p: argparse.ArgumentParser) -> None:
    """Where run directories go and how guests are accelerated: every command that boots."""
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        type=Path,
        default=DEFAULT_ARTIFACTS,
        help="where run directories are written (default: %(default)s)",
    )
    p.add_argument(
        "--accel",
        default=os.environ.get("MEMHARNESS_ACCEL", "tcg"),
        choices=("tcg", "kvm", "auto"),
        help="tcg (default), kvm, or auto: probe KVM briefly, fall back to TCG",
    )


# -- commands ---------------------------------------------------------------------------------


def cmd_boot(args: argparse.Namespace) -> int:
    from harness.kernel.resolve import spec_for_arch
    from harness.result import RunInterrupted
    from harness.session import boot_and_run

    argv = list(args.command) if args.command else ["uname", "-a"]
    arch = get_arch(args.arch)
    try:
        result, cmd_result = boot_and_run(
            arch=arch,
            kernel_spec=spec_for_arch(args.kernel, arch),
            modules=args.modules,
            argv=argv,
            timeout=args.timeout,
            artifacts_root=args.artifacts,
            accel=args.accel,
            boot_timeout=args.boot_timeout,
            image=args.image,
            over_ssh=args.ssh,
        )
    except RunInterrupted as stop:
        with proc.shielded():
            _render_boot(args, stop.result, None)
        return stop.signal.exit_code
    _render_boot(args, result, cmd_result)
    _rotate(args)
    exit_code = cmd_result.exit_code if cmd_result else None
    if result.outcome in (Outcome.PASS, Outcome.COMMAND_FAILED) and exit_code is not None:
        return exit_code
    return BISECT_EXIT[result.outcome]


def _render_boot(
    args: argparse.Namespace, result: "RunResult", cmd_result: "CommandResult | None"
) -> None:
    from harness.session import boot_json

    if args.json:
        print(json.dumps(boot_json(result, cmd_result)))
        sys.stdout.flush()
        return
    if cmd_result is not None:
        sys.stdout.buffer.write(cmd_result.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(cmd_result.stderr)
        sys.stderr.flush()
    note = result.machine.get("accel_note")
    if note:
        log.info("%s", note)
    boot = f"boot {result.boot_seconds:.1f} s" if result.boot_seconds else "no boot"
    log.info(
        "%s: %s [%s, %s, artifacts: %s]",
        result.outcome,
        result.reason,
        result.machine["arch"],
        boot,
        result.artifacts,
    )


def cmd_shell(args: argparse.Namespace) -> int:
    from harness.kernel.resolve import spec_for_arch
    from harness.result import RunInterrupted
    from harness.shell import ShellRequest, open_shell

    arch = get_arch(args.arch)
    command = tuple(args.command[1:] if args.command[:1] == ["--"] else args.command)
    request = ShellRequest(
        arch=arch,
        kernel_spec=spec_for_arch(args.kernel, arch),
        modules=args.modules,
        artifacts=args.artifacts,
        accel=args.accel,
        image=args.image,
        scenario=args.scenario,
        until=args.until,
        command=command,
        catalogue=args.catalogue,
    )
    try:
        result, status = open_shell(request)
    except RunInterrupted as stop:
        log.warning("interrupted; the record is in %s", stop.result.artifacts)
        return stop.signal.exit_code
    titles = [s.title for s in result.splats]
    if titles:
        log.warning("%d splat(s) during the session: %s", len(titles), "; ".join(titles))
    log.info("%s: %s [artifacts: %s]", result.outcome, result.reason, result.artifacts)
    _rotate(args)
    if result.outcome not in (Outcome.PASS, Outcome.COMMAND_FAILED):
        return BISECT_EXIT[result.outcome]
    return status


def cmd_selftests(args: argparse.Namespace) -> int:
    """Exit 0 when every run passed, was skipped or failed only in registered ways; 1 when
    one failed or could not run; an infrastructure error exits like `boot` does."""
    from harness.kernel.resolve import spec_for_arch
    from harness.result import RunInterrupted
    from harness.selftests import report as render
    from harness.selftests.runner import SelftestsRequest, run_selftests

    if args.image != "debian":
        raise UserError("memharness selftests needs --image debian: the initramfs has no sshd")
    arch = get_arch(args.arch)
    request = SelftestsRequest(
        arch=arch,
        kernel_spec=spec_for_arch(args.kernel, arch),
        modules=args.modules,
        artifacts=args.artifacts,
        src=args.src,
        tests=args.tests,
        scenario=args.scenario,
        accel=args.accel,
        catalogue=args.catalogue,
        registry=args.registry,
    )
    try:
        report = run_selftests(request)
    except RunInterrupted as stop:
        log.warning("interrupted; the record is in %s", stop.result.artifacts)
        return stop.signal.exit_code
    with proc.shielded():
        print(render.table(report))
        if args.json:
            _write_report(args.json, render.to_json(report) + "\n")
        if args.junit:
            _write_report(args.junit, render.to_junit(report) + "\n")
    _rotate(args)
    record = report.record
    if record is not None and record.outcome == Outcome.INFRA_ERROR:
        log.error("infrastructure error: %s", record.reason)
        return BISECT_EXIT[record.outcome]
    return 1 if report.failed else 0


def cmd_splats(args: argparse.Namespace) -> int:
    from harness.splat import Splat, parse_log
    from harness.splat.report import splats_json
    from harness.splat.symbolize import Location, decode

    reports: list[tuple[str, list[Splat]]] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path} does not exist: pass console log files")
        # Console logs are bytes from a guest: undecodable ones are kept as U+FFFD.
        reports.append((str(path), parse_log(path.read_bytes().decode(errors="replace"))))
    located: dict[str, list[Location]] = {}
    if args.vmlinux:
        arch = get_arch(args.arch)
        for _, splats in reports:
            located.update(decode(splats, Path(args.vmlinux), arch))
    if args.json:
        data = [{"file": f, "splats": splats_json(sp, located)} for f, sp in reports]
        print(json.dumps(data, indent=2))
        return 0
    for file, splats in reports:
        print(f"{file}: {len(splats)} splat(s)")
        for s in splats:
            flag = " [corrupted]" if s.corrupted else ""
            print(f"  {s.kind:<14} {s.title}{flag}")
            for loc in located.get(s.title, []):
                print(f"      {loc.frame:<40} {' <- '.join(loc.where) or '(no debug info)'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: the scenario catalogue on the chosen arches, a table, exit 0 only if all
    pass.  Every input is checked (and every kernel and image prepared) before QEMU starts."""
    from harness.report import summary
    from harness.run import (
        RunReport,
        RunRequest,
        names,
        prepare_selection,
        run_selection,
        select_scenarios,
    )
    from harness.shard import parse_shard

    request = RunRequest(
        arches=tuple(parse_arches(args.arch)),
        scenarios=args.scenario,
        kernels=tuple(args.kernel),
        modules=args.modules,
        artifacts=args.artifacts,
        accel=args.accel,
        catalogue=args.catalogue,
        registry=args.registry,
        jobs=args.jobs,
        shard=parse_shard(args.shard) if args.shard else None,
        durations=args.durations,
        snapshots=not args.fresh_boots,
        image=args.image,
    )
    show = logsetup.progress_enabled()

    def started(i: int, total: int, scenario: Any, kernel: Any) -> None:
        if show:
            print(
                f"[{i}/{total}] {scenario.name} ({scenario.arch}, {kernel.release}) ...",
                end="",
                flush=True,
                file=sys.stderr,
            )

    def finished(result: Any) -> None:
        if show:
            print(f" {result.outcome} ({result.seconds:.1f} s)", file=sys.stderr, flush=True)

    scenarios = select_scenarios(request)
    try:
        selection = prepare_selection(request, scenarios, progress=lambda m: log.info("%s", m))
    except KeyboardInterrupt as exc:
        report = RunReport(not_run=names(scenarios), interrupted=proc.as_interrupted(exc))
    else:
        report = run_selection(selection, started, finished)
    with proc.shielded():
        if report.results:
            print(summary.table(report.results, report.possibly_fixed))
        if report.interrupted:
            log.warning(
                "interrupted by %s; not run: %s",
                report.interrupted.name,
                ", ".join(report.not_run) or "nothing",
            )
        if args.json:
            text = summary.to_json(report, bisect=args.bisect, bisect_title=args.bisect_title)
            _write_report(args.json, text + "\n")
        if args.html:
            from harness.report import page

            html_path = Path(args.html)
            text = page.to_html(
                report.results,
                report.possibly_fixed,
                page.locations(report.results),
                html_path.resolve().parent,
            )
            _write_report(args.html, text)
        if args.junit:
            from harness.report.junit import to_junit

            _write_report(args.junit, to_junit(report) + "\n")
    if report.interrupted:
        return report.interrupted.exit_code
    _rotate(args)
    return summary.exit_code(report.results, args.bisect, args.bisect_title)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare, load_run, render

    old, new = load_run(Path(args.old)), load_run(Path(args.new))
    result = compare(old, new, args.old, args.new)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if result["new"] else 0


def cmd_bisect(args: argparse.Namespace) -> int:
    """Bisects by one splat title; 0 when one commit is named, 1 when only a range is, 2 for
    bad input (endpoints that do not behave as claimed included)."""
    from harness.bisect import report
    from harness.bisect.driver import Bisect, BisectRequest

    request = BisectRequest(
        tree=Path(args.src),
        good=args.good,
        bad=args.bad,
        arch=get_arch(args.arch),
        scenarios=args.scenario,
        fragments=tuple(args.fragment or DEFAULT_FRAGMENTS),
        artifacts=args.artifacts,
        title=args.title,
        runs=args.runs,
        max_skips=args.max_skips,
        accel=args.accel,
        catalogue=args.catalogue,
        registry=args.registry,
    )
    result = Bisect(request, progress=lambda m: log.info("%s", m)).run()
    with proc.shielded():
        print(report.text(result))
        if args.json:
            _write_report(args.json, report.to_json(result) + "\n")
        if args.html:
            _write_report(args.html, report.to_html(result))
    return result.exit_code


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.report.compare import load_run
    from harness.report.merge import merge, render

    merged = merge([(name, load_run(Path(name))) for name in args.shards])
    print(render(merged))
    if args.json:
        _write_report(args.json, json.dumps(merged, indent=2) + "\n")
    return int(merged["exit_code"])


def _write_report(name: str, text: str) -> None:
    path = Path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise InfraError(f"cannot write {path}: {exc.strerror}") from None


def _rotate(args: argparse.Namespace) -> None:
    if getattr(args, "keep", None):
        from harness.artifacts import rotate

        removed = rotate(args.artifacts, args.keep)
        if removed:
            log.info("removed %d old run directories (--keep %d)", len(removed), args.keep)


def cmd_clean(args: argparse.Namespace) -> int:
    from harness.artifacts import rotate
    from harness.tempdirs import sweep_stale

    removed = rotate(args.artifacts, args.keep)
    stale = sweep_stale()
    print(
        f"removed {len(removed)} run directories from {args.artifacts} (kept the newest "
        f"{args.keep}) and {len(stale)} stale socket directories"
    )
    if args.exports:
        from harness.kernel.source import remove_exports

        trees, freed = remove_exports()
        print(f"removed {trees} exported kernel trees and their builds ({freed / 2**30:.1f} GiB)")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.catalogue.model import load_catalogue

    catalogue = load_catalogue(args.catalogue)
    if args.json:
        print(json.dumps([s.to_json() for s in catalogue], indent=2))
        return 0
    width = max(len(s.name) for s in catalogue)
    print(f"{'scenario':<{width}}  {'arch':<7} {'seeds':<9} summary")
    for s in catalogue:
        print(f"{s.name:<{width}}  {s.arch:<7} {','.join(s.seeds) or '-':<9} {s.summary}")
    return 0


def cmd_layout(args: argparse.Namespace) -> int:
    from harness.catalogue.model import load_catalogue, select
    from harness.hotplug.plan import plan_steps, render_steps, step_json
    from harness.layout.planner import plan, render

    arch = get_arch(args.arch)
    chosen = select(load_catalogue(args.catalogue), args.scenario, [arch])
    if len(chosen) != 1:
        raise UserError("pass one scenario: memharness layout --arch A --scenario S")
    scenario = chosen[0]
    p = plan(scenario.layout, arch)
    steps = plan_steps(p, scenario.steps).steps if scenario.hotplug else ()
    if args.json:
        data = {"scenario": scenario.name, **p.to_json(), "steps": [step_json(s) for s in steps]}
        print(json.dumps(data, indent=2))
    else:
        print(render(p))
        if steps:
            print(render_steps(steps))
    return 0


def cmd_kernel_build(args: argparse.Namespace) -> int:
    from harness.kernel.build import build_kernel, check_host, fragment_files
    from harness.kernel.source import debian_source, user_source

    arch = get_arch(args.arch)
    if args.commit and not args.src:
        raise UserError("--commit needs --src: the git tree the commit is in")
    fragments = args.fragment if args.fragment else list(DEFAULT_FRAGMENTS)
    check_host(arch)  # tools and fragments first: one line, before any download
    fragment_files(fragments, arch)
    if args.src and args.src.startswith("debian:"):
        if args.commit:
            raise UserError("--commit needs a git tree as --src, not a Debian source package")
        source = debian_source(args.src.removeprefix("debian:"))
    else:
        source = user_source(Path(args.src), args.commit) if args.src else debian_source()
    out = build_kernel(arch, source, fragments, config_only=args.config_only, jobs=args.jobs)
    print(out)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from harness.debian import DebianArchive

    for name in args.arch.split(","):
        arch = get_arch(name)
        log.info("refreshing Debian %s package lists", arch.debian_arch)
        DebianArchive(arch).update()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="memharness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    boot = sub.add_parser(
        "boot",
        help="boot a kernel and run one guest command",
        description="Boots a kernel and runs CMD in the guest exactly as exec would get it "
        "(each argument arrives unchanged; for a shell script use -- sh -c 'SCRIPT').",
    )
    boot.add_argument("--arch", default="x86_64", help=f"one of {', '.join(ARCHES)}")
    _add_common(boot)
    boot.add_argument("--timeout", type=seconds, default=300.0, help="command timeout in seconds")
    boot.add_argument("--boot-timeout", type=seconds, default=180.0, help="boot timeout in seconds")
    boot.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    boot.add_argument(
        "--ssh", action="store_true", help="run CMD over SSH (with --image debian), not the agent"
    )
    boot.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- CMD [ARG...] (default: uname -a)"
    )
    boot.set_defaults(func=cmd_boot)

    shell = sub.add_parser(
        "shell",
        help="a root shell in a guest (Debian image), optionally after a scenario's steps",
        description="Boots (the scenario's layout with --scenario), plays the scenario's steps "
        "up to --until STEP, then logs you in over SSH; the console is captured throughout and "
        "its splats are reported when you log out.  With CMD, runs it instead of a shell.",
    )
    _add_debian_guest(shell, "boot this scenario's layout and play its steps")
    shell.add_argument("--until", metavar="STEP", help="stop the scenario after this step")
    shell.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- CMD [ARG...] (default: a shell)"
    )
    shell.set_defaults(func=cmd_shell)

    st = sub.add_parser(
        "selftests",
        help="run the kernel's mm selftests in a guest (Debian image) with a memharness layout",
        description="Builds tools/testing/selftests/mm (vm before 6.3) of --src for the guest "
        "arch, boots the Debian image with --scenario's layout and steps, runs each chosen "
        "test as run_vmtests.sh does and reports every run; a splat during a run fails it.",
    )
    _add_debian_guest(
        st, "the guest's layout and steps (default: selftests-layout, -arm64 on arm64)"
    )
    st.add_argument(
        "--src",
        metavar="TREE",
        help="kernel tree (or debian:SERIES) whose selftests to build (default: the kernel's own "
        "source; a newer tree's selftests run on older kernels)",
    )
    st.add_argument("--tests", metavar="A,B", help="selftests to run (default: cow,gup_test)")
    st.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    st.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one case per run)")
    _add_registry(st)
    st.set_defaults(func=cmd_selftests)

    splats = sub.add_parser("splats", help="find kernel splats in console logs")
    splats.add_argument("files", nargs="+", metavar="FILE")
    splats.add_argument("--json", action="store_true")
    splats.add_argument(
        "--vmlinux", metavar="PATH", help="decode stack frames to file:line with this vmlinux"
    )
    splats.add_argument("--arch", default="x86_64", help="the vmlinux's arch")
    splats.set_defaults(func=cmd_splats)

    run = sub.add_parser("run", help="the main job: run the scenario catalogue, print a table")
    run.add_argument("--arch", default="x86_64,arm64", help="comma-separated arches")
    run.add_argument("--scenario", help="comma-separated scenario names (default: all)")
    run.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    run.add_argument("--html", metavar="FILE", help="also write an HTML report")
    run.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one case per scenario)")
    run.add_argument(
        "-j",
        "--jobs",
        type=count(1, 1024),
        default=os.cpu_count() or 1,
        help="scenarios run at once, each with its own VMs (default: the core count, %(default)s)",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="run only shard K of N (deterministic, balanced by recorded durations); "
        "`memharness merge` joins the shards' --json files",
    )
    run.add_argument(
        "--durations",
        type=Path,
        metavar="FILE",
        help="a previous `run --json` whose times balance --shard and order -j's lanes, longest "
        "first (default: the built-in table)",
    )
    run.add_argument(
        "--fresh-boots",
        action="store_true",
        help="boot every phase of a scenario; by default a poison phase starts from the main "
        "boot's saved state after setup (the same guest, several seconds sooner under TCG)",
    )
    bisect = run.add_mutually_exclusive_group()
    bisect.add_argument(
        "--bisect-title",
        metavar="TITLE",
        help="for `git bisect run`: exit 1 only when this splat title reproduces, 0 when the "
        "run is clean or shows only known splats, 125 (skip) otherwise; the form to use on "
        "debug kernels, whose good commits splat with known bugs too",
    )
    bisect.add_argument(
        "--bisect",
        action="store_true",
        help="older form: any splat (known bugs too), hang or failed check exits 1; on a debug "
        "kernel this calls good commits bad (use --bisect-title)",
    )
    _add_registry(run)
    _add_common(run)
    _add_catalogue(run)
    run.set_defaults(func=cmd_run)

    comp = sub.add_parser(
        "compare", help="compare two `run --json` files: new, fixed, still failing, known, flaky"
    )
    comp.add_argument("old", metavar="OLD.json")
    comp.add_argument("new", metavar="NEW.json")
    comp.add_argument("--json", action="store_true")
    comp.set_defaults(func=cmd_compare)

    mrg = sub.add_parser(
        "merge", help="join the --json files of `run --shard K/N` jobs into one run report"
    )
    mrg.add_argument("shards", nargs="+", metavar="SHARD.json")
    mrg.add_argument("--json", metavar="FILE", help="write the merged run JSON here")
    mrg.set_defaults(func=cmd_merge)

    clean = sub.add_parser(
        "clean", help="remove old run directories and stale socket directories of dead runs"
    )
    clean.add_argument("--artifacts", metavar="DIR", type=Path, default=DEFAULT_ARTIFACTS)
    clean.add_argument(
        "--keep",
        metavar="N",
        type=count(0, 1_000_000),
        default=20,
        help="run directories to keep, newest first (default: %(default)s)",
    )
    clean.add_argument(
        "--exports",
        action="store_true",
        help="also remove the kernel trees exported for --commit, with their builds "
        "(run it while no build uses them)",
    )
    clean.set_defaults(func=cmd_clean)

    scenarios = sub.add_parser("scenarios", help="list the built-in scenarios")
    scenarios.add_argument("--json", action="store_true")
    _add_catalogue(scenarios)
    scenarios.set_defaults(func=cmd_scenarios)

    layout = sub.add_parser("layout", help="show a scenario's planned memory map")
    layout.add_argument("--arch", required=True)
    layout.add_argument("--scenario", required=True)
    layout.add_argument("--json", action="store_true")
    _add_catalogue(layout)
    layout.set_defaults(func=cmd_layout)

    kernel = sub.add_parser("kernel", help="build test kernels")
    kernel_sub = kernel.add_subparsers(dest="kernel_cmd", required=True, parser_class=Parser)
    build = kernel_sub.add_parser("build", help="build a kernel from kconfigs/ fragments")
    build.add_argument("--arch", default="x86_64")
    build.add_argument(
        "--src",
        metavar="DIR",
        help="kernel tree, or debian:SERIES for Debian's linux-source-SERIES (default: debian:6.1)",
    )
    build.add_argument("--commit", metavar="REV", help="build this commit of the --src git tree")
    build.add_argument(
        "--fragment",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="kconfigs/ topic or fragment file (repeatable; default: "
        f"{', '.join(DEFAULT_FRAGMENTS)})",
    )
    build.add_argument(
        "--config-only", action="store_true", help="stop after the validated .config"
    )
    build.add_argument("--jobs", type=count(1, 4096), help="make -j (default: the core count)")
    build.set_defaults(func=cmd_kernel_build)

    bis = sub.add_parser(
        "bisect",
        help="find the commit that introduced a splat title (git bisect in a worktree)",
        description="Bisects a kernel git tree by one splat title: a commit is bad only when "
        "the title reproduces; known splats are good, anything else (another new splat, a hang, "
        "an infrastructure error, a build failure) is a skip.  The tree's checkout is never "
        "touched: the work happens in a git worktree in the cache, built incrementally.",
    )
    bis.add_argument("--src", required=True, metavar="TREE", help="the kernel git tree")
    bis.add_argument("--good", required=True, metavar="REV", help="a commit without the bug")
    bis.add_argument("--bad", required=True, metavar="REV", help="a commit with the bug")
    bis.add_argument("--arch", default="x86_64", help=f"one of {', '.join(ARCHES)}")
    bis.add_argument("--scenario", required=True, help="comma-separated scenario names")
    bis.add_argument(
        "--title",
        help="the splat title to follow (default: the first at --bad that --good does not show)",
    )
    bis.add_argument(
        "--runs",
        type=count(1, 1000),
        help="runs per commit (default: from the rate measured in 3 runs at --bad, so that a "
        "bad commit is missed with under 1%% chance)",
    )
    bis.add_argument(
        "--max-skips",
        type=count(1, 1000),
        default=3,
        help="skipped commits in a row before stopping with a range (default: %(default)s)",
    )
    bis.add_argument(
        "--fragment",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="kconfigs/ topic or fragment file (repeatable; default: the kernel build defaults)",
    )
    bis.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    bis.add_argument("--html", metavar="FILE", help="also write an HTML report")
    _add_registry(bis)
    _add_artifacts_and_accel(bis)
    _add_catalogue(bis)
    bis.set_defaults(func=cmd_bisect)

    update = sub.add_parser("update", help="refresh the Debian package lists in the cache")
    update.add_argument("--arch", default=",".join(ARCHES))
    update.set_defaults(func=cmd_update)

    for p in (parser, boot, splats, run, comp, mrg, bis, clean, scenarios, layout, build, update):
        _add_verbosity(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    proc.install_signal_handlers()
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "command", None) and args.command[:1] == ["--"]:
            args.command = args.command[1:]
        logsetup.configure(getattr(args, "verbosity", 0))
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UserError as exc:
        print(f"memharness: error: {exc}", file=sys.stderr)
        return 2
    except InfraError as exc:
        print(f"memharness: infra-error: {exc}", file=sys.stderr)
        return 125
    except BrokenPipeError:
        # stdout's reader went away (`memharness scenarios | head`): exit as cat would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except KeyboardInterrupt as exc:
        signal = proc.as_interrupted(exc)
        print(f"memharness: interrupted by {signal.name}; QEMU stopped", file=sys.stderr)
        return signal.exit_code


if __name__ == "__main__":
    sys.exit(main())
