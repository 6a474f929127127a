"""QEMU argv and kernel command line, per arch (pure)."""

import shlex
from pathlib import Path

import pytest

from harness.arch import ARM64, X86_64, ArchProfile, get_arch, parse_arches
from harness.errors import InfraError, UserError
from harness.qemu.argv import (
    ChannelPort,
    MachineSpec,
    build_argv,
    kernel_cmdline,
    rootfs_args,
    shell_quote,
)

PORTS = (ChannelPort("mh.0", Path("/tmp/s/p0")), ChannelPort("mh.1", Path("/tmp/s/p1")))


def spec(arch: ArchProfile, **kw: object) -> MachineSpec:
    base: dict[str, object] = dict(
        arch=arch,
        kernel=Path("/k"),
        initrd=Path("/i"),
        cmdline=("console=x",),
        console_log=Path("/a/console.log"),
        qmp_socket=Path("/tmp/s/qmp"),
        ports=PORTS,
        memory=2 << 30,
    )
    base.update(kw)
    return MachineSpec(**base)  # type: ignore[arg-type]


def opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize(
    ("arch", "machine", "cpu", "binary"),
    [
        (X86_64, "q35,nvdimm=on", [], "qemu-system-x86_64"),
        (ARM64, "virt", ["cortex-a57"], "qemu-system-aarch64"),
    ],
)
def test_arch_profile_drives_argv(
    arch: ArchProfile, machine: str, cpu: list[str], binary: str
) -> None:
    argv = build_argv(spec(arch))
    assert argv[0] == binary
    assert opt(argv, "-machine") == [machine]
    assert opt(argv, "-cpu") == cpu
    assert opt(argv, "-accel") == ["tcg"]
    assert opt(argv, "-m") == ["2048M"]
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot"):
        assert flag in argv


def test_kvm_uses_host_cpu() -> None:
    argv = build_argv(spec(ARM64, accel="kvm"))
    assert opt(argv, "-cpu") == ["host"] and opt(argv, "-accel") == ["kvm"]


def test_hotplug_memory_and_firmware_and_dtb() -> None:
    argv = build_argv(
        spec(
            ARM64,
            slots=4,
            maxmem=8 << 30,
            firmware=Path("/fw.fd"),
            dtb=Path("/x.dtb"),
            machine_options=("dumpdtb=/d",),
        )
    )
    assert opt(argv, "-m") == ["2048M,slots=4,maxmem=8192M"]
    assert opt(argv, "-bios") == ["/fw.fd"] and opt(argv, "-dtb") == ["/x.dtb"]
    assert opt(argv, "-machine") == ["virt,dumpdtb=/d"]


def test_console_qmp_and_ports_are_wired() -> None:
    argv = build_argv(spec(X86_64))
    chardevs = opt(argv, "-chardev")
    assert "file,id=console,path=/a/console.log" in chardevs
    assert "socket,id=qmp,path=/tmp/s/qmp" in chardevs
    assert opt(argv, "-serial") == ["chardev:console"]
    assert opt(argv, "-mon") == ["chardev=qmp,mode=control"]
    devices = opt(argv, "-device")
    assert "virtserialport,bus=mhserial.0,chardev=mhport1,name=mh.1" in devices
    assert "socket,id=mhport1,path=/tmp/s/p1" in chardevs


@pytest.mark.parametrize(("arch", "tty"), [(X86_64, "console=ttyS0"), (ARM64, "console=ttyAMA0")])
def test_kernel_cmdline(arch: ArchProfile, tty: str) -> None:
    line = kernel_cmdline(arch, PORTS, ("virtio_pci", "virtio_console"), ("oops=panic",))
    assert line[0] == tty
    assert "panic=-1" in line and "loglevel=5" in line and "quiet" not in line
    assert "mh.ports=mh.0,mh.1" in line and "mh.modules=virtio_pci,virtio_console" in line
    assert line[-1] == "oops=panic"


def test_shell_quote_round_trips() -> None:
    assert shell_quote(["a b", "c"]) == "'a b' c"


@pytest.mark.parametrize(
    ("name", "want"),
    [("x86_64", "x86_64"), ("amd64", "x86_64"), ("arm64", "arm64"), ("aarch64", "arm64")],
)
def test_arch_aliases(name: str, want: str) -> None:
    assert get_arch(name).name == want


def test_arch_errors_and_lists() -> None:
    with pytest.raises(UserError, match="unknown arch 'riscv'"):
        get_arch("riscv")
    assert [a.name for a in parse_arches("arm64,x86_64,arm64")] == ["arm64", "x86_64"]
    with pytest.raises(UserError):
        parse_arches(",")


# -- starting from a saved state (harness/vm/snapshot.py) --------------------------------------


@pytest.mark.parametrize(
    "path", ["/tmp/mh-1-x/setup.state", "/tmp/a dir/it's $HOME;`id`.state", "/tmp/Ωmega.state"]
)
def test_incoming_args_hand_qemu_the_path_as_one_word(path: str) -> None:
    from harness.vm.snapshot import incoming_args

    flag, uri = incoming_args(Path(path))
    assert flag == "-incoming" and uri.startswith("exec:cat ")
    # QEMU runs the exec: command with /bin/sh -c: the shell must see exactly one argument
    assert shlex.split(uri.removeprefix("exec:")) == ["cat", path]


def test_a_boot_without_saved_state_gets_no_incoming() -> None:
    from harness.vm.machine import VMOptions
    from harness.vm.snapshot import SetupSnapshot, incoming_args

    assert incoming_args(None) == ()
    base = VMOptions(accel="auto")
    assert SetupSnapshot().options(base) is base  # nothing saved: boot as usual
    saved = SetupSnapshot()
    saved.path, saved.accel = Path("/tmp/s.state"), "tcg"
    restored = saved.options(base)
    assert (restored.incoming, restored.accel) == (Path("/tmp/s.state"), "tcg")
    assert base.incoming is None, "the scenario's own options are not changed"


def test_rootfs_devices_are_wired_to_their_backends_and_loopback_only() -> None:
    argv = rootfs_args(Path("/tmp/mh-1/root.qcow2"), 23456)
    pairs = list(zip(argv[::2], argv[1::2], strict=True))
    drive = dict(kv.split("=", 1) for kv in next(v for k, v in pairs if k == "-drive").split(","))
    assert drive["file"] == "/tmp/mh-1/root.qcow2" and drive["format"] == "qcow2"
    devices = [v for k, v in pairs if k == "-device"]
    assert f"virtio-blk-pci,drive={drive['id']}" in devices
    netdev = next(v for k, v in pairs if k == "-netdev")
    assert netdev.startswith("user,id=") and "hostfwd=tcp:127.0.0.1:23456-:22" in netdev
    net_id = netdev.split(",")[1].removeprefix("id=")
    assert f"virtio-net-pci,netdev={net_id}" in devices


def test_a_users_image_has_its_disk_and_no_network() -> None:
    argv = rootfs_args(Path("/tmp/mh-1/root.qcow2"), None)
    assert "-netdev" not in argv and not any("virtio-net" in a for a in argv)
    assert "virtio-blk-pci,drive=mhroot" in opt(argv, "-device")


def test_a_console_socket_keeps_qemus_own_log() -> None:
    argv = build_argv(spec(ARM64, ports=(), console_socket=Path("/tmp/s/con")))
    chardevs = opt(argv, "-chardev")
    # QEMU connects as a client (no server=on: memharness listens before it starts) and still
    # writes every byte the guest prints to console.log itself
    assert "socket,id=console,path=/tmp/s/con,logfile=/a/console.log" in chardevs
    assert not any(c.startswith("file,id=console") for c in chardevs)
    assert opt(argv, "-serial") == ["chardev:console"]
    assert "virtio-serial-pci,id=mhserial" not in opt(argv, "-device")


class _RefusingQMP:
    """QEMU's answers to cont, in order: the error it gives before the migration cleanup."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers
        self.calls = 0

    def command(self, name: str, **_: object) -> object:
        assert name == "cont"
        self.calls += 1
        answer = self.answers.pop(0)
        if answer is not None:
            from harness.vm.qmp import QMPError

            raise QMPError(f"cont: {answer}")
        return {}


def test_resume_waits_for_the_migration_cleanup_and_refuses_other_errors() -> None:
    from harness.vm.snapshot import NOT_FINALIZED, resume

    qmp = _RefusingQMP([NOT_FINALIZED, NOT_FINALIZED, None])
    resume(qmp, timeout=5.0)  # type: ignore[arg-type]
    assert qmp.calls == 3
    with pytest.raises(InfraError, match="resuming the guest after saving it"):
        resume(_RefusingQMP(["Guest is not running"]), timeout=5.0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match="not finalized"):
        resume(_RefusingQMP([NOT_FINALIZED] * 1000), timeout=0.2)  # type: ignore[arg-type]
