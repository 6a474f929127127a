"""Where memharness finds its own files and keeps its cache."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GUEST_SCRIPTS = REPO_ROOT / "guest-scripts"
IMAGES = REPO_ROOT / "images"
KCONFIGS = REPO_ROOT / "kconfigs"
KMOD_SOURCES = GUEST_SCRIPTS / "kmod"  # test kernel modules, built against the kernel under test
KMOD_PATH_ENV = "MEMHARNESS_KMOD_PATH"  # more module directories (yours), searched first


def kmod_dirs() -> list[Path]:
    """Where test modules (NAME.c) are looked for: $MEMHARNESS_KMOD_PATH's directories
    (colon-separated: modules of your own for your own catalogue), then guest-scripts/kmod."""
    extra = [Path(d) for d in os.environ.get(KMOD_PATH_ENV, "").split(":") if d]
    return [*extra, KMOD_SOURCES]


def kmod_source(name: str) -> Path | None:
    """NAME.c of test module ``name``, or None when no directory has it."""
    return next((p for d in kmod_dirs() if (p := d / f"{name}.c").is_file()), None)


def cache_root() -> Path:
    """The content-addressed cache: $MEMHARNESS_CACHE, else $XDG_CACHE_HOME/memharness."""
    explicit = os.environ.get("MEMHARNESS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "memharness"
