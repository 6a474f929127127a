"""Child processes: every one in its own process group, with a timeout, reaped on every path.

Three layers make sure no QEMU or builder outlives memharness:
- context managers and ``finally`` blocks kill and reap on normal exits and exceptions
  (Ctrl-C arrives as KeyboardInterrupt; SIGTERM is turned into one by ``install_signal_handlers``);
- an ``atexit`` sweep kills whatever is still registered;
- PR_SET_PDEATHSIG makes the kernel SIGKILL the child if memharness itself is SIGKILLed.
"""

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from harness.errors import InfraError, UserError

_PR_SET_PDEATHSIG = 1
_live: dict[int, subprocess.Popen[bytes]] = {}
_live_lock = threading.Lock()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the forking thread dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def require_tool(tool: str, package: str) -> str:
    """Absolute path of ``tool`` or a one-line error naming the Debian package to install."""
    found = shutil.which(tool)
    if not found:
        raise UserError(
            f"{tool} not found: install the Debian package {package} (make setup does it)"
        )
    return found


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.DEVNULL,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a long-lived child in a new session, registered for cleanup."""
    proc = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    with _live_lock:
        _live[proc.pid] = proc
    return proc


def kill(proc: subprocess.Popen[bytes], grace: float = 0.0) -> int | None:
    """Terminates ``proc``'s whole process group (after ``grace`` s of SIGTERM) and reaps it."""
    try:
        if proc.poll() is None:
            if grace > 0:
                _signal_group(proc, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
            _signal_group(proc, signal.SIGKILL)
        # The group may hold grandchildren even after the leader died.
        _signal_group(proc, signal.SIGKILL)
        return proc.wait(10)
    finally:
        with _live_lock:
            _live.pop(proc.pid, None)


def forget(proc: subprocess.Popen[bytes]) -> None:
    """Drops a child that has already been reaped from the cleanup registry."""
    with _live_lock:
        _live.pop(proc.pid, None)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def live_children() -> list[int]:
    """PIDs of spawned children not yet reaped (tests assert this is empty)."""
    with _live_lock:
        return [pid for pid, p in _live.items() if p.poll() is None]


@atexit.register
def kill_all() -> None:
    """Last line of defence: nothing we started survives the interpreter."""
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        kill(proc)


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    input_bytes: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Runs a short-lived tool to completion; a failure or timeout is an InfraError.

    The error names the tool and the last lines of its stderr, which is what a user needs to
    see first.
    """
    label = what or Path(argv[0]).name
    proc = spawn(
        argv,
        stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    try:
        out, err = proc.communicate(input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        raise InfraError(f"{label} timed out after {timeout:.0f} s: {' '.join(argv)}") from None
    except BaseException:
        kill(proc)
        raise
    forget(proc)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise InfraError(f"{label} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def install_signal_handlers() -> None:
    """Turns SIGTERM/SIGHUP into KeyboardInterrupt so context managers clean up."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
