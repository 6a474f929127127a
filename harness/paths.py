"""Where memharness finds its own files and keeps its cache."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GUEST_SCRIPTS = REPO_ROOT / "guest-scripts"
IMAGES = REPO_ROOT / "images"
KCONFIGS = REPO_ROOT / "kconfigs"
KMOD_SOURCES = GUEST_SCRIPTS / "kmod"  # test kernel modules, built against the kernel under test


def cache_root() -> Path:
    """The content-addressed cache: $MEMHARNESS_CACHE, else $XDG_CACHE_HOME/memharness."""
    explicit = os.environ.get("MEMHARNESS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "memharness"
