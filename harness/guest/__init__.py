"""What runs inside a booted guest, shared by collision and hotplug scenarios: the step record,
pfn walkers, guest probes, module loading and argument vectors."""
