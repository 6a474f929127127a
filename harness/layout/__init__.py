"""Memory layouts: declarative pmem/nvdimm/dimm placement → QEMU options, cmdline, section map."""
