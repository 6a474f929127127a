"""The memharness command line.

Exit codes: a user error (bad input) is 2 with one line naming the fix, printed before QEMU
starts.  ``boot`` exits with the guest command's own status; when the run ends in another way it
follows ``git bisect run``: 1 for a kernel splat or a hang, 125 for an infrastructure error.
``run`` exits 0 when every scenario passed or reproduced its declared known bug, 1 when any
failed or passed unexpectedly, 125 when none could run; ``run --bisect`` counts any splat as
bad (see harness/report/summary.py).
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import proc
from harness.arch import ARCHES, get_arch, parse_arches
from harness.errors import InfraError, UserError
from harness.outcome import BISECT_EXIT, Outcome
from harness.scenario.model import CATALOGUE
from harness.splat.model import Splat

DEFAULT_ARTIFACTS = Path(os.environ.get("MEMHARNESS_ARTIFACTS", "memharness-artifacts"))


def _add_catalogue(p: argparse.ArgumentParser) -> None:
    """--catalogue: every command that names scenarios reads them from the same place."""
    p.add_argument(
        "--catalogue",
        type=Path,
        default=CATALOGUE,
        help="scenario catalogue TOML (default: the built-in one)",
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel",
        metavar="[ARCH=]PATH",
        action="append",
        default=[],
        help="bzImage/Image/vmlinux, a build dir or debian:PKG; repeat as ARCH=PATH for "
        "several arches (default: Debian's kernel package)",
    )
    p.add_argument("--modules", metavar="DIR", help="INSTALL_MOD_PATH of --kernel's modules")
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


def cmd_boot(args: argparse.Namespace) -> int:
    from harness.kernel.resolve import spec_for_arch
    from harness.session import boot_and_run

    command = " ".join(args.command) if args.command else "uname -a"
    arch = get_arch(args.arch)
    result, cmd_result = boot_and_run(
        arch=arch,
        kernel_spec=spec_for_arch(args.kernel, arch),
        modules=args.modules,
        command=command,
        timeout=args.timeout,
        artifacts_root=args.artifacts,
        accel=args.accel,
        boot_timeout=args.boot_timeout,
    )
    exit_code = cmd_result.exit_code if cmd_result else None
    if args.json:
        print(
            json.dumps(
                {
                    "outcome": str(result.outcome),
                    "exit_code": exit_code,
                    "stdout": cmd_result.stdout.decode(errors="replace") if cmd_result else "",
                    "stderr": cmd_result.stderr.decode(errors="replace") if cmd_result else "",
                    "artifacts": str(result.artifacts),
                    "boot_seconds": result.boot_seconds,
                    "reason": result.reason,
                    "splats": [s.title for s in result.splats],
                    "arch": result.machine["arch"],
                    "kernel": result.machine["kernel"],
                    "accel": result.machine["accel"],
                    "accel_note": result.machine["accel_note"],
                }
            )
        )
    elif cmd_result is not None:
        sys.stdout.buffer.write(cmd_result.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(cmd_result.stderr)
    note = result.machine.get("accel_note")
    if note and not args.json:
        print(f"memharness: {note}", file=sys.stderr)
    if not args.json:
        boot = f"boot {result.boot_seconds:.1f} s" if result.boot_seconds else "no boot"
        print(
            f"memharness: {result.outcome}: {result.reason} [{result.machine['arch']}, {boot}, "
            f"artifacts: {result.artifacts}]",
            file=sys.stderr,
        )
    if result.outcome in (Outcome.PASS, Outcome.COMMAND_FAILED) and exit_code is not None:
        return exit_code
    return BISECT_EXIT[result.outcome]


def cmd_splats(args: argparse.Namespace) -> int:
    from harness.splat import parse_log
    from harness.splat.symbolize import Location, decode

    reports: list[tuple[str, list[Splat]]] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path} does not exist: pass console log files")
        reports.append((str(path), parse_log(path.read_text(errors="replace"))))
    located: dict[str, list[Location]] = {}
    if args.vmlinux:
        arch = get_arch(args.arch)
        for _, splats in reports:
            located.update(decode(splats, Path(args.vmlinux), arch))
    if args.json:
        keys = ("title", "kind", "corrupted", "frame", "text")
        data = [
            {
                "file": f,
                "splats": [
                    {
                        **{k: getattr(s, k) for k in keys},
                        **(
                            {
                                "locations": [
                                    {
                                        "frame": loc.frame,
                                        "address": f"{loc.address:#x}",
                                        "where": list(loc.where),
                                    }
                                    for loc in located[s.title]
                                ]
                            }
                            if s.title in located
                            else {}
                        ),
                    }
                    for s in sp
                ],
            }
            for f, sp in reports
        ]
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
    from harness.kernel.resolve import spec_for_arch
    from harness.report import summary
    from harness.scenario.execute import check_scenarios, plan_pure, run_scenario
    from harness.scenario.model import load_catalogue, select
    from harness.session import prepare

    arches = parse_arches(args.arch)
    scenarios = select(load_catalogue(args.catalogue), args.scenario, arches)
    if not scenarios:
        raise UserError(f"no scenario runs on {args.arch}: `memharness scenarios` lists them")
    for scenario in scenarios:  # plans are pure: refuse a bad one before any download
        plan_pure(scenario)
    prepared = {}
    for arch in sorted({s.arch for s in scenarios}, reverse=True):
        profile = parse_arches(arch)[0]
        print(f"memharness: preparing {arch} kernel and guest image", file=sys.stderr)
        prepared[arch] = prepare(profile, spec_for_arch(args.kernel, profile), args.modules)
    check_scenarios(scenarios, {a: k for a, (k, _) in prepared.items()})
    results = []
    for i, scenario in enumerate(scenarios, 1):
        kernel, image = prepared[scenario.arch]
        print(
            f"[{i}/{len(scenarios)}] {scenario.name} ({scenario.arch}, {kernel.release}) ...",
            end="",
            flush=True,
            file=sys.stderr,
        )
        result = run_scenario(
            scenario,
            kernel,
            image,
            args.artifacts,
            args.accel,
            spec_for_arch(args.kernel, kernel.arch),
        )
        print(f" {result.outcome} ({result.seconds:.1f} s)", file=sys.stderr)
        results.append(result)
    print(summary.table(results))
    if args.json:
        Path(args.json).write_text(summary.to_json(results) + "\n")
    if args.html:
        Path(args.html).write_text(summary.to_html(results))
    return summary.exit_code(results, bisect=args.bisect)


def cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.scenario.model import load_catalogue

    catalogue = load_catalogue(args.catalogue)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "arch": s.arch,
                        "summary": s.summary,
                        "modes": list(s.modes),
                        "walkers": list(s.walkers),
                    }
                    for s in catalogue
                ],
                indent=2,
            )
        )
        return 0
    width = max(len(s.name) for s in catalogue)
    for s in catalogue:
        print(f"{s.name:<{width}}  {s.arch:<7} {s.summary}")
    return 0


def cmd_layout(args: argparse.Namespace) -> int:
    from harness.hotplug.plan import plan_steps, render_steps, step_json
    from harness.layout.planner import plan, render
    from harness.scenario.model import load_catalogue, select

    arch = get_arch(args.arch)
    chosen = select(load_catalogue(args.catalogue), args.scenario, [arch])
    if len(chosen) != 1:
        raise UserError("pass one scenario: memharness layout --arch A --scenario S")
    scenario = chosen[0]
    p = plan(scenario.layout, arch)
    steps = plan_steps(p, scenario.steps).steps if scenario.hotplug else ()
    if args.json:
        print(
            json.dumps(
                {
                    "scenario": scenario.name,
                    "arch": arch.name,
                    "kind": scenario.layout.kind,
                    "collision_sections": p.collisions,
                    "cmdline": list(p.cmdline),
                    "qemu_args": list(p.qemu_args),
                    "dt_nodes": [n.dts() for n in p.dt_nodes],
                    "sections": [
                        {
                            "number": s.number,
                            "start": s.start,
                            "subsections": s.subsections,
                            "collides": s.collides,
                        }
                        for s in p.sections
                    ],
                    "steps": [step_json(s) for s in steps],
                },
                indent=2,
            )
        )
    else:
        print(render(p))
        if steps:
            print(render_steps(steps))
    return 0


def cmd_kernel_build(args: argparse.Namespace) -> int:
    from harness.kernel.build import DEFAULT_FRAGMENTS, build_kernel, check_host, fragment_files
    from harness.kernel.source import debian_source, user_source

    arch = get_arch(args.arch)
    if args.commit and not args.src:
        raise UserError("--commit needs --src: the git tree the commit is in")
    fragments = args.fragment if args.fragment else list(DEFAULT_FRAGMENTS)
    check_host(arch)  # tools and fragments first: one line, before any download
    fragment_files(fragments, arch)
    source = user_source(Path(args.src), args.commit) if args.src else debian_source()
    out = build_kernel(arch, source, fragments, config_only=args.config_only, jobs=args.jobs)
    print(out)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from harness.debian import DebianArchive

    for name in args.arch.split(","):
        arch = get_arch(name)
        print(f"memharness: refreshing Debian {arch.debian_arch} package lists", file=sys.stderr)
        DebianArchive(arch).update()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memharness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    boot = sub.add_parser("boot", help="boot a kernel and run one guest command")
    boot.add_argument("--arch", default="x86_64", help=f"one of {', '.join(ARCHES)}")
    _add_common(boot)
    boot.add_argument("--timeout", type=float, default=300.0, help="command timeout in seconds")
    boot.add_argument("--boot-timeout", type=float, default=180.0)
    boot.add_argument("--json", action="store_true", help="print one JSON object")
    boot.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD... (default: uname -a)")
    boot.set_defaults(func=cmd_boot)

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
    run.add_argument(
        "--bisect",
        action="store_true",
        help="for `git bisect run`: any splat (known bugs too), hang or failed check exits 1, "
        "an infrastructure error 125, only clean passes 0",
    )
    _add_common(run)
    _add_catalogue(run)
    run.set_defaults(func=cmd_run)

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
    kernel_sub = kernel.add_subparsers(dest="kernel_cmd", required=True)
    build = kernel_sub.add_parser("build", help="build a kernel from kconfigs/ fragments")
    build.add_argument("--arch", default="x86_64")
    build.add_argument("--src", metavar="DIR", help="kernel tree (default: Debian linux-source)")
    build.add_argument("--commit", metavar="REV", help="build this commit of the --src git tree")
    build.add_argument(
        "--fragment",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="kconfigs/ topic or fragment file (repeatable; default: "
        "zone-device, hotplug, memory-failure, debug-vm)",
    )
    build.add_argument(
        "--config-only", action="store_true", help="stop after the validated .config"
    )
    build.add_argument("--jobs", type=int, help="make -j (default: the core count)")
    build.set_defaults(func=cmd_kernel_build)

    update = sub.add_parser("update", help="refresh the Debian package lists in the cache")
    update.add_argument("--arch", default=",".join(ARCHES))
    update.set_defaults(func=cmd_update)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    proc.install_signal_handlers()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"memharness: error: {exc}", file=sys.stderr)
        return 2
    except InfraError as exc:
        print(f"memharness: infra-error: {exc}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("memharness: interrupted; QEMU stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
