"""Scenarios: a memory layout, guest steps and expectations, run on a booted guest."""
