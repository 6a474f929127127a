"""The one JSON schema of found splats: what a run writes as splats.json and what
``memharness splats --json`` prints per file (see the README)."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.splat.model import Splat
from harness.splat.symbolize import Location


def splats_json(
    splats: Iterable[Splat], located: Mapping[str, Sequence[Location]] | None = None
) -> list[dict[str, Any]]:
    """Each splat's fields; with decoded frames (a vmlinux with debug info), ``locations``."""
    out = []
    for splat in splats:
        entry: dict[str, Any] = splat.to_json()
        if located and splat.title in located:
            entry["locations"] = [loc.to_json() for loc in located[splat.title]]
        out.append(entry)
    return out
