"""Image building blocks checked against host tools: GNU cpio reads our archives, and the ELF
reader understands a real binary of this host (whatever its arch)."""

import subprocess
from pathlib import Path

from harness.arch import host_arch
from harness.image.cpio import Archive
from harness.image.elf import dynamic_info


def test_cpio_is_readable_by_gnu_cpio_and_deterministic(tmp_path: Path) -> None:
    archive = Archive()
    archive.add_file("/sbin/tool", b"\x7fELF...", 0o755)
    archive.add_symlink("/bin/sh", "busybox")
    archive.add_dir("/proc")
    data = archive.to_bytes()
    assert data == archive.to_bytes() and len(data) % 512 == 0
    listing = (
        subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert listing == ["bin", "bin/sh", "proc", "sbin", "sbin/tool"]
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=data, cwd=tmp_path, check=True
    )
    assert (tmp_path / "sbin/tool").read_bytes() == b"\x7fELF..."
    assert (tmp_path / "sbin/tool").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin/sh").readlink() == Path("busybox")


def test_elf_dynamic_info_of_a_real_binary() -> None:
    info = dynamic_info(Path("/bin/ls").read_bytes())
    assert info.machine == host_arch().elf_machine
    assert info.interpreter and "ld-linux" in info.interpreter
    assert "libc.so.6" in info.needed
