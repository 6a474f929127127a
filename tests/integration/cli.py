"""Runs the real `memharness` CLI in a child process, as scripts and users do."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect

from harness.arch import ArchProfile


def memharness(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def boot_json(arch: ArchProfile, artifacts: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`memharness boot --json` of ``argv`` on ``arch``."""
    return memharness(
        "boot", "--json", "--arch", arch.name, "--artifacts", str(artifacts), "--", *argv
    )


def run_json(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`memharness run ARGS --artifacts WORKDIR/art --json WORKDIR/report.json` and the report
    it wrote (an empty dict when it wrote none)."""
    report = workdir / "report.json"
    art = str(workdir / "art")
    done = memharness(
        "run", *args, "--artifacts", art, "--json", str(report), env=env, timeout=timeout
    )
    return done, json.loads(report.read_text()) if report.is_file() else {}


def spawn_shell(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> "pexpect.spawn[str]":
    """`memharness shell ARGS` on a pty, as a person at a terminal starts it; what it shows
    goes to tmp_path/terminal.log as well."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "harness", "shell", "--artifacts", str(tmp_path), *args],
        timeout=240,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 120),
        env=env,
    )
    child.logfile_read = (tmp_path / "terminal.log").open("w")
    return child


def qemus(tmp_path: Path) -> list[int]:
    """QEMUs whose command line names this test's artifacts (the child's, not ours)."""
    out = []
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                cmdline = (pid_dir / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(tmp_path).encode() in cmdline:
                out.append(int(pid_dir.name))
    return out
