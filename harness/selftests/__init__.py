"""The kernel's own mm selftests, built for the guest arch and run in a memharness guest."""
