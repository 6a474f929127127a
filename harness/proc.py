"""Child processes: every one in its own process group, with a timeout, reaped on every path.

Three layers make sure no QEMU or builder outlives memharness:
- context managers and ``finally`` blocks kill and reap on normal exits and exceptions
  (SIGINT, SIGTERM and SIGHUP arrive as ``Interrupted``, a KeyboardInterrupt, once
  ``install_signal_handlers`` ran);
- an ``atexit`` sweep kills whatever is still registered;
- PR_SET_PDEATHSIG makes the kernel SIGKILL the child if memharness itself is SIGKILLed.
"""

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from harness.errors import InfraError, UserError

_PR_SET_PDEATHSIG = 1
_live: dict[int, subprocess.Popen[bytes]] = {}
_live_lock = threading.Lock()
stopping = threading.Event()  # set while a parallel run stops its workers (see harness/run.py)


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
    """Starts a long-lived child in a new session, registered for cleanup.  While a parallel
    run is stopping (``stopping``) a worker thread may start nothing more: checked and
    registered under the same lock as ``kill_all``, so no child slips past it."""
    with _live_lock:
        if stopping.is_set() and threading.current_thread() is not threading.main_thread():
            raise InfraError("the run is stopping: no new process is started")
        # A signal during the fork runs its handler inside CPython's at-fork hooks (logging
        # registers one), which print and drop the handler's exception: Ctrl-C was lost about
        # once in eight when it came as QEMU started.  Held until Popen returns, it is raised
        # here, with the child registered so that cleanup reaps it.
        with shielded():
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


ERROR_LINE = re.compile(rb"(?i)\b(error|not found|no such file|undefined)\b")


def run_logged(
    argv: Sequence[str], *, timeout: float, log: Path, what: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``run`` for a build: on failure its whole output goes to ``log`` and the one-line
    error quotes the first line that says what went wrong (a compiler error, a missing tool),
    not make's closing lines."""
    try:
        return run(argv, timeout=timeout, cwd=cwd, what=what, keep_output=log)
    except InfraError as exc:
        text = log.read_bytes() if log.is_file() else b""
        first = next((ln for ln in text.splitlines() if ERROR_LINE.search(ln)), b"")
        cause = first.decode(errors="replace").strip() or str(exc)
        raise InfraError(f"{what} does not build: {cause} (full log: {log})") from None


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    input_bytes: bytes | None = None,
    keep_output: Path | None = None,
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
    if proc.returncode != 0 and keep_output is not None:
        keep_output.write_bytes(out + err)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise InfraError(f"{label} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (every context manager stops its
    QEMU), and remembers the signal so the exit status can say which (128 + signal)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


CAUGHT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_pending: list[int] = []
_shielded = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _shielded:
        _pending.append(signum)  # finishing a record: raise once it is written
        return
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """Turns SIGINT/SIGTERM/SIGHUP into ``Interrupted`` so context managers clean up."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in CAUGHT_SIGNALS:
        signal.signal(sig, _on_signal)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A plain KeyboardInterrupt (no handler installed, e.g. under pytest) counts as SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Signals that arrive inside the block are held until it ends: a result or report being
    written when the user presses Ctrl-C is still written whole.  A held signal is raised as
    ``Interrupted`` at the end of the block.  Only the main thread's blocks hold signals."""
    global _shielded
    if threading.current_thread() is not threading.main_thread():
        # handlers run in the main thread only: a worker's block must not hold (and then raise
        # in the worker) a signal meant to interrupt the main thread's own code
        yield
        return
    outer = _shielded
    _shielded = True
    try:
        yield
    finally:
        _shielded = outer
    if not outer and _pending:
        signum = _pending[0]
        _pending.clear()
        raise Interrupted(signum)
