"""The scenario catalogue: scenarios as data (catalogue.toml), validated when loaded."""
