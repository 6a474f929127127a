"""Runs the real `memharness` CLI in a child process, as scripts and users do."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
