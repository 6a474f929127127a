"""Pure QEMU command-line construction (no processes here)."""
