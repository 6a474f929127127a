"""A booted guest saved to a file, and later guests started from it instead of booting.

Why: a phased collision scenario boots the same layout once per poisoning phase, and each of
those boots repeats what the main boot already did (kernel boot, module loads, the wait for the
namespace).  bench/snapshot.py measured that part at several seconds under TCG and a restore of
the saved state at a fraction of it, so the main boot saves its state once its setup is done
and the poison phases start from that state (``SetupSnapshot``).

How: QEMU migration to a file (``migrate`` to ``exec:cat > FILE``; QEMU 7.2 has no ``file:``
URI) and ``-incoming exec:cat FILE`` on a QEMU with the same machine (the same argv except the
paths of its sockets and console log).  Every memory backend of our layouts is RAM, so the
state file holds all of the guest and the saved and restored guests share nothing.  The saving
guest is paused for the save and resumed with ``cont``.
"""

import logging
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InfraError
from harness.tempdirs import socket_dir
from harness.vm.qmp import QMPAborted, QMPError

if TYPE_CHECKING:
    from harness.vm.machine import VM, VMOptions
    from harness.vm.qmp import QMP

SAVE_TIMEOUT = 120.0
log = logging.getLogger(__name__)


def incoming_args(path: Path | None) -> tuple[str, ...]:
    """QEMU options that start the machine from ``path`` (none when ``path`` is None)."""
    return () if path is None else ("-incoming", f"exec:cat {shlex.quote(str(path))}")


def save(
    qmp: "QMP", path: Path, abort: Callable[[], str | None], timeout: float = SAVE_TIMEOUT
) -> float:
    """Migrates the running guest into ``path`` and resumes it; returns the seconds it took.
    Waits on QEMU's MIGRATION events (no polling); stops when ``abort`` names a reason (QEMU
    gone, the guest panicked).  The guest is resumed even when the save fails (InfraError)."""
    start = time.monotonic()
    qmp.command("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
    qmp.discard("MIGRATION")
    try:
        qmp.command("migrate", uri=f"exec:cat > {shlex.quote(str(path))}")
        while True:
            remaining = start + timeout - time.monotonic()
            try:
                event = qmp.wait_event("MIGRATION", timeout=max(remaining, 0.0), abort=abort)
            except TimeoutError:
                qmp.command("migrate_cancel")
                raise InfraError(f"saving the guest to {path} took over {timeout:.0f} s") from None
            except QMPAborted as exc:
                raise InfraError(f"saving the guest to {path}: {exc}") from None
            state = event.get("data", {}).get("status")
            if state == "completed":
                return time.monotonic() - start
            if state in ("failed", "cancelled"):
                status = qmp.command("query-migrate")
                why = status.get("error-desc", state) if isinstance(status, dict) else state
                raise InfraError(f"saving the guest to {path} failed: {why}")
    finally:
        resume(qmp)


NOT_FINALIZED = "Migration is not finalized yet"
RESUME_TIMEOUT = 10.0


def resume(qmp: "QMP", timeout: float = RESUME_TIMEOUT) -> None:
    """``cont`` once QEMU has cleaned up after the save.  The MIGRATION "completed" event
    comes from the migration thread before the main loop's cleanup, and until that ran QEMU
    refuses ``cont`` (seen once in a CI run on a loaded machine): retried for ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            qmp.command("cont")
            return
        except QMPError as exc:
            if NOT_FINALIZED not in str(exc) or time.monotonic() > deadline:
                raise InfraError(f"resuming the guest after saving it: {exc}") from None
            time.sleep(0.05)


class SetupSnapshot:
    """One scenario's main boot, saved once its setup is done, for the boots after it.

    ``save(vm)`` is called by the main boot right after setup; it saves only a guest that is
    running and has shown no splat (a splat must come from a boot of its own, and state that
    already went wrong must not be copied into every later phase).  ``options(base)`` gives a
    later boot the saved state, under the accelerator it was saved with.  A scenario that saved
    nothing boots every phase; ``enabled=False`` (``run --fresh-boots``) always does."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path: Path | None = None
        self.accel = ""
        self._dir: Path | None = None

    def __enter__(self) -> "SetupSnapshot":
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Removes the saved state: it belongs to this scenario's run only."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def save(self, vm: "VM") -> None:
        if not self.enabled or self.path is not None or not vm.ready or vm.splats():
            return
        self._dir = socket_dir()
        path = self._dir / "setup.state"
        try:
            vm.save_state(path)
        except InfraError as exc:
            log.warning("%s: later boots boot afresh", exc)
            return
        self.path, self.accel = path, vm.state.accel

    def options(self, base: "VMOptions") -> "VMOptions":
        if self.path is None:
            return base
        return replace(base, incoming=self.path, accel=self.accel)
