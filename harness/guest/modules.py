"""Loading kernel modules in a booted guest: one helper for every scenario kind."""

import shlex
from typing import Any

from harness.vm.machine import VM

MODPROBE_TIMEOUT = 120.0


def load_modules(vm: VM, wanted: list[str], record: dict[str, Any]) -> str | None:
    """modprobes each module of ``wanted`` that the guest image ships, in order and once each,
    stopping at the first failure.  ``record["loaded"]`` lists what was asked for; returns None
    on success, else why it failed (the module and modprobe's last line)."""
    loadable = [m for m in dict.fromkeys(wanted) if m in vm.image.modules]
    record["loaded"] = loadable
    if not loadable:
        return None
    names = " ".join(shlex.quote(m) for m in loadable)
    script = f'for m in {names}; do modprobe "$m" || {{ echo "$m" >&2; exit 1; }}; done'
    result = vm.run(script, timeout=MODPROBE_TIMEOUT, check=False)
    if result.exit_code == 0 or not vm.ready:
        return None
    err = result.stderr.decode(errors="replace").strip().splitlines()
    return f"modprobe failed (exit {result.exit_code}): {' | '.join(err[-2:])}"
