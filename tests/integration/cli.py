"""Runs the real `memharness` CLI in a child process, as scripts and users do."""

import subprocess
import sys


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
