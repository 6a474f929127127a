"""Bisecting a kernel regression by its splat title (see driver.py)."""
