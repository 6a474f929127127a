"""Choosing the accelerator: TCG by default; KVM only when asked and proven to work.

On these machines /dev/kvm opens but a KVM guest hangs (or QEMU asserts on -cpu host), so
memharness never depends on KVM.  ``--accel auto`` boots the real guest under KVM with a short
timeout; if that fails it falls back to TCG and says why.  The verdict is cached per host boot
(kernel boot_id) and QEMU binary, so a broken KVM costs one probe, not one per run.
"""

import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.arch import ArchProfile
from harness.errors import UserError
from harness.paths import cache_root

PROBE_TIMEOUT = 15.0
CHOICES = ("tcg", "kvm", "auto")


@dataclass(frozen=True)
class AccelPlan:
    first: str  # accelerator to try first
    fallback: str | None  # accelerator after a failed probe (None: failure is final)
    note: str  # why (empty when TCG was simply asked for)


def kvm_usable(arch: ArchProfile) -> str | None:
    """None when KVM could run ``arch`` here, else the reason it cannot."""
    if platform.machine() != arch.kvm_host_machine:
        return f"KVM cannot run {arch.name} guests on a {platform.machine()} host"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is missing or not accessible"
    return None


def _verdict_file(arch: ArchProfile) -> Path:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    qemu = shutil.which(arch.qemu_binary) or arch.qemu_binary
    stamp = Path(qemu).stat().st_mtime_ns if Path(qemu).exists() else 0
    return cache_root() / "kvm-probe" / f"{arch.name}-{boot_id}-{stamp}.json"


def cached_verdict(arch: ArchProfile) -> tuple[bool, str] | None:
    path = _verdict_file(arch)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return bool(data["works"]), str(data["reason"])


def record_verdict(arch: ArchProfile, works: bool, reason: str) -> None:
    path = _verdict_file(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"works": works, "reason": reason}))


def plan(requested: str, arch: ArchProfile) -> AccelPlan:
    if requested not in CHOICES:
        raise UserError(f"unknown accelerator {requested!r}: use one of {', '.join(CHOICES)}")
    if requested == "tcg":
        return AccelPlan("tcg", None, "")
    unusable = kvm_usable(arch)
    if requested == "kvm":
        if unusable:
            raise UserError(f"--accel kvm: {unusable}; use --accel tcg")
        return AccelPlan("kvm", None, "")
    if unusable:
        return AccelPlan("tcg", None, f"TCG: {unusable}")
    verdict = cached_verdict(arch)
    if verdict is not None:
        works, reason = verdict
        if works:
            return AccelPlan("kvm", "tcg", "KVM (probe passed earlier on this host boot)")
        return AccelPlan("tcg", None, f"TCG: KVM probe failed earlier on this host boot ({reason})")
    return AccelPlan("kvm", "tcg", "KVM probe")
