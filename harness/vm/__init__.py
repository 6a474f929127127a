"""Live guests: the QEMU process, its console, QMP and the command channel."""
