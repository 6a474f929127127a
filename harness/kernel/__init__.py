"""Kernels: what to boot, from a Debian package, a user's image or a build (``model.Kernel``)."""
