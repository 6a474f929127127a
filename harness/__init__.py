"""memharness: boot kernels in QEMU with section collisions, walk pfns, report splats."""

__version__ = "0.1.0"
