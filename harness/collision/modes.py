"""Namespace modes a collision scenario switches through, as data (pure)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """A namespace configuration: what ndctl is asked for, what the kernel needs."""

    name: str
    ndctl: str  # create-namespace arguments
    requires: tuple[str, ...]
    modules: tuple[str, ...]
    zone_device: bool  # the namespace's pages are ZONE_DEVICE in this mode
    mapping: str = ""  # the madvise mapping this mode adds: fsdax (a file on -o dax) or devdax


_DAX = ("ZONE_DEVICE", "NVDIMM_DAX", "DEV_DAX_PMEM")
_DAX_MODULES = ("dax_pmem", "device_dax")
MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("fsdax-mem", "-m fsdax --map=mem", ("ZONE_DEVICE", "NVDIMM_PFN"), (), True, "fsdax"),
        Mode("fsdax-dev", "-m fsdax --map=dev", ("ZONE_DEVICE", "NVDIMM_PFN"), (), True, "fsdax"),
        Mode("devdax-mem", "-m devdax --map=mem", _DAX, _DAX_MODULES, True, "devdax"),
        Mode("devdax-dev", "-m devdax --map=dev", _DAX, _DAX_MODULES, True, "devdax"),
        # raw: no pfn/dax device.  Legacy (e820) regions still map their pages in raw mode.
        Mode("raw", "-m raw", (), (), False),
    )
}
DEFAULT_MODES = ("fsdax-mem", "fsdax-dev", "devdax-mem", "devdax-dev")
