"""Error classes that decide how a failure reaches the user.

A ``UserError`` is something the user can fix (bad path, wrong arch, misaligned layout): the
CLI prints its one-line message and exits 2 before QEMU starts.  An ``InfraError`` is the
environment failing us (download, build or QEMU trouble): it becomes the ``infra-error``
outcome.  Anything else is a memharness bug and keeps its traceback.
"""


class MemharnessError(Exception):
    """Base class for errors memharness reports without a traceback."""


class UserError(MemharnessError):
    """Bad input; the message is one line that names the fix."""


class InfraError(MemharnessError):
    """A tool, download, build or QEMU failed; not the kernel's fault and not the user's."""
