"""The memharness command line.

Exit codes: a user error (bad input) is 2 with one line naming the fix, printed before QEMU
starts.  ``boot`` exits with the guest command's own status; when the run ends in another way it
follows ``git bisect run``: 1 for a kernel splat or a hang, 125 for an infrastructure error.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import proc
from harness.arch import ARCHES, get_arch
from harness.errors import InfraError, UserError
from harness.outcome import BISECT_EXIT, Outcome
from harness.splat.model import Splat

DEFAULT_ARTIFACTS = Path(os.environ.get("MEMHARNESS_ARTIFACTS", "memharness-artifacts"))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kernel",
        metavar="PATH",
        help="bzImage/Image/vmlinux or a build dir (default: Debian's kernel package)",
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
    from harness.session import boot_and_run

    command = " ".join(args.command) if args.command else "uname -a"
    result, cmd_result = boot_and_run(
        arch=get_arch(args.arch),
        kernel_spec=args.kernel,
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

    reports: list[tuple[str, list[Splat]]] = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"{path} does not exist: pass console log files")
        reports.append((str(path), parse_log(path.read_text(errors="replace"))))
    if args.json:
        keys = ("title", "kind", "corrupted", "frame", "text")
        print(
            json.dumps(
                [
                    {"file": f, "splats": [{k: getattr(s, k) for k in keys} for s in sp]}
                    for f, sp in reports
                ],
                indent=2,
            )
        )
        return 0
    for file, splats in reports:
        print(f"{file}: {len(splats)} splat(s)")
        for s in splats:
            flag = " [corrupted]" if s.corrupted else ""
            print(f"  {s.kind:<14} {s.title}{flag}")
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
    splats.set_defaults(func=cmd_splats)

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
