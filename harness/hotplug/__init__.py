"""Memory hotplug scenarios: steps that add, resize, online, offline and remove memory while the
guest runs (pc-dimm, nvdimm and virtio-mem over QMP; add_memory/offline_and_remove_memory
through the mh_hotplug test module), with pfn walkers over what was added."""
