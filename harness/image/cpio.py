"""A deterministic newc cpio writer: same inputs, same bytes, same cache key.

The kernel unpacks concatenated newc archives, so the arch's base image and a kernel's modules
are written separately and concatenated; a new kernel (bisect) rebuilds only its modules part.
"""

import stat
from dataclasses import dataclass, field
from pathlib import PurePosixPath

TRAILER = "TRAILER!!!"


@dataclass
class Archive:
    """Files, symlinks and directories to write, keyed by absolute guest path."""

    entries: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        parts = PurePosixPath(path).parts[1:]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            self.entries.setdefault(sub, (stat.S_IFDIR | mode, b""))

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.add_dir(str(PurePosixPath(path).parent))
        self.entries[path] = (stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        self.add_dir(str(PurePosixPath(path).parent))
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode())

    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def to_bytes(self) -> bytes:
        """The archive, parents before children, ending with the trailer, 512-byte padded."""
        out = bytearray()
        for ino, path in enumerate(sorted(self.entries), start=1):
            mode, data = self.entries[path]
            out += _entry(path.lstrip("/") or ".", mode, data, ino)
        out += _entry(TRAILER, 0, b"", 0)
        out += b"\0" * (-len(out) % 512)
        return bytes(out)


def _entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    pad_name = b"\0" * (-(len(header) + len(encoded)) % 4)
    pad_data = b"\0" * (-len(data) % 4)
    return header + encoded + pad_name + data + pad_data
