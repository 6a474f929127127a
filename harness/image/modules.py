"""Kernel module selection from a depmod'ed tree (pure over the modules.* files).

Given the recipe's module names, finds which are loadable modules, which are built in and which
the kernel does not have, and the modules.dep closure to copy into the image.
"""

from dataclasses import dataclass
from pathlib import Path, PurePosixPath


def module_name(path: str) -> str:
    """'kernel/drivers/nvdimm/nd_pmem.ko.xz' → 'nd_pmem' (kmod treats - and _ alike)."""
    name = PurePosixPath(path).name
    for suffix in (".xz", ".zst", ".gz"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep → {name: (path, [dependency paths])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if sep:
            table[module_name(path)] = (path.strip(), deps.split())
    return table


@dataclass(frozen=True)
class ModuleSelection:
    paths: tuple[str, ...]  # relative to lib/modules/<release>, dependencies included
    loadable: tuple[str, ...]  # requested names that are modules
    builtin: tuple[str, ...]  # requested names compiled into the kernel
    absent: tuple[str, ...]  # requested names the kernel has in no form


def select(requested: list[str], dep_text: str, builtin_text: str) -> ModuleSelection:
    table = parse_modules_dep(dep_text)
    builtin_names = {module_name(line) for line in builtin_text.split()}
    paths: set[str] = set()
    loadable, builtin, absent = [], [], []
    for raw in requested:
        name = raw.replace("-", "_")
        if name in table:
            loadable.append(name)
            path, deps = table[name]
            paths.add(path)
            paths.update(deps)
        elif name in builtin_names:
            builtin.append(name)
        else:
            absent.append(name)
    return ModuleSelection(tuple(sorted(paths)), tuple(loadable), tuple(builtin), tuple(absent))


def filtered_modules_dep(dep_text: str, paths: tuple[str, ...]) -> str:
    """The modules.dep lines of the copied modules only (closure guarantees consistency)."""
    keep = set(paths)
    lines = [line for line in dep_text.splitlines() if line.partition(":")[0].strip() in keep]
    return "\n".join(lines) + "\n"


def read_tree(modules_dir: Path) -> tuple[str, str]:
    """(modules.dep, modules.builtin) texts of a depmod'ed lib/modules/<release> dir."""
    dep = modules_dir / "modules.dep"
    builtin = modules_dir / "modules.builtin"
    return (
        dep.read_text() if dep.exists() else "",
        builtin.read_text() if builtin.exists() else "",
    )
