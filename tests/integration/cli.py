"""Runs the real `memharness` CLI in a child process, as scripts and users do."""

import subprocess
import sys
from pathlib import Path

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
