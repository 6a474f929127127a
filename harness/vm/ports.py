"""Host TCP ports for QEMU's user-mode port forwards, safe for parallel runs.

QEMU binds the forward itself, so "bind port 0 and read the number" would leave a window in
which two VMs (``run -j``, pytest-xdist) pick the same free port.  A port is leased instead:
an exclusive lock file per port, held for the VM's life, taken only when a test bind shows no
other program uses the port.  Locks die with their process, so a killed run leaks nothing.
"""

import contextlib
import fcntl
import os
import random
import socket
from pathlib import Path

from harness.errors import InfraError
from harness.paths import cache_root

RANGE = (20000, 32000)  # below Linux's default ephemeral range (32768-60999)
ATTEMPTS = 200


class PortLease:
    """One leased port; ``release()`` (or process exit) gives it back."""

    def __init__(self, port: int, fd: int) -> None:
        self.port = port
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lease_port(lock_dir: Path | None = None) -> PortLease:
    """A free loopback port no other memharness VM holds."""
    directory = lock_dir or cache_root() / "ports"
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    for _ in range(ATTEMPTS):
        port = rng.randrange(*RANGE)
        fd = os.open(directory / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _bindable(port):
            return PortLease(port, fd)
        with contextlib.suppress(OSError):
            os.close(fd)
    raise InfraError(f"no free TCP port in {RANGE[0]}-{RANGE[1]} after {ATTEMPTS} tries")
