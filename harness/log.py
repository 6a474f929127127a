"""Diagnostics: everything memharness says about itself goes to stderr through ``logging``.

stdout belongs to what a command produces (a guest command's output, ``--json``), so a warning
(a failed KVM probe, a build's progress) can never break a script that parses it.  ``-v`` shows
debug lines, ``-q`` only warnings and errors.
"""

import logging
import sys

ROOT = "harness"


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"memharness: {record.levelname}: {text}"
        return f"memharness: {text}"


def configure(verbosity: int = 0) -> None:
    """-1 quiet, 0 normal, 1 verbose.  Idempotent: one handler on stderr."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    logger.addHandler(handler)


def progress_enabled() -> bool:
    """Whether progress lines (per scenario) should be printed: not under -q."""
    return logging.getLogger(ROOT).isEnabledFor(logging.INFO)
