"""QEMU argv from a ``MachineSpec``: pure, so every option is unit-tested without QEMU.

The console goes to a file chardev (complete and raw, even if memharness stalls), QMP and the
command-channel ports are unix sockets that memharness listens on before QEMU starts (QEMU
connects as a client, so nothing the guest says is lost before we attach).
"""

from dataclasses import dataclass, field
from pathlib import Path

from harness.arch import ArchProfile

MiB = 1 << 20


@dataclass(frozen=True)
class ChannelPort:
    name: str  # virtserialport name the guest agent looks for (mh.0, mh.1, ...)
    socket: Path


@dataclass(frozen=True)
class MachineSpec:
    arch: ArchProfile
    kernel: Path
    initrd: Path
    cmdline: tuple[str, ...]
    console_log: Path
    qmp_socket: Path
    ports: tuple[ChannelPort, ...]
    memory: int
    slots: int = 0
    maxmem: int = 0
    smp: int = 1
    accel: str = "tcg"  # tcg | kvm
    dtb: Path | None = None
    firmware: Path | None = None  # UEFI image (-bios)
    machine_options: tuple[str, ...] = ()  # appended to -machine (e.g. dumpdtb=F)
    extra: tuple[str, ...] = field(default=())  # devices and objects from the layout
    # A user's image: the UART on this socket too (memharness listens), logged by QEMU still
    console_socket: Path | None = None


def mem_arg(spec: MachineSpec) -> str:
    value = f"{spec.memory // MiB}M"
    if spec.maxmem:
        value += f",slots={spec.slots},maxmem={spec.maxmem // MiB}M"
    return value


def machine_args(
    arch: ArchProfile,
    memory: str,
    accel: str = "tcg",
    smp: int = 1,
    machine_options: tuple[str, ...] = (),
) -> list[str]:
    """The options that shape the machine itself (and so its generated device tree)."""
    machine = ",".join((arch.machine, *machine_options))
    argv = ["-machine", machine, "-accel", accel, "-smp", str(smp), "-m", memory]
    cpu = "host" if accel == "kvm" else arch.cpu
    if cpu:
        argv += ["-cpu", cpu]
    return argv


def build_argv(spec: MachineSpec, binary: str | None = None) -> list[str]:
    arch = spec.arch
    argv = [binary or arch.qemu_binary]
    argv += machine_args(arch, mem_arg(spec), spec.accel, spec.smp, spec.machine_options)
    argv += ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
    if spec.firmware:
        argv += ["-bios", str(spec.firmware)]
    argv += ["-kernel", str(spec.kernel), "-initrd", str(spec.initrd)]
    argv += ["-append", " ".join(spec.cmdline)]
    if spec.dtb:
        argv += ["-dtb", str(spec.dtb)]
    if spec.console_socket is None:
        argv += ["-chardev", f"file,id=console,path={spec.console_log}"]
    else:
        argv += [
            "-chardev",
            f"socket,id=console,path={spec.console_socket},logfile={spec.console_log}",
        ]
    argv += ["-serial", "chardev:console"]
    argv += ["-chardev", f"socket,id=qmp,path={spec.qmp_socket}"]
    argv += ["-mon", "chardev=qmp,mode=control"]
    if spec.ports:
        argv += ["-device", "virtio-serial-pci,id=mhserial"]
        for i, port in enumerate(spec.ports):
            argv += ["-chardev", f"socket,id=mhport{i},path={port.socket}"]
            argv += ["-device", f"virtserialport,bus=mhserial.0,chardev=mhport{i},name={port.name}"]
    argv += list(spec.extra)
    return argv


def rootfs_args(overlay: Path, ssh_port: int | None) -> list[str]:
    """A root disk's devices: its per-boot overlay on virtio-blk (cache=unsafe: the overlay
    is thrown away after the boot, so flushes buy nothing) and, for the Debian image,
    user-mode networking with the host's loopback ``ssh_port`` forwarded to the guest's sshd
    (None: a user's image, reached over the console only)."""
    disk = [
        "-drive",
        f"file={overlay},if=none,id=mhroot,format=qcow2,cache=unsafe",
        "-device",
        "virtio-blk-pci,drive=mhroot",
    ]
    if ssh_port is None:
        return disk
    return [
        *disk,
        "-netdev",
        f"user,id=mhnet,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device",
        "virtio-net-pci,netdev=mhnet",
    ]


def kernel_cmdline(
    arch: ArchProfile,
    ports: tuple[ChannelPort, ...],
    boot_modules: tuple[str, ...],
    extra: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The guest command line: serial console, fail-fast panics, channel ports, modules.

    loglevel=5 keeps WARNING-level splats on the console (``quiet`` would hide them);
    panic=-1 with -no-reboot makes a panic end QEMU at once instead of hanging the run.
    cryptomgr.notests skips the crypto algorithms' self-tests, which a distribution kernel runs
    at boot and at each crypto module load (ext4's crc32c): a tenth of Debian 6.1's boot under
    TCG, and nothing memory management depends on.
    """
    parts = [
        f"console={arch.console_tty}",
        "loglevel=5",
        "panic=-1",
        "printk.time=1",
        "cryptomgr.notests",
        f"mh.ports={','.join(p.name for p in ports)}",
    ]
    if boot_modules:
        parts.append(f"mh.modules={','.join(boot_modules)}")
    return (*parts, *extra)


def shell_quote(argv: list[str]) -> str:
    """One line that re-runs ``argv`` in a POSIX shell (for qemu.argv and reproducers)."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)
