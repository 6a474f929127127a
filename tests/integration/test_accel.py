"""--accel auto: KVM is probed with a short timeout and TCG is the loud fallback."""

from pathlib import Path

from harness.image.builder import GuestImage
from harness.kernel.model import Kernel
from harness.vm.machine import VM, VMOptions


def test_auto_accel_boots_and_says_which(
    kernel: Kernel, guest_image: GuestImage, tmp_path: Path
) -> None:
    with VM(kernel, guest_image, tmp_path, VMOptions(accel="auto")) as vm:
        assert vm.ready, vm.facts()
        assert vm.run("true").exit_code == 0
        accel, note = vm.state.accel, vm.state.accel_note
    assert accel in ("kvm", "tcg")
    if accel == "tcg":
        assert note.startswith("TCG:"), "a fallback to TCG must say why"
    else:
        assert "KVM" in note
