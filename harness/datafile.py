"""Reading memharness's data files (catalogues, rules, recipes): UTF-8 and TOML checked, unknown
keys refused, every problem one line that names the file and the fix.

A typo in a data file must never be ignored silently (a misspelt ``teardown`` would quietly run
the default) and must never be a traceback: users edit these files by hand.
"""

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import UserError


def read_text(path: Path, what: str = "file") -> str:
    """The file as text; a one-line UserError when it is unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} {path} is not UTF-8 (byte {exc.start} is {data[exc.start]:#04x}): "
            "save it as UTF-8"
        ) from None


def load_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """Parsed TOML; one-line UserErrors for unreadable, non-UTF-8 or malformed files."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} {path} is not valid TOML: {exc}") from None


def reject_unknown(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """UserError naming the first key of ``data`` that is not in ``allowed``."""
    known = set(allowed)
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise UserError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(known))})"
        )
