"""Known issues: splat titles memharness knows, where they apply, and why (registry.toml)."""
